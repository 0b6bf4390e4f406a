"""ABPN (Du et al., CVPR workshops 2021, Mobile AI challenge) and its Equivalent-Transformation form, as ETDS ran them.

Both follow ECNUSR/ETDS ``core/archs/ir/ABPN/arch.py`` (commit 64ad1b8): arguments ``num_feat``,
``num_block``, ``scale``, three colours, and one ``nn.Sequential`` called ``backbone`` whose indices are
the parameter names of the released checkpoints (``backbone.0``, ``backbone.{2..num_block+1}.0``, then
the tail), so the official option files and ``ABPN[_ET]_M{4C28,6C40}_x{2,3,4}.pth`` work as they are.

- ``ABPN``: a conv + ReLU stack to ``3 * scale^2`` channels plus the input repeated ``scale^2`` times
  (nearest-neighbour upsampling after the PixelShuffle); the output is not clamped.
- ``ABPN_ET``: the same function as one plain stack, clamped to [0, 1] by ReLUs only, which is the form
  mobile NPUs run fastest. Every layer is ``num_feat + 4`` wide: the last 3 channels carry the input image
  through (an identity kernel; ReLU keeps it because images are not negative), one spare channel rounds the
  width to a multiple of 4. ``srkit.archs.abpn_convert`` turns a trained ``ABPN`` into it.

Presets ``ABPN_M4C28`` / ``ABPN_M6C40`` (and ``ABPN_ET_...``) are the two published sizes (M blocks, C =
``num_feat``); their parameter counts are those of the released checkpoints.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from srkit.archs.spec import ArchSpec, require_positive
from srkit.core.registry import ARCH_REGISTRY

__all__ = ['ABPN', 'ABPN_ET', 'et_tail_channels']

COLORS = 3  # the ETDS repository's ABPN is RGB only
# Conv + ReLU + PixelShuffle (and a channel repeat): local, any integer scale.
ABPN_SPEC = ArchSpec(scales=(), scale_arg='scale')


def _conv(in_ch: int, out_ch: int, kernel_size: int = 3) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2)


def _head(width: int, num_block: int) -> list[nn.Module]:
    """conv + ReLU and ``num_block`` (conv + ReLU) pairs: the backbone's first layers, official indices.

    The classes create their tail where the official code does (ABPN after these layers, ABPN_ET before
    them), so that one seed draws the same initial weights.
    """
    return [_conv(COLORS, width), nn.ReLU(), *(nn.Sequential(_conv(width, width), nn.ReLU()) for _ in range(num_block))]


def et_tail_channels(scale: int) -> tuple[int, int]:
    """Outputs of ABPN_ET's first and second tail convs: (sub-pixel channels + 3 image carriers [+ spare],
    sub-pixel channels [+ dummy]).

    The rule is the official one, which the released checkpoints fix: at x3 the first has no spare channel
    (27 + 3 = 30) and the second one dummy channel (28, a multiple of 4) that the forward drops; at other
    scales the first has a spare one (3 s^2 + 4) and the second none.
    """
    image = COLORS * scale**2
    return (image + 3, image + 1) if scale == 3 else (image + 4, image)


@ARCH_REGISTRY.register(meta=ABPN_SPEC)
class ABPN(nn.Module):
    """Plain conv + ReLU stack to ``3 * scale^2`` channels, plus the input repeated ``scale^2`` times per
    colour, then PixelShuffle: the network learns the residual over nearest-neighbour upsampling."""

    def __init__(self, num_feat: int = 28, num_block: int = 4, scale: int = 4) -> None:
        super().__init__()
        require_positive(num_feat=num_feat, num_block=num_block, scale=scale)
        image = COLORS * scale**2
        self.backbone = nn.Sequential(*_head(num_feat, num_block), _conv(num_feat, image), nn.ReLU(),
                                      _conv(image, image))
        self.upsampler = nn.PixelShuffle(scale)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = torch.repeat_interleave(x, self.scale**2, dim=1)
        return self.upsampler(self.backbone(x) + shortcut)


@ARCH_REGISTRY.register(meta=ABPN_SPEC)
class ABPN_ET(nn.Module):
    """ABPN as one plain conv + ReLU stack ``num_feat + 4`` wide; its last 1x1 conv and ReLU clamp to [0, 1]
    (see ``srkit.archs.abpn_convert``). Takes the arguments of the ABPN it was converted from."""

    def __init__(self, num_feat: int = 28, num_block: int = 4, scale: int = 4) -> None:
        super().__init__()
        require_positive(num_feat=num_feat, num_block=num_block, scale=scale)
        width = num_feat + 4
        mid, out = et_tail_channels(scale)
        tail = [_conv(width, mid), nn.ReLU(), _conv(mid, out), nn.ReLU(), _conv(out, out, 1), nn.ReLU()]
        self.backbone = nn.Sequential(*_head(width, num_block), *tail)
        self.upsampler = nn.PixelShuffle(scale)
        self.num_image_ch = COLORS * scale**2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsampler(self.backbone(x)[:, :self.num_image_ch])  # drops the x3 dummy channel


@ARCH_REGISTRY.register(meta=replace(ABPN_SPEC, params={2: 33464, 3: 42539, 4: 62048}))
def ABPN_M4C28(scale: int = 4) -> ABPN:
    """ABPN with 4 blocks of 28 channels: the released ``ABPN_M4C28_x{2,3,4}.pth``."""
    return ABPN(num_feat=28, num_block=4, scale=scale)


@ARCH_REGISTRY.register(meta=replace(ABPN_SPEC, params={2: 93400, 3: 104095, 4: 125872}))
def ABPN_M6C40(scale: int = 4) -> ABPN:
    """ABPN with 6 blocks of 40 channels: the released ``ABPN_M6C40_x{2,3,4}.pth``."""
    return ABPN(num_feat=40, num_block=6, scale=scale)


@ARCH_REGISTRY.register(meta=replace(ABPN_SPEC, params={2: 44408, 3: 54958, 4: 77780}))
def ABPN_ET_M4C28(scale: int = 4) -> ABPN_ET:
    """ABPN_M4C28 in ET form (4 blocks, 32 channels wide): the released ``ABPN_ET_M4C28_x{2,3,4}.pth``."""
    return ABPN_ET(num_feat=28, num_block=4, scale=scale)


@ARCH_REGISTRY.register(meta=replace(ABPN_SPEC, params={2: 114288, 3: 126350, 4: 151548}))
def ABPN_ET_M6C40(scale: int = 4) -> ABPN_ET:
    """ABPN_M6C40 in ET form (6 blocks, 44 channels wide): the released ``ABPN_ET_M6C40_x{2,3,4}.pth``."""
    return ABPN_ET(num_feat=40, num_block=6, scale=scale)
