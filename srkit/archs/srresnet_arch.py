"""MSRResNet: BasicSR's modified SRResNet (Ledig et al., CVPR 2017, without batch norm), the generator of its
SRResNet and SRGAN option files (options/train/SRResNet_SRGAN/).

Parameter names are BasicSR's (basicsr/archs/srresnet_arch.py: ``conv_first``, ``body.<i>.conv1/conv2``,
``upconv1``, ``upconv2`` (x4 only), ``conv_hr``, ``conv_last``), so its released models (docs/ModelZoo.md:
001_MSRResNet_x4_f64b16_DIV2K_1000k_B16G1_wandb, 1,517,571 parameters; 002_MSRResNet_x2_..., 1,369,859;
003_MSRResNet_x3_..., 1,554,499) load strictly.

The output is the network's residual added to the bilinearly upsampled input. x2 and x3 upsample with one
conv and a pixel shuffle by the scale; x4 with two convs, each followed by a shuffle by 2. x2's ``upconv1``
has x4's shape, so an x2 checkpoint misses only ``upconv2`` in an x4 network (a strict load refuses it).
The spec declares no ``subpixel_tail``: the upsampler is interleaved with activations and the image skip, so
no submodule alone maps features to the image (IGConv could not swap it).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from srkit.archs.edsr_arch import ResidualBlock
from srkit.archs.spec import ArchSpec, require_positive
from srkit.core.registry import ARCH_REGISTRY

INIT_SCALE = 0.1  # BasicSR's default_init_weights(..., 0.1) on every conv
SCALES = (2, 3, 4)


def _conv(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, 1, 1)


@torch.no_grad()
def _scaled_kaiming_init(*convs: nn.Conv2d) -> None:
    """Kaiming-normal weights times 0.1 and zero biases, in the order given: BasicSR redraws the weights after
    torch's default init, so the same draws in the same order give a seed BasicSR's initial weights."""
    for conv in convs:
        nn.init.kaiming_normal_(conv.weight)
        conv.weight.mul_(INIT_SCALE)
        assert conv.bias is not None
        conv.bias.zero_()


def _residual_block(num_feat: int) -> ResidualBlock:
    """BasicSR's ResidualBlockNoBN (conv-ReLU-conv plus identity, the same names as EDSR's block), initialised
    as soon as it is built, as BasicSR's constructor does."""
    block = ResidualBlock(num_feat, res_scale=1.0)
    _scaled_kaiming_init(block.conv1, block.conv2)
    return block


@ARCH_REGISTRY.register(meta=ArchSpec(scales=SCALES, scale_arg='upscale',
                                      params={2: 1_369_859, 3: 1_554_499, 4: 1_517_571}))
class MSRResNet(nn.Module):
    """SRResNet without batch norm, with BasicSR's arguments; the defaults are its released x4 network.

    ``num_feat``: trunk width; ``num_block``: residual blocks in the trunk; ``upscale``: 2, 3 or 4.
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_block: int = 16,
                 upscale: int = 4) -> None:
        super().__init__()
        require_positive(num_in_ch=num_in_ch, num_out_ch=num_out_ch, num_feat=num_feat, num_block=num_block,
                         upscale=upscale)
        if upscale not in SCALES:
            raise ValueError(f'MSRResNet supports upscale {list(SCALES)}, not {upscale}')
        if num_in_ch != num_out_ch:
            raise ValueError(f'MSRResNet adds the upsampled input to its output, so num_out_ch must equal '
                             f'num_in_ch ({num_in_ch}), got {num_out_ch}')
        self.upscale = upscale
        self.conv_first = _conv(num_in_ch, num_feat)
        self.body = nn.Sequential(*(_residual_block(num_feat) for _ in range(num_block)))
        shuffle = 2 if upscale == 4 else upscale
        self.upconv1 = _conv(num_feat, num_feat * shuffle ** 2)
        self.upconv2 = _conv(num_feat, num_feat * 4) if upscale == 4 else None
        self.pixel_shuffle = nn.PixelShuffle(shuffle)
        self.conv_hr = _conv(num_feat, num_feat)
        self.conv_last = _conv(num_feat, num_out_ch)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)
        _scaled_kaiming_init(self.conv_first, self.upconv1, self.conv_hr, self.conv_last)
        if self.upconv2 is not None:  # BasicSR initialises it last
            _scaled_kaiming_init(self.upconv2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(self.lrelu(self.conv_first(x)))
        for conv in (self.upconv1, self.upconv2):
            if conv is not None:
                out = self.lrelu(self.pixel_shuffle(conv(out)))
        out = self.conv_last(self.lrelu(self.conv_hr(out)))
        return out + F.interpolate(x, scale_factor=self.upscale, mode='bilinear', align_corners=False)
