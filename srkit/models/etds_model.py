"""ETDSModel: training the two-stream ETDS (``model_type: ETDSModel``, as in the official option files).

What differs from SRModel:

- the network returns ``(x + r, r)``; a step minimises ``L(x + r, gt) + w * L(r, gt)`` for every configured
  loss L, where r is the low-frequency (residual-stream) image and its target is the ground truth itself,
  as in the official ``ETDSModel.optimize_parameters``; ``w`` is ``train.interpolation_loss_weight``;
- every parameter with ``residual`` in its name (the residual stream and the residual-to-backbone convs)
  is frozen while ``current_iter < train.fixed_residual_model_iters`` and trainable from then on. The
  official code unfreezes only when the iteration *equals* the setting (and freezes at iteration 1 first),
  so with 0 or 1 its residual stream is never trained; srkit uses ``>=`` (see docs/ETDS.md);
- validation and test use the SR image only, so ``predict`` (padding, tiling, self-ensemble) sees a
  network that returns one tensor. A plain-form network (``ETDSForInference``) works here too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from srkit.core.errors import OptionError
from srkit.core.registry import MODEL_REGISTRY
from srkit.models.sr_model import SRModel
from srkit.models.train_options import TrainOptions as BaseTrainOptions

__all__ = ['ETDSModel', 'ETDSTrainOptions', 'SROutputOnly']

RESIDUAL_MARK = 'residual'


@dataclass
class ETDSTrainOptions(BaseTrainOptions):
    fixed_residual_model_iters: int = 0
    interpolation_loss_weight: float = 0.5

    def check(self, path: str) -> None:
        super().check(path)
        if self.fixed_residual_model_iters < 0:
            raise OptionError(f'Option "{path}.fixed_residual_model_iters" must be >= 0, '
                              f'got {self.fixed_residual_model_iters}.')
        if self.interpolation_loss_weight < 0:
            raise OptionError(f'Option "{path}.interpolation_loss_weight" must be >= 0, '
                              f'got {self.interpolation_loss_weight}.')


class SROutputOnly(nn.Module):
    """Wraps a network returning ``(sr, ...)`` so that callers expecting one tensor get ``sr``.

    It mirrors the wrapped network's train/eval mode so that ``predict`` restores that mode, not the
    wrapper's default (an EMA copy must stay in eval mode).
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.train(net.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out[0] if isinstance(out, (tuple, list)) else out


@MODEL_REGISTRY.register()
class ETDSModel(SRModel):
    TrainOptions = ETDSTrainOptions

    @property
    def train_options(self) -> ETDSTrainOptions:
        """``train_opt`` as the ETDSTrainOptions it is while training."""
        if not isinstance(self.train_opt, ETDSTrainOptions):
            raise TypeError(f'ETDSModel needs ETDSTrainOptions, got {type(self.train_opt).__name__} '
                            '(training options exist only in a training run).')
        return self.train_opt

    def _setup_training(self, opt: BaseTrainOptions) -> None:
        self.residual_params = [p for name, p in self.net_g.named_parameters() if RESIDUAL_MARK in name]
        if not self.residual_params:
            raise OptionError(f'Option "model_type: ETDSModel" trains the two-stream ETDS; '
                              f'{self.options.network_g.type} has no residual stream (use ETDS or an ETDS_M*C* '
                              'preset, or SRModel for a plain network).')
        super()._setup_training(opt)

    def has_frozen_phase(self) -> bool:
        return super().has_frozen_phase() or self.train_options.fixed_residual_model_iters > 0

    def set_freeze(self, current_iter: int) -> None:
        """SRModel's generic freezing, then the residual stream: frozen while iter < fixed_residual_model_iters."""
        super().set_freeze(current_iter)
        trainable = current_iter >= self.train_options.fixed_residual_model_iters
        for p in self.residual_params:
            p.requires_grad_(trainable)

    def compute_losses(self, batch: dict[str, Any], iteration: int) -> dict[str, torch.Tensor]:
        """``l_x`` = L(x + r, gt) and ``l_x_residual`` = w * L(r, gt) for each configured loss ``l_x``."""
        output, residual = self.train_net(batch['lq'])
        gt = batch['gt']
        weight = self.train_options.interpolation_loss_weight
        terms = {}
        for label, loss in self.losses:
            terms[label] = loss(output, gt)
            if weight:
                terms[f'{label}_residual'] = weight * loss(residual, gt)
        return terms

    def inference_network(self, use_ema: bool = True, scale: int | None = None) -> nn.Module:
        return SROutputOnly(super().inference_network(use_ema, scale))
