"""ESPCN (Shi et al., CVPR 2016) as the ETDS paper trained it for its comparison table.

The layers, their names (``conv1``-``conv3``, ``pixel_shuffle``) and the arguments (``colors``,
``upscale``) are those of ECNUSR/ETDS ``core/archs/ir/ESPCN/arch.py`` (commit 64ad1b8), so its option files
build this network and its released ``ESPCN_x{2,3,4}.pth`` load as they are. That version ends in a
sigmoid, so its output always lies in (0, 1).
"""
from __future__ import annotations

import torch
from torch import nn

from srkit.archs.spec import ArchSpec, require_positive
from srkit.core.registry import ARCH_REGISTRY

__all__ = ['ESPCN']


# Three convs, tanh, sigmoid and PixelShuffle: local, any integer scale. Parameter counts of the released
# ESPCN_x{2,3,4}.pth (colors 3).
@ARCH_REGISTRY.register(meta=ArchSpec(scales=(), params={2: 26796, 3: 31131, 4: 37200}))
class ESPCN(nn.Module):
    """conv5x5(64) + tanh, conv3x3(32) + tanh, conv3x3(colors * upscale^2), PixelShuffle, sigmoid."""

    def __init__(self, colors: int = 3, upscale: int = 4) -> None:
        super().__init__()
        require_positive(colors=colors, upscale=upscale)
        self.conv1 = nn.Conv2d(colors, 64, 5, padding=2)
        self.conv2 = nn.Conv2d(64, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, colors * upscale**2, 3, padding=1)
        self.pixel_shuffle = nn.PixelShuffle(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.conv1(x))
        x = torch.tanh(self.conv2(x))
        return torch.sigmoid(self.pixel_shuffle(self.conv3(x)))
