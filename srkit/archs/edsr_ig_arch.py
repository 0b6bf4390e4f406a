"""EDSRIG and EDSRIGPlus: EDSR with IGConv / IGConv+ as the IGConv authors release them (their
igconv/archs/edsr_ig_arch.py), so their option files and checkpoints (EDSR_IGConv(Plus)_DIV2K.pth) work as
they are: the same arguments, parameter names (``upsample`` is the IGConv, ``skip`` the IGSample) and forward.

IGConv+ adds the IGSample skip to the finished image: ``upsample(features) / img_range + mean + skip``.
``upscale`` and ``num_out_ch`` are accepted and unused, as in the official classes (the scale is given per
call, the output is RGB).
"""
from __future__ import annotations

import torch
from torch import nn

from srkit.archs.edsr_arch import DIV2K_RGB_MEAN, ResidualBlock
from srkit.archs.igconv_arch import IGConv, IGSample
from srkit.archs.spec import ArchSpec, require_positive
from srkit.core.registry import ARCH_REGISTRY

EDSR_IG_SPEC = ArchSpec(scales=(), scale_arg=None, scale_in_forward=True)
# IGSample moves each output pixel's sampling point by an input-dependent offset: not bounded, so not tileable
EDSR_IG_PLUS_SPEC = ArchSpec(scales=(), scale_arg=None, scale_in_forward=True, tiling_exact=False)


class _EDSREncoder(nn.Module):
    """EDSR up to the features that feed its tail, layers created in the official order (so a seed gives
    the authors' initial weights)."""

    scale_in_forward = True
    mean: torch.Tensor

    def __init__(self, num_in_ch: int, num_feat: int, num_block: int, res_scale: float, img_range: float,
                 rgb_mean: tuple[float, float, float] | list[float]) -> None:
        super().__init__()
        require_positive(num_in_ch=num_in_ch, num_feat=num_feat, num_block=num_block)
        self.img_range = img_range
        self.register_buffer('mean', torch.tensor(rgb_mean, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(ResidualBlock(num_feat, res_scale) for _ in range(num_block)))
        self.conv_after_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_first((x - self.mean) * self.img_range)
        return self.conv_after_body(self.body(x)) + x


@ARCH_REGISTRY.register(meta=EDSR_IG_SPEC)
class EDSRIG(_EDSREncoder):
    """EDSR-IGConv: ``forward(x, scale)``, any integer scale."""

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_block: int = 16,
                 upscale: int = 4, res_scale: float = 1.0, img_range: float = 255.0,
                 rgb_mean: tuple[float, float, float] | list[float] = DIV2K_RGB_MEAN, sk_kernel_size: int = 3,
                 implicit_dim: int = 256, latent_layers: int = 4, geo_ensemble: bool = False) -> None:
        super().__init__(num_in_ch, num_feat, num_block, res_scale, img_range, rgb_mean)
        require_positive(sk_kernel_size=sk_kernel_size, implicit_dim=implicit_dim, latent_layers=latent_layers)
        self.upsample: nn.Module = IGConv(num_feat, sk_kernel_size, implicit_dim, latent_layers, geo_ensemble)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        return self.upsample(self.features(x), scale) / self.img_range + self.mean


@ARCH_REGISTRY.register(meta=EDSR_IG_PLUS_SPEC)
class EDSRIGPlus(_EDSREncoder):
    """EDSR-IGConv+: the geometric ensemble and the IGSample skip. In training with ``return_skip`` the
    forward returns ``(image, skip)`` as the official one does (for IGConv's DualStreamLoss)."""

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_block: int = 16,
                 upscale: int = 4, res_scale: float = 1.0, img_range: float = 255.0,
                 rgb_mean: tuple[float, float, float] | list[float] = DIV2K_RGB_MEAN, sk_kernel_size: int = 3,
                 implicit_dim: int = 256, latent_layers: int = 4, geo_ensemble: bool = True,
                 return_skip: bool = True) -> None:
        super().__init__(num_in_ch, num_feat, num_block, res_scale, img_range, rgb_mean)
        require_positive(sk_kernel_size=sk_kernel_size, implicit_dim=implicit_dim, latent_layers=latent_layers)
        self.upsample: nn.Module = IGConv(num_feat, sk_kernel_size, implicit_dim, latent_layers, geo_ensemble)
        self.skip: nn.Module = IGSample(num_feat, 3, implicit_dim // 2, latent_layers // 2, geo_ensemble)
        self.return_skip = return_skip

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        features = self.features(x)
        skip = self.skip(x, features, scale)
        out = self.upsample(features, scale) / self.img_range + self.mean + skip
        return (out, skip) if self.training and self.return_skip else out
