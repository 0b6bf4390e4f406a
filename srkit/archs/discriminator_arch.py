"""GAN discriminators (``network_d``) with the parameter names of their authors' releases.

``VGGStyleDiscriminator`` is BasicSR's (basicsr/archs/discriminator_arch.py; SRGAN's and ESRGAN's
discriminator): one logit per image, for a fixed input size. ``UNetDiscriminatorSN`` is Real-ESRGAN's
(realesrgan/archs/discriminator_arch.py): one logit per pixel, its convs spectrally normalised with
``torch.nn.utils.spectral_norm``, whose ``weight_orig`` / ``weight_u`` / ``weight_v`` are the keys of the
released ``*_netD.pth`` files.

Both are built in their authors' order with PyTorch's default init, so a seed gives the authors' initial
weights. Each has ``check_input_size(height, width)``: the GAN model calls it before training starts, and
``forward`` calls it too, so a patch size the network cannot score is one clear ValueError instead of a shape
error deep inside (or, for the VGG network's width, a silently different layout).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import spectral_norm

from srkit.archs.spec import ArchSpec, require_positive
from srkit.core.registry import ARCH_REGISTRY

VGG_INPUT_SIZES = (128, 256)
VGG_FINAL_SIDE = 4  # the VGG network halves its input down to 4x4 before the linear layers
UNET_MULTIPLE = 8  # three stride-2 convs, undone by three 2x upsamplings


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, negative_slope=0.2)


@ARCH_REGISTRY.register(meta=ArchSpec(discriminator=True, scales=(), scale_arg=None, min_size=VGG_INPUT_SIZES[0],
                                      example_args={'num_in_ch': 3, 'num_feat': 64}))
class VGGStyleDiscriminator(nn.Module):
    """VGG-style discriminator for input_size x input_size images (128 or 256): pairs of a 3x3 conv and a
    stride-2 4x4 conv (batch-normalised, widths num_feat up to 8 * num_feat) down to 4x4, then two linear
    layers to one logit per image."""

    def __init__(self, num_in_ch: int, num_feat: int, input_size: int = 128) -> None:
        super().__init__()
        require_positive(num_in_ch=num_in_ch, num_feat=num_feat, input_size=input_size)
        if input_size not in VGG_INPUT_SIZES:
            raise ValueError(f'input_size must be 128 or 256, got {input_size}')
        self.input_size = input_size
        self.conv0_0 = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1, bias=True)
        self.conv0_1 = nn.Conv2d(num_feat, num_feat, 4, 2, 1, bias=False)
        self.bn0_1 = nn.BatchNorm2d(num_feat)
        self.stages = (input_size // VGG_FINAL_SIDE).bit_length() - 1  # halvings: 5 for 128, 6 for 256
        for i in range(1, self.stages):
            in_ch, out_ch = num_feat * min(2 ** (i - 1), 8), num_feat * min(2 ** i, 8)
            self.add_module(f'conv{i}_0', nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False))
            self.add_module(f'bn{i}_0', nn.BatchNorm2d(out_ch))
            self.add_module(f'conv{i}_1', nn.Conv2d(out_ch, out_ch, 4, 2, 1, bias=False))
            self.add_module(f'bn{i}_1', nn.BatchNorm2d(out_ch))
        self.linear1 = nn.Linear(num_feat * 8 * VGG_FINAL_SIDE ** 2, 100)
        self.linear2 = nn.Linear(100, 1)

    def check_input_size(self, height: int, width: int) -> None:
        """Refuse any size but input_size x input_size (the linear layers are sized for it)."""
        side = self.input_size
        if (height, width) != (side, side):
            raise ValueError(f'VGGStyleDiscriminator with input_size {side} scores {side}x{side} images only, '
                             f'not {height}x{width}: make the patches (gt_size) {side}x{side}, or set input_size '
                             f'to the patch size ({" or ".join(map(str, VGG_INPUT_SIZES))}).')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input_size(*x.shape[-2:])
        feat = _lrelu(self.conv0_0(x))
        feat = _lrelu(self.bn0_1(self.conv0_1(feat)))
        for i in range(1, self.stages):
            for j in (0, 1):
                feat = _lrelu(getattr(self, f'bn{i}_{j}')(getattr(self, f'conv{i}_{j}')(feat)))
        # flatten, not view: the same order of values, and a channels_last tensor works too
        return self.linear2(_lrelu(self.linear1(torch.flatten(feat, 1))))


@ARCH_REGISTRY.register(meta=ArchSpec(discriminator=True, scales=(), scale_arg=None, pad_multiple=UNET_MULTIPLE,
                                      min_size=UNET_MULTIPLE, example_args={'num_in_ch': 3}))
class UNetDiscriminatorSN(nn.Module):
    """Real-ESRGAN's U-Net discriminator: three spectrally normalised stride-2 convs down, three bilinear 2x
    upsamplings each followed by a conv (adding the encoder's features of that size when ``skip_connection``),
    two more convs and a conv to one logit per pixel."""

    def __init__(self, num_in_ch: int, num_feat: int = 64, skip_connection: bool = True) -> None:
        super().__init__()
        require_positive(num_in_ch=num_in_ch, num_feat=num_feat)
        self.skip_connection = skip_connection
        self.conv0 = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.conv1 = spectral_norm(nn.Conv2d(num_feat, num_feat * 2, 4, 2, 1, bias=False))
        self.conv2 = spectral_norm(nn.Conv2d(num_feat * 2, num_feat * 4, 4, 2, 1, bias=False))
        self.conv3 = spectral_norm(nn.Conv2d(num_feat * 4, num_feat * 8, 4, 2, 1, bias=False))
        self.conv4 = spectral_norm(nn.Conv2d(num_feat * 8, num_feat * 4, 3, 1, 1, bias=False))
        self.conv5 = spectral_norm(nn.Conv2d(num_feat * 4, num_feat * 2, 3, 1, 1, bias=False))
        self.conv6 = spectral_norm(nn.Conv2d(num_feat * 2, num_feat, 3, 1, 1, bias=False))
        self.conv7 = spectral_norm(nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=False))
        self.conv8 = spectral_norm(nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(num_feat, 1, 3, 1, 1)

    def check_input_size(self, height: int, width: int) -> None:
        """With skip connections, each upsampled map is added to the encoder's map of twice its size, so
        both sides must be multiples of 8; without them, at least 8 (the output is then cropped to multiples
        of 8, as in the authors' code)."""
        if self.skip_connection and (height % UNET_MULTIPLE or width % UNET_MULTIPLE):
            raise ValueError(f'UNetDiscriminatorSN scores images whose height and width are multiples of '
                             f'{UNET_MULTIPLE} (its three 2x down- and upsamplings meet in skip connections), '
                             f'not {height}x{width}: make the patches (gt_size) a multiple of {UNET_MULTIPLE}.')
        if min(height, width) < UNET_MULTIPLE:
            raise ValueError(f'UNetDiscriminatorSN scores images at least {UNET_MULTIPLE}x{UNET_MULTIPLE} (it '
                             f'downsamples three times by 2), not {height}x{width}: make the patches (gt_size) '
                             f'larger.')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input_size(*x.shape[-2:])
        x0 = _lrelu(self.conv0(x))
        x1 = _lrelu(self.conv1(x0))
        x2 = _lrelu(self.conv2(x1))
        feat = _lrelu(self.conv3(x2))
        for conv, skip in ((self.conv4, x2), (self.conv5, x1), (self.conv6, x0)):
            feat = _lrelu(conv(F.interpolate(feat, scale_factor=2, mode='bilinear', align_corners=False)))
            if self.skip_connection:
                feat = feat + skip
        out = _lrelu(self.conv8(_lrelu(self.conv7(feat))))
        return self.conv9(out)
