"""MultiScaleModel: one network trained for several integer scales at once (IGConv, ``model_type: MultiScaleModel``).

What differs from SRModel:

- each iteration draws one scale from ``train.scales`` and runs ``net(lq, scale)``. A batch of HR patches
  only (``HRPatchDataset``) gets its LR made at that scale with the batched torch MATLAB bicubic, rounded
  to 8 bits once as the benchmark LR are; a batch of IGConv's ``RandomScaleDownsampleImageDataset``
  carries one (LR, HR) pair per scale and the iteration's pair is used (its ``random_scales`` are then the
  training scales; ``train.scales``, if given too, must be the same);
- a network that returns ``(image, skip)`` in training (IGConv+'s ``return_skip``) is scored on the image;
- the scale of iteration ``i`` is a pure function of ``(manual_seed, i)``: every rank and every
  micro-batch of the step get the same one, and a resumed run repeats the sequence without saving any
  state (without ``manual_seed`` the sequence of seed 0 is used; the data order is then random anyway);
- ``predict(lq, scale=s)`` evaluates at any scale; without ``scale`` it uses the top-level ``scale``
  option, which for a multi-scale run is the default evaluation scale (datasets without their own).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from srkit.config.options import Options
from srkit.core.dist import DistContext
from srkit.core.errors import OptionError
from srkit.core.registry import MODEL_REGISTRY
from srkit.models.sr_model import SRModel
from srkit.models.train_options import TrainOptions
from srkit.ops.imresize import bicubic_downscale

__all__ = ['MultiScaleModel', 'MultiScaleTrainOptions', 'scale_for_iteration']

_SCALE_STREAM = 2  # a tag distinct from the sampler's streams (0: permutation, 1: samples)


DEFAULT_SCALES = [2, 3, 4]


@dataclass
class MultiScaleTrainOptions(TrainOptions):
    scales: list[int] | None = None  # None: the training dataset's random_scales, else DEFAULT_SCALES

    def check(self, path: str) -> None:
        super().check(path)
        scales = self.scales
        if scales is not None and (not scales or any(s < 1 for s in scales) or len(set(scales)) != len(scales)):
            raise OptionError(f'Option "{path}.scales" must list distinct positive integers, got {scales}.')


def scale_for_iteration(scales: list[int], seed: int, iteration: int) -> int:
    """The training scale of ``iteration``: uniform over ``scales``, fixed by (seed, iteration) alone."""
    state = np.random.SeedSequence([seed, iteration, _SCALE_STREAM]).generate_state(1, np.uint64)[0]
    return scales[int(state % np.uint64(len(scales)))]


class _AtScale(nn.Module):
    """``net(x, scale)`` seen as ``f(x)``, the shape predict() (padding, tiling, self-ensemble) expects.

    It mirrors the wrapped network's train/eval mode so that predict() restores that mode.
    """

    def __init__(self, net: nn.Module, scale: int) -> None:
        super().__init__()
        self.net = net
        self.scale = scale
        self.train(net.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, self.scale)


@MODEL_REGISTRY.register()
class MultiScaleModel(SRModel):
    TrainOptions = MultiScaleTrainOptions
    multi_scale = True  # datasets may carry their own scale (docs/IGCONV.md)

    def __init__(self, options: Options, device: torch.device, dist: DistContext = DistContext()) -> None:
        super().__init__(options, device, dist)
        self.scales = self._training_scales() if self.train_opt is not None else DEFAULT_SCALES
        if self.train_opt is not None:
            self._check_patch_sizes(self.scales)

    def _training_scales(self) -> list[int]:
        """``train.scales``, or the training dataset's ``random_scales``; both given, they must agree."""
        given = self.train_options.scales
        for entry in self.options.datasets_of('train'):
            from_data = entry.args.get('random_scales')
            if from_data is None:
                continue
            if given is not None and list(given) != list(from_data):
                raise OptionError(f'Options "train.scales" {given} and "datasets.{entry.key}.random_scales" '
                                  f'{from_data} disagree; give the scales once.', key='train.scales')
            return list(from_data)
        return list(given) if given is not None else DEFAULT_SCALES

    @property
    def train_options(self) -> MultiScaleTrainOptions:
        """``train_opt`` as the MultiScaleTrainOptions it is while training."""
        if not isinstance(self.train_opt, MultiScaleTrainOptions):
            raise TypeError(f'MultiScaleModel needs MultiScaleTrainOptions, got {type(self.train_opt).__name__} '
                            '(training options exist only in a training run).')
        return self.train_opt

    def _check_patch_sizes(self, scales: list[int]) -> None:
        multiple = math.lcm(*scales)
        for entry in self.options.datasets_of('train'):
            size = entry.args.get('gt_size')
            if size is not None and size % multiple:
                raise OptionError(f'Option "datasets.{entry.key}.gt_size" ({size}) must be a multiple of every '
                                  f'scale in train.scales {scales} (of {multiple}).')

    def scale_at(self, iteration: int) -> int:
        return scale_for_iteration(self.scales, self.options.manual_seed or 0, iteration)

    def compute_losses(self, batch: dict[str, Any], iteration: int) -> dict[str, torch.Tensor]:
        """The loss at this iteration's scale: on the batch's pair for that scale, or on LR made from its HR."""
        scale = self.scale_at(iteration)
        if f'lq_x{scale}' in batch:
            lq, gt = batch[f'lq_x{scale}'], batch[f'gt_x{scale}']
        else:
            gt = batch['gt']
            lq = bicubic_downscale(gt, scale)
        output = self.train_net(lq, scale)
        if isinstance(output, (tuple, list)):  # (image, skip) of IGConv+ with return_skip
            output = output[0]
        return {label: loss(output, gt) for label, loss in self.losses}

    # ---- inference --------------------------------------------------------------------------------------
    def eval_scale(self, scale: int | None = None) -> int:
        """Any scale; without one, the top-level ``scale`` option (the default evaluation scale)."""
        return self.options.scale if scale is None else scale

    def inference_network(self, use_ema: bool = True, scale: int | None = None) -> nn.Module:
        return _AtScale(super().inference_network(use_ema), self.eval_scale(scale))
