"""Exponential moving average of a network's weights (BasicSR's ``net_g_ema``).

Parameters are averaged: ``ema = decay * ema + (1 - decay) * live`` after each update. Buffers are
copied from the live network instead: BatchNorm running statistics are already running averages over
batches (averaging them again only adds lag), and integer buffers (``num_batches_tracked``, index
tables, masks) have no meaningful average. BasicSR never updates the EMA's buffers at all, which leaves
them at their initial values; copying keeps them consistent with the network being trained.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from srkit.core.errors import OptionError

__all__ = ['ModelEMA', 'unwrap_model']


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare network inside DistributedDataParallel / DataParallel and torch.compile wrappers."""
    while True:
        inner = getattr(model, '_orig_mod', None)  # torch.compile's OptimizedModule
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(inner, nn.Module):
            model = inner
        else:
            return model


class ModelEMA:
    """Holds ``module``, an averaged copy of a network, in eval mode and without gradients."""

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay <= 1.0:
            raise OptionError(f'ModelEMA: decay must be in [0, 1]; got {decay}.')
        self.decay = decay
        self.module = copy.deepcopy(unwrap_model(model))
        self.module.eval()
        self.module.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights and copy its buffers."""
        live = unwrap_model(model)
        live_params = dict(live.named_parameters())
        for name, param in self.module.named_parameters():
            param.mul_(self.decay).add_(live_params[name].detach(), alpha=1.0 - self.decay)
        live_buffers = dict(live.named_buffers())
        for name, buffer in self.module.named_buffers():
            buffer.copy_(live_buffers[name])

    def state_dict(self) -> dict[str, Any]:
        """The averaged network's state dict: what BasicSR saves as ``params_ema``."""
        return self.module.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.module.load_state_dict(state_dict)
