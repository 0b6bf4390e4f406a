"""RRDBNet: ESRGAN's generator (Wang et al., ECCVW 2018) as BasicSR builds it, the network of Real-ESRGAN.

Parameter names are BasicSR's (basicsr/archs/rrdbnet_arch.py: ``conv_first``, ``body.<i>.rdb<j>.conv<k>``,
``conv_body``, ``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``), so Real-ESRGAN's released
RealESRGAN_x4plus.pth, RealESRNet_x4plus.pth and RealESRGAN_x2plus.pth load strictly (``params_ema``).

The trunk always upsamples by 4 (two nearest-neighbour doublings). Scales 2 and 1 are BasicSR's extension:
the input is pixel-unshuffled by 2 or 4 first (4 or 16 times the channels at a half or a quarter of the
size). BasicSR then needs sides that are multiples of 2 or 4; here other sides are padded (reflected, bottom
and right) and the output cropped, as Real-ESRGAN's inference (``RealESRGANer``'s ``mod_pad``) does. Doing it
inside the network keeps x4, which needs no padding, exactly BasicSR's on any size (``pad_multiple`` is one
value for every scale).

Tiling: no global pooling, but the receptive field is about 350 LR pixels at x4 (23 blocks of 15 convs;
twice and four times that at x2 and x1): no practical overlap covers it, so the spec declares tiled output
inexact, as RDN's does.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from srkit.archs.spec import ArchSpec, require_positive
from srkit.core.registry import ARCH_REGISTRY

UNSHUFFLE = {4: 1, 2: 2, 1: 4}  # scale -> pixel-unshuffle factor before the x4 trunk
RESIDUAL_SCALE = 0.2  # ESRGAN's residual scaling, in both the dense blocks and the RRDBs
INIT_SCALE = 0.1  # BasicSR's default_init_weights(..., 0.1) on the dense blocks' convs


def _conv(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, 1, 1)


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs (each sees the block input and every earlier output), scaled residual.

    Built as BasicSR builds it: the convs with PyTorch's default init, then Kaiming-normal weights times 0.1
    and zero biases (the same draws in the same order, so a seed gives BasicSR's initial weights).
    """

    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.conv1 = _conv(num_feat, num_grow_ch)
        self.conv2 = _conv(num_feat + num_grow_ch, num_grow_ch)
        self.conv3 = _conv(num_feat + 2 * num_grow_ch, num_grow_ch)
        self.conv4 = _conv(num_feat + 3 * num_grow_ch, num_grow_ch)
        self.conv5 = _conv(num_feat + 4 * num_grow_ch, num_feat)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        with torch.no_grad():
            for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
                nn.init.kaiming_normal_(conv.weight)
                conv.weight.mul_(INIT_SCALE)
                assert conv.bias is not None
                conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            features.append(self.lrelu(conv(torch.cat(features, 1))))
        return self.conv5(torch.cat(features, 1)) * RESIDUAL_SCALE + x


class RRDB(nn.Module):
    """Residual in residual dense block: three dense blocks in a row around a scaled skip."""

    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * RESIDUAL_SCALE + x


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """``x`` padded at the bottom and right to sides that are multiples of ``multiple``: reflected where the
    image is large enough (Real-ESRGAN's inference pads so), repeated at the edge where it is not."""
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if not (pad_h or pad_w):
        return x
    mode = 'reflect' if pad_h < h and pad_w < w else 'replicate'
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


@ARCH_REGISTRY.register(meta=ArchSpec(scales=(1, 2, 4), scale_arg='scale', tiling_exact=False,
                                      params={4: 16_697_987, 2: 16_703_171, 1: 16_723_907}))
class RRDBNet(nn.Module):
    """ESRGAN's generator with BasicSR's arguments; the defaults are the released network (16.70 M at x4).

    ``num_feat``: trunk width; ``num_block``: RRDBs in the trunk (23 released, 6 in Real-ESRGAN's anime model);
    ``num_grow_ch``: channels each dense-block conv adds.
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, scale: int = 4, num_feat: int = 64,
                 num_block: int = 23, num_grow_ch: int = 32) -> None:
        super().__init__()
        require_positive(num_in_ch=num_in_ch, num_out_ch=num_out_ch, scale=scale, num_feat=num_feat,
                         num_block=num_block, num_grow_ch=num_grow_ch)
        if scale not in UNSHUFFLE:
            raise ValueError(f'RRDBNet supports scales {sorted(UNSHUFFLE)}, not {scale}')
        self.scale = scale
        self.unshuffle = UNSHUFFLE[scale]
        self.conv_first = _conv(num_in_ch * self.unshuffle ** 2, num_feat)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = _conv(num_feat, num_feat)
        self.conv_up1 = _conv(num_feat, num_feat)
        self.conv_up2 = _conv(num_feat, num_feat)
        self.conv_hr = _conv(num_feat, num_feat)
        self.conv_last = _conv(num_feat, num_out_ch)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(_pad_to_multiple(x, self.unshuffle), self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for conv in (self.conv_up1, self.conv_up2):
            feat = self.lrelu(conv(F.interpolate(feat, scale_factor=2, mode='nearest')))
        out = self.conv_last(self.lrelu(self.conv_hr(feat)))
        return out[..., :h * self.scale, :w * self.scale]
