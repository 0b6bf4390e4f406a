"""IMDN: Information Multi-distillation Network (Hui et al., ACM MM 2019) and its two official variants.

IMDN_AS (real-world SR, output the input's size) and IMDN_RTC (the 20K-parameter real-time model).
IMDN and IMDN_AS keep the official parameter names; IMDN_RTC's official checkpoint is one
``nn.Sequential`` (``model.N...``), mapped to readable names by its ``official_keys``.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from srkit.archs.spec import ArchSpec, StateDict, require_positive
from srkit.core.registry import ARCH_REGISTRY

__all__ = ['IMDB', 'IMDN', 'IMDN_AS', 'IMDN_RTC', 'CCALayer', 'rtc_official_keys']

_SLOPE = 0.05  # LeakyReLU slope used throughout IMDN


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2)


class CCALayer(nn.Module):
    """Contrast-aware channel attention: (std + mean) per channel -> squeeze/excite -> sigmoid scale.

    The statistics are taken in float32 so a float16 feature map cannot overflow the variance.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.conv_du = nn.Sequential(nn.Conv2d(channels, channels // reduction, 1), nn.ReLU(inplace=True),
                                     nn.Conv2d(channels // reduction, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(x.float(), dim=(2, 3), correction=0, keepdim=True)
        return x * self.conv_du((var.sqrt() + mean).to(x.dtype))


class IMDB(nn.Module):
    """Information multi-distillation block: three split steps keep 1/4 of the channels each, a fourth
    conv distils the rest; the four parts are fused by a 1x1 conv (after CCA unless ``cca=False``,
    the RTC "speed" block) and added to the input.
    """

    def __init__(self, channels: int, distillation_rate: float = 0.25, cca: bool = True) -> None:
        super().__init__()
        self.distilled = int(channels * distillation_rate)
        self.remaining = channels - self.distilled
        self.c1 = _conv(channels, channels, 3)
        self.c2 = _conv(self.remaining, channels, 3)
        self.c3 = _conv(self.remaining, channels, 3)
        self.c4 = _conv(self.remaining, self.distilled, 3)
        self.act = nn.LeakyReLU(_SLOPE)
        self.cca = CCALayer(self.distilled * 4) if cca else nn.Identity()
        self.c5 = _conv(self.distilled * 4, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = []
        remaining = x
        for conv in (self.c1, self.c2, self.c3):
            distilled, remaining = torch.split(self.act(conv(remaining)), [self.distilled, self.remaining], dim=1)
            parts.append(distilled)
        parts.append(self.c4(remaining))
        return self.c5(self.cca(torch.cat(parts, dim=1))) + x


def _inference_form(net: nn.Module) -> nn.Module:
    """srkit.archs.imdn_fused.fuse_imdn, imported on use (that module builds on this one's classes)."""
    from srkit.archs.imdn_fused import fuse_imdn
    return fuse_imdn(net)


# Parameter counts of the defaults (the published models) come from the official checkpoints.
@ARCH_REGISTRY.register(meta=ArchSpec(scales=(2, 3, 4), tiling_exact=False, subpixel_tail=('upsampler',),
                                      params={2: 694404, 3: 703059, 4: 715176}, inference_form=_inference_form))
class IMDN(nn.Module):
    """IMDN (official option names): head conv, ``num_modules`` IMDBs whose outputs are all concatenated,
    1x1 fusion + LeakyReLU, 3x3 conv, shallow-feature residual, conv + PixelShuffle upsampler.
    """

    def __init__(self, in_nc: int = 3, nf: int = 64, num_modules: int = 6, out_nc: int = 3, upscale: int = 4) -> None:
        super().__init__()
        require_positive(in_nc=in_nc, nf=nf, num_modules=num_modules, out_nc=out_nc, upscale=upscale)
        self.num_modules = num_modules
        self.fea_conv = self._head(in_nc, nf)
        for i in range(1, num_modules + 1):
            self.add_module(f'IMDB{i}', IMDB(nf))
        self.c = nn.Sequential(_conv(nf * num_modules, nf, 1), nn.LeakyReLU(_SLOPE))
        self.LR_conv = _conv(nf, nf, 3)
        self.upsampler = nn.Sequential(_conv(nf, out_nc * upscale ** 2, 3), nn.PixelShuffle(upscale))

    @staticmethod
    def _head(in_nc: int, nf: int) -> nn.Module:
        return _conv(in_nc, nf, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shallow = self.fea_conv(x)
        outs = []
        feat = shallow
        for i in range(1, self.num_modules + 1):
            feat = getattr(self, f'IMDB{i}')(feat)
            outs.append(feat)
        return self.upsampler(self.LR_conv(self.c(torch.cat(outs, dim=1))) + shallow)


@ARCH_REGISTRY.register(meta=ArchSpec(scales=(4,), pad_multiple=4, min_size=4, tiling_exact=False,
                                      same_size_output=True, params={4: 752104}, inference_form=_inference_form))
class IMDN_AS(IMDN):
    """IMDN for real-world SR at any size: two stride-2 head convs, so a x4 upsampler returns the input's
    size (height and width must be multiples of 4).
    """

    @staticmethod
    def _head(in_nc: int, nf: int) -> nn.Module:
        return nn.Sequential(_conv(in_nc, nf, 3, stride=2), nn.LeakyReLU(_SLOPE), _conv(nf, nf, 3, stride=2))


_RTC_KEY = re.compile(r'^(?:model\.)?(0|2|1\.sub\.(\d+)(\.c\d)?)\.(weight|bias)$')


def rtc_official_keys(state_dict: StateDict) -> dict[str, torch.Tensor]:
    """Map the official ``nn.Sequential`` layout of model_RTC.pth (``model.`` optional) to IMDN_RTC's names.

    ``0`` head conv, ``1.sub.K.cN`` block K+1, ``1.sub.K`` without a cN the 1x1 LR conv, ``2`` upsampler conv.
    Keys that fit none of these are kept, so a strict load names them.
    """
    mapped = {}
    for key, value in state_dict.items():
        match = _RTC_KEY.match(key)
        if match is None:
            mapped[key] = value
            continue
        module, block, conv, kind = match.groups()
        if module == '0':
            name = 'fea_conv'
        elif module == '2':
            name = 'upsampler.0'
        elif conv:
            name = f'IMDB{int(block) + 1}{conv}'
        else:
            name = 'LR_conv'
        mapped[f'{name}.{kind}'] = value
    return mapped


@ARCH_REGISTRY.register(meta=ArchSpec(scales=(2, 3, 4), official_keys=rtc_official_keys, subpixel_tail=('upsampler',),
                                      params={2: 20190}))
class IMDN_RTC(nn.Module):
    """IMDN-RTC, the real-time winner of the RTC 2019 challenge: no CCA, no concat fusion, a 1x1 LR conv."""

    def __init__(self, in_nc: int = 3, nf: int = 12, num_modules: int = 5, out_nc: int = 3, upscale: int = 2) -> None:
        super().__init__()
        require_positive(in_nc=in_nc, nf=nf, num_modules=num_modules, out_nc=out_nc, upscale=upscale)
        self.num_modules = num_modules
        self.fea_conv = _conv(in_nc, nf, 3)
        for i in range(1, num_modules + 1):
            self.add_module(f'IMDB{i}', IMDB(nf, cca=False))
        self.LR_conv = _conv(nf, nf, 1)
        self.upsampler = nn.Sequential(_conv(nf, out_nc * upscale ** 2, 3), nn.PixelShuffle(upscale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shallow = self.fea_conv(x)
        feat = shallow
        for i in range(1, self.num_modules + 1):
            feat = getattr(self, f'IMDB{i}')(feat)
        return self.upsampler(self.LR_conv(feat) + shallow)

