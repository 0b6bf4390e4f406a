"""EDSR (Lim et al., 2017), used as srkit's small baseline for the demo and the tests.

The EDSR-baseline of the paper is ``EDSR(num_feat=64, num_block=16, res_scale=1)``; the demo uses a
narrower, shallower preset so that it trains in minutes on two CPU cores.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from srkit.archs.spec import ArchSpec, require_positive
from srkit.core.registry import ARCH_REGISTRY

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
EDSR_SPEC = ArchSpec(scales=(2, 3, 4, 8), subpixel_tail=('upsample', 'conv_last'))


class ResidualBlock(nn.Module):
    """conv-ReLU-conv with a scaled identity skip (no batch norm, as in EDSR)."""

    def __init__(self, num_feat: int, res_scale: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.relu = nn.ReLU(inplace=True)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x))) * self.res_scale


class Upsample(nn.Sequential):
    """Sub-pixel upsampler: log2(s) x (conv to 4C + shuffle 2) for powers of two, conv to 9C + shuffle 3 for 3."""

    def __init__(self, scale: int, num_feat: int) -> None:
        layers: list[nn.Module] = []
        if scale & (scale - 1) == 0:
            for _ in range(int(math.log2(scale))):
                layers += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [nn.Conv2d(num_feat, 9 * num_feat, 3, 1, 1), nn.PixelShuffle(3)]
        else:
            raise ValueError(f'EDSR upsampler supports scales 2^n and 3, not {scale}.')
        super().__init__(*layers)


@ARCH_REGISTRY.register(meta=EDSR_SPEC)
class EDSR(nn.Module):
    """EDSR with BasicSR's argument and parameter names (so BasicSR EDSR checkpoints load)."""

    mean: torch.Tensor

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_block: int = 16,
                 upscale: int = 4, res_scale: float = 1.0, img_range: float = 255.0,
                 rgb_mean: tuple[float, float, float] | list[float] = DIV2K_RGB_MEAN) -> None:
        super().__init__()
        require_positive(num_in_ch=num_in_ch, num_out_ch=num_out_ch, num_feat=num_feat, num_block=num_block,
                         upscale=upscale)
        self.img_range = img_range
        self.register_buffer('mean', torch.tensor(rgb_mean, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(ResidualBlock(num_feat, res_scale) for _ in range(num_block)))
        self.conv_after_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.upsample = Upsample(upscale, num_feat)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) * self.img_range
        x = self.conv_first(x)
        x = self.conv_after_body(self.body(x)) + x
        x = self.conv_last(self.upsample(x))
        return x / self.img_range + self.mean


@ARCH_REGISTRY.register(meta=EDSR_SPEC)
def EDSR_baseline(upscale: int = 4, num_in_ch: int = 3, num_out_ch: int = 3) -> EDSR:
    """The paper's EDSR-baseline: 64 channels, 16 residual blocks (1.37 M parameters at x2)."""
    return EDSR(num_in_ch, num_out_ch, num_feat=64, num_block=16, upscale=upscale)


@ARCH_REGISTRY.register(meta=EDSR_SPEC)
def EDSR_tiny(upscale: int = 2, num_in_ch: int = 3, num_out_ch: int = 3) -> EDSR:
    """A 32-channel, 4-block EDSR that trains in minutes on a CPU (demo and tests)."""
    return EDSR(num_in_ch, num_out_ch, num_feat=32, num_block=4, upscale=upscale)
