"""ETDS (Chao et al., CVPR 2023): a plain conv + ReLU stack trained as two streams.

Three networks share the official parameter names, so official option files and checkpoints load as
they are:

- ``ETDS``: the training form. A backbone (high-frequency) stream of ``num_feat - num_residual_feat``
  channels and a residual (low-frequency) stream of ``num_residual_feat`` channels, joined by a
  residual-to-backbone conv in every block. The residual stream starts as nearest-repeat upsampling and
  the residual-to-backbone convs start at zero, so training begins from "interpolation + a plain
  network". ``forward`` returns ``(x + r, r)`` like the official code: the SR image and the
  low-frequency image; an ETDS training step uses L(x + r) + alpha * L(r). Every parameter of the
  residual stream has ``residual`` in its name, which is how the official model freezes it early on.
- ``ETDSForInference``: the plain form the equivalent transformation produces (see
  ``srkit.archs.etds_convert``) and the form of all 12 published checkpoints. Its output is already
  clamped to [0, 1], built from ReLUs only (mobile NPUs run conv + ReLU fastest).
- ``Plain``: the ablation baseline without ET (``Plain_M6C32_x4.pth``), a plain stack of the same shape
  with no clamp.

Presets ``M{n}C{c}`` (n blocks, c channels in total including the 3 residual ones) are factory functions
taking ``upscale``: ``ETDS_M6C32`` builds the training form, ``ETDSForInference_M6C32`` the plain form
that the published ``ETDS_M6C32_x{2,3,4}.pth`` files load into, ``Plain_M6C32`` the baseline.
Any block count, width and integer scale works through the classes themselves.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn
from torch.nn import functional as F

from srkit.archs.spec import ArchSpec, require_positive
from srkit.core.registry import ARCH_REGISTRY

__all__ = ['ETDS', 'ETDSForInference', 'Plain', 'inference_out_channels', 'check_etds_args']

# Conv + ReLU + PixelShuffle only: fp16 and channels_last change nothing but rounding, and any integer
# scale works (the published checkpoints cover 2, 3 and 4).
ETDS_SPEC = ArchSpec(scales=(), fp16_safe=True, channels_last_safe=True)


def _plain_inference_form(net: nn.Module) -> nn.Module:
    """srkit.archs.etds_fused.fuse_etds_plain, imported on use (that module builds on this one's classes)."""
    from srkit.archs.etds_fused import fuse_etds_plain
    return fuse_etds_plain(net)


# The plain form (ETDSForInference and its presets) has an inference form; the training form returns two
# images and the ablation has no clamp, so theirs would be other functions.
ETDS_PLAIN_SPEC = replace(ETDS_SPEC, inference_form=_plain_inference_form)


def _conv3x3(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1)


def inference_out_channels(num_out_ch: int, upscale: int) -> int:
    """Channels of the plain form's last convs: at x3 one dummy channel keeps 27 at a multiple of 4.

    The rule is the official one (only x3 is padded), so files converted by the official code load.
    """
    channels = num_out_ch * upscale**2
    return channels + 1 if upscale == 3 else channels


def check_etds_args(name: str, num_in_ch: int, num_out_ch: int, upscale: int, num_block: int, num_feat: int,
                    num_residual_feat: int, need_backbone: bool) -> None:
    """Refuse the widths the official code asserts against (ETDS, its plain form and the ablations)."""
    require_positive(num_in_ch=num_in_ch, num_out_ch=num_out_ch, upscale=upscale, num_block=num_block,
                     num_feat=num_feat, num_residual_feat=num_residual_feat)
    if num_out_ch != num_in_ch:
        raise ValueError(f'{name}: num_out_ch ({num_out_ch}) must equal num_in_ch ({num_in_ch}): the '
                          'residual stream carries the input image to the output.')
    if num_residual_feat < num_in_ch:
        raise ValueError(f'{name}: num_residual_feat ({num_residual_feat}) must be at least num_in_ch '
                          f'({num_in_ch}) so that the residual stream can hold the input image.')
    if need_backbone and num_feat <= num_residual_feat:
        raise ValueError(f'{name}: num_feat ({num_feat}) counts the residual channels too and must exceed '
                          f'num_residual_feat ({num_residual_feat}).')


@ARCH_REGISTRY.register(meta=ETDS_SPEC)
class ETDS(nn.Module):
    """Training form: backbone + residual streams; ``num_feat`` counts both (as in the name M6C32)."""

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, upscale: int = 4, num_block: int = 6,
                 num_feat: int = 32, num_residual_feat: int = 3) -> None:
        super().__init__()
        check_etds_args('ETDS', num_in_ch, num_out_ch, upscale, num_block, num_feat, num_residual_feat,
                    need_backbone=True)
        backbone_feat = num_feat - num_residual_feat
        out_ch = num_out_ch * upscale**2
        self.conv_first = _conv3x3(num_in_ch, backbone_feat)
        self.conv_residual_first = _conv3x3(num_in_ch, num_residual_feat)
        self.backbone_convs = nn.ModuleList(_conv3x3(backbone_feat, backbone_feat) for _ in range(num_block))
        self.residual_convs = nn.ModuleList(
            _conv3x3(num_residual_feat, num_residual_feat) for _ in range(num_block))
        self.add_residual_convs = nn.ModuleList(
            _conv3x3(num_residual_feat, backbone_feat) for _ in range(num_block))
        self.conv_last = _conv3x3(backbone_feat, out_ch)
        self.conv_residual_last = _conv3x3(num_residual_feat, out_ch)
        self.upsampler = nn.PixelShuffle(upscale)
        self.upscale = upscale
        self._init_residual_stream(num_in_ch)

    @torch.no_grad()
    def _init_residual_stream(self, colors: int) -> None:
        """Residual stream = nearest-repeat upsampling, no residual-to-backbone flow (the paper's init).

        The first ``colors`` residual channels copy the input through centre-tap identity kernels;
        ``conv_residual_last`` repeats colour ``i`` into its ``upscale**2`` sub-pixel channels.
        """
        centre = 1
        self.conv_residual_first.weight.zero_()
        for i in range(colors):
            self.conv_residual_first.weight[i, i, centre, centre] = 1
        for conv in self.residual_convs:
            assert isinstance(conv, nn.Conv2d)
            conv.weight.zero_()
            for i in range(conv.out_channels):
                conv.weight[i, i, centre, centre] = 1
        for conv in self.add_residual_convs:
            assert isinstance(conv, nn.Conv2d)
            conv.weight.zero_()
        repeats = self.upscale**2
        self.conv_residual_last.weight.zero_()
        for i in range(colors):
            self.conv_residual_last.weight[i * repeats:(i + 1) * repeats, i, centre, centre] = 1
        for conv in (self.conv_residual_first, *self.residual_convs, *self.add_residual_convs,
                     self.conv_residual_last):
            conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(SR image, low-frequency image): the second output feeds the auxiliary loss only."""
        feat = F.relu(self.conv_first(x))
        res = F.relu(self.conv_residual_first(x))
        for backbone, residual, add_residual in zip(self.backbone_convs, self.residual_convs,
                                                    self.add_residual_convs):
            feat, res = F.relu(backbone(feat) + add_residual(res)), F.relu(residual(res))
        high = self.upsampler(self.conv_last(feat))
        low = self.upsampler(self.conv_residual_last(res))
        return high + low, low


@ARCH_REGISTRY.register(meta=ETDS_PLAIN_SPEC)
class ETDSForInference(nn.Module):
    """Plain form: conv + ReLU stack whose last two convs compute clamp(y, 0, 1) as ReLU(1 - ReLU(1 - y)).

    ``num_feat`` is the full width (backbone + residual channels); ``num_residual_feat`` is accepted so
    that the official option files build it, and only checked.
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, upscale: int = 4, num_block: int = 6,
                 num_feat: int = 32, num_residual_feat: int = 3) -> None:
        super().__init__()
        check_etds_args('ETDSForInference', num_in_ch, num_out_ch, upscale, num_block, num_feat, num_residual_feat,
                    need_backbone=False)
        out_ch = inference_out_channels(num_out_ch, upscale)
        self.conv_first = _conv3x3(num_in_ch, num_feat)
        self.backbone_convs = nn.ModuleList(_conv3x3(num_feat, num_feat) for _ in range(num_block))
        self.conv_last = _conv3x3(num_feat, out_ch)
        self.conv_clip = nn.Conv2d(out_ch, out_ch, kernel_size=1)
        self.upsampler = nn.PixelShuffle(upscale)
        self.num_image_ch = num_out_ch * upscale**2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv_first(x))
        for conv in self.backbone_convs:
            x = F.relu(conv(x))
        x = F.relu(self.conv_clip(F.relu(self.conv_last(x))))
        return self.upsampler(x[:, :self.num_image_ch])  # drops the x3 dummy channel


@ARCH_REGISTRY.register(meta=ETDS_SPEC)
class Plain(nn.Module):
    """The paper's baseline without ET (``type: Plain`` in the official options); output is not clamped."""

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, upscale: int = 4, num_block: int = 6,
                 num_feat: int = 32) -> None:
        super().__init__()
        require_positive(num_in_ch=num_in_ch, num_out_ch=num_out_ch, upscale=upscale, num_block=num_block,
                         num_feat=num_feat)
        self.conv_first = _conv3x3(num_in_ch, num_feat)
        self.backbone_convs = nn.ModuleList(_conv3x3(num_feat, num_feat) for _ in range(num_block))
        self.conv_last = _conv3x3(num_feat, num_out_ch * upscale**2)
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv_first(x))
        for conv in self.backbone_convs:
            x = F.relu(conv(x))
        return self.upsampler(self.conv_last(x))


# Presets: M{num_block}C{num_feat}, as published. Parameter counts come from the official checkpoints (the
# plain-form ETDS_M*_x*.pth, the training-form ETDS_M6C32_x4_normal_loss.pth and Plain_M6C32_x4.pth).


@ARCH_REGISTRY.register(meta=ETDS_SPEC)
def ETDS_M4C32(upscale: int = 4) -> ETDS:
    return ETDS(upscale=upscale, num_block=4, num_feat=32)


@ARCH_REGISTRY.register(meta=ETDS_SPEC)
def ETDS_M5C16(upscale: int = 4) -> ETDS:
    return ETDS(upscale=upscale, num_block=5, num_feat=16)


@ARCH_REGISTRY.register(meta=replace(ETDS_SPEC, params={4: 65780}))
def ETDS_M6C32(upscale: int = 4) -> ETDS:
    return ETDS(upscale=upscale, num_block=6, num_feat=32)


@ARCH_REGISTRY.register(meta=ETDS_SPEC)
def ETDS_M7C48(upscale: int = 4) -> ETDS:
    return ETDS(upscale=upscale, num_block=7, num_feat=48)


@ARCH_REGISTRY.register(meta=replace(ETDS_PLAIN_SPEC, params={2: 41512, 3: 46792, 4: 54112}))
def ETDSForInference_M4C32(upscale: int = 4) -> ETDSForInference:
    return ETDSForInference(upscale=upscale, num_block=4, num_feat=32)


@ARCH_REGISTRY.register(meta=replace(ETDS_PLAIN_SPEC, params={2: 13944, 3: 16920, 4: 21360}))
def ETDSForInference_M5C16(upscale: int = 4) -> ETDSForInference:
    return ETDSForInference(upscale=upscale, num_block=5, num_feat=16)


@ARCH_REGISTRY.register(meta=replace(ETDS_PLAIN_SPEC, params={2: 60008, 3: 65288, 4: 72608}))
def ETDSForInference_M6C32(upscale: int = 4) -> ETDSForInference:
    return ETDSForInference(upscale=upscale, num_block=6, num_feat=32)


@ARCH_REGISTRY.register(meta=replace(ETDS_PLAIN_SPEC, params={2: 152184, 3: 159768, 4: 169968}))
def ETDSForInference_M7C48(upscale: int = 4) -> ETDSForInference:
    return ETDSForInference(upscale=upscale, num_block=7, num_feat=48)


@ARCH_REGISTRY.register(meta=replace(ETDS_SPEC, params={4: 70256}))
def Plain_M6C32(upscale: int = 4) -> Plain:
    return Plain(upscale=upscale, num_block=6, num_feat=32)
