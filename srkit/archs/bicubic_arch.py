"""MATLAB bicubic upscaling as a network: the baseline row of every SR table, run through test.py."""
from __future__ import annotations

import torch
from torch import nn

from srkit.archs.spec import ArchSpec, require_positive
from srkit.core.registry import ARCH_REGISTRY
from srkit.ops.imresize import imresize


@ARCH_REGISTRY.register(meta=ArchSpec(scales=()))
class Bicubic(nn.Module):
    """No parameters: ``imresize(x, upscale)`` with MATLAB's antialiased bicubic kernel, in float64."""

    def __init__(self, upscale: int = 2) -> None:
        super().__init__()
        require_positive(upscale=upscale)
        self.upscale = upscale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return imresize(x.double(), self.upscale).to(x.dtype)
