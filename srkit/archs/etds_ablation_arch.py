"""The ETDS paper's ablation networks, as the ETDS repository builds them.

Names, constructor arguments and parameter names are those of ECNUSR/ETDS (``core/archs/ir/ETDS/arch.py``
at commit 64ad1b8), so the official ablation option files and checkpoints load unchanged. Each answers
"which part of ETDS gives the gain?", against ``ETDS`` (srkit.archs.etds_arch):

- ``ETDSOnlyET``: no residual stream at all, only what the equivalent transformation makes free: a plain
  conv + ReLU stack of ``num_feat - num_residual_feat`` channels whose output is added to the input
  repeated into every sub-pixel (nearest-neighbour upsampling). Returns the SR image only.
- ``ETDSAblationResidual``: both streams, but no residual-to-backbone convs: the low-frequency stream
  cannot inform the high-frequency one.
- ``ETDSAblationAdvancedResidual``: both directions: ETDS's residual-to-backbone convs plus
  backbone-to-residual convs (``advanced_residual_convs``), so the residual stream is no longer a
  fixed-size linear path and costs more.

The two-stream ablations return ``(x + r, r)`` like ETDS and start like it: residual stream = nearest-repeat
upsampling, cross-stream convs = 0. Their residual-stream parameters have ``residual`` in their names
(``advanced_residual_convs`` too), which is how ETDSModel freezes them early, as the official model does.
Layers are created in the official order, so a seed gives the official initial weights.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn
from torch.nn import functional as F

from srkit.archs.etds_arch import check_etds_args
from srkit.archs.spec import ArchSpec
from srkit.core.registry import ARCH_REGISTRY

__all__ = ['ETDSAblationAdvancedResidual', 'ETDSAblationResidual', 'ETDSOnlyET']

# Conv + ReLU + PixelShuffle only, like ETDS; parameter counts (x4, the defaults) are the released
# ablations/ETDS_M6C32_x4_{only_ET,only_residual,advance_residual}.pth.
ABLATION_SPEC = ArchSpec(scales=())


def _conv3x3(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1)


def _backbone_width(name: str, num_in_ch: int, num_out_ch: int, upscale: int, num_block: int, num_feat: int,
                    num_residual_feat: int) -> int:
    """Channels of the backbone stream, after refusing what the official code asserts against."""
    check_etds_args(name, num_in_ch, num_out_ch, upscale, num_block, num_feat, num_residual_feat, need_backbone=True)
    return num_feat - num_residual_feat


def _set_identity(conv: nn.Conv2d, channels: int, repeats: int = 1) -> None:
    """conv = copy input channel i (< channels) to outputs i*repeats ... (i+1)*repeats - 1, centre tap, no bias."""
    conv.weight.zero_()
    for i in range(channels):
        conv.weight[i * repeats:(i + 1) * repeats, i, 1, 1] = 1
    assert conv.bias is not None
    conv.bias.zero_()


def _set_zero(conv: nn.Conv2d) -> None:
    conv.weight.zero_()
    assert conv.bias is not None
    conv.bias.zero_()


class _TwoStreams(nn.Module):
    """What the two-stream ablations share: both streams, their first and last convs, and ETDS's start."""

    conv_residual_first: nn.Conv2d
    conv_residual_last: nn.Conv2d
    residual_convs: nn.ModuleList

    @torch.no_grad()
    def _init_residual_stream(self, colors: int, upscale: int, cross_convs: list[nn.ModuleList]) -> None:
        """Residual stream = nearest-repeat upsampling of the input; convs between the streams = 0."""
        _set_identity(self.conv_residual_first, colors)
        for conv in self.residual_convs:
            assert isinstance(conv, nn.Conv2d)
            _set_identity(conv, conv.out_channels)
        for convs in cross_convs:
            for conv in convs:
                assert isinstance(conv, nn.Conv2d)
                _set_zero(conv)
        _set_identity(self.conv_residual_last, colors, repeats=upscale**2)


@ARCH_REGISTRY.register(meta=replace(ABLATION_SPEC, params={4: 58976}))
class ETDSOnlyET(nn.Module):
    """Ablation: a plain ReLU stack plus the upsampled input, no residual stream.

    The backbone has ``num_feat - num_residual_feat`` channels, the width ET would widen back to ``num_feat``.
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, upscale: int = 4, num_block: int = 6,
                 num_feat: int = 32, num_residual_feat: int = 3) -> None:
        super().__init__()
        width = _backbone_width('ETDSOnlyET', num_in_ch, num_out_ch, upscale, num_block, num_feat,
                                num_residual_feat)
        self.upscale = upscale
        self.conv_first = _conv3x3(num_in_ch, width)
        self.backbone_convs = nn.ModuleList(_conv3x3(width, width) for _ in range(num_block))
        self.conv_last = _conv3x3(width, num_out_ch * upscale**2)
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = torch.repeat_interleave(x, self.upscale**2, dim=1)
        feat = F.relu(self.conv_first(x))
        for conv in self.backbone_convs:
            feat = F.relu(conv(feat))
        return self.upsampler(self.conv_last(feat) + shortcut)


@ARCH_REGISTRY.register(meta=replace(ABLATION_SPEC, params={4: 60908}))
class ETDSAblationResidual(_TwoStreams):
    """Ablation: both streams, no residual-to-backbone convs; the streams meet only at the output sum."""

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, upscale: int = 4, num_block: int = 6,
                 num_feat: int = 32, num_residual_feat: int = 3) -> None:
        super().__init__()
        width = _backbone_width('ETDSAblationResidual', num_in_ch, num_out_ch, upscale, num_block, num_feat,
                                num_residual_feat)
        self.conv_first = _conv3x3(num_in_ch, width)
        self.conv_residual_first = _conv3x3(num_in_ch, num_residual_feat)
        blocks = [(_conv3x3(width, width), _conv3x3(num_residual_feat, num_residual_feat))
                  for _ in range(num_block)]
        self.backbone_convs = nn.ModuleList(block[0] for block in blocks)
        self.residual_convs = nn.ModuleList(block[1] for block in blocks)
        self.conv_last = _conv3x3(width, num_out_ch * upscale**2)
        self.conv_residual_last = _conv3x3(num_residual_feat, num_out_ch * upscale**2)
        self.upsampler = nn.PixelShuffle(upscale)
        self._init_residual_stream(num_in_ch, upscale, cross_convs=[])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(SR image, low-frequency image), as ETDS."""
        feat = F.relu(self.conv_first(x))
        res = F.relu(self.conv_residual_first(x))
        for backbone, residual in zip(self.backbone_convs, self.residual_convs):
            feat, res = F.relu(backbone(feat)), F.relu(residual(res))
        low = self.upsampler(self.conv_residual_last(res))
        return self.upsampler(self.conv_last(feat)) + low, low


@ARCH_REGISTRY.register(meta=replace(ABLATION_SPEC, params={4: 70496}))
class ETDSAblationAdvancedResidual(_TwoStreams):
    """Ablation: ETDS plus backbone-to-residual convs; each stream reads the other's previous features."""

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, upscale: int = 4, num_block: int = 6,
                 num_feat: int = 32, num_residual_feat: int = 3) -> None:
        super().__init__()
        width = _backbone_width('ETDSAblationAdvancedResidual', num_in_ch, num_out_ch, upscale, num_block,
                                num_feat, num_residual_feat)
        self.conv_first = _conv3x3(num_in_ch, width)
        self.conv_residual_first = _conv3x3(num_in_ch, num_residual_feat)
        blocks = [(_conv3x3(width, width), _conv3x3(num_residual_feat, num_residual_feat),
                   _conv3x3(num_residual_feat, width), _conv3x3(width, num_residual_feat))
                  for _ in range(num_block)]
        self.backbone_convs = nn.ModuleList(block[0] for block in blocks)
        self.residual_convs = nn.ModuleList(block[1] for block in blocks)
        self.add_residual_convs = nn.ModuleList(block[2] for block in blocks)
        self.advanced_residual_convs = nn.ModuleList(block[3] for block in blocks)
        self.conv_last = _conv3x3(width, num_out_ch * upscale**2)
        self.conv_residual_last = _conv3x3(num_residual_feat, num_out_ch * upscale**2)
        self.upsampler = nn.PixelShuffle(upscale)
        self._init_residual_stream(num_in_ch, upscale,
                                   cross_convs=[self.add_residual_convs, self.advanced_residual_convs])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(SR image, low-frequency image), as ETDS; both streams update from the previous features."""
        feat = F.relu(self.conv_first(x))
        res = F.relu(self.conv_residual_first(x))
        for backbone, residual, to_backbone, to_residual in zip(
                self.backbone_convs, self.residual_convs, self.add_residual_convs, self.advanced_residual_convs):
            feat, res = F.relu(backbone(feat) + to_backbone(res)), F.relu(residual(res) + to_residual(feat))
        low = self.upsampler(self.conv_residual_last(res))
        return self.upsampler(self.conv_last(feat)) + low, low
