"""SMFANet (Zheng, Sun, Dong and Pan, ECCV 2024) and its IGConv forms, as their authors release them.

``SMFANet`` follows Zheng-MJ/SMFANet ``basicsr/archs/SMFANet_arch.py`` (commit a05e0bb), ``SMFANetIG`` and
``SMFANetIGPlus`` IGConv's ``igconv/archs/sfmanet_arch.py`` (dslisleedh/IGConv, commit 1627959): the same
arguments and parameter names, so the released ``SMFANet[_plus]_{DIV2K,DF2K}_100w_x{2,3,4}SR.pth`` and the
IGConv option files work as they are.

A feature modulation block (FMB) is ``x + SMFA(normalize(x))`` then ``x + PCFN(normalize(x))`` (L2 over
channels). SMFA splits a 1x1 projection in two: one half is modulated by a non-local gate (max-pooled to
1/8 of the size, depthwise 3x3, plus the per-channel variance over the whole image, each with a learnt
per-channel weight ``alpha`` / ``belt``, 1x1, GELU, nearest upsampling), the other half goes through a
local depthwise MLP; a 1x1 conv fuses the sum. PCFN is a 1x1 expansion whose first quarter of channels
gets a 3x3 conv. The whole-image variance and pooling make tiling inexact; the 1/8 pooling needs at
least 8 pixels a side.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn
from torch.nn import functional as F

from srkit.archs.igconv_arch import IGConv, IGSample
from srkit.archs.spec import ArchSpec, require_positive
from srkit.core.registry import ARCH_REGISTRY

__all__ = ['DMlp', 'FMB', 'PCFN', 'SMFA', 'SMFANet', 'SMFANetIG', 'SMFANetIGPlus', 'SMFANet_plus']

DOWN_SCALE = 8  # SMFA pools its non-local branch to 1/8 of the input size
SMFANET_SPEC = ArchSpec(scales=(), scale_arg='upscaling_factor', min_size=DOWN_SCALE, tiling_exact=False,
                        subpixel_tail=('to_img',))
SMFANET_IG_SPEC = ArchSpec(scales=(), scale_arg=None, scale_in_forward=True, min_size=DOWN_SCALE,
                           tiling_exact=False)


def _check_widths(dim: int, n_blocks: int, ffn_scale: float) -> None:
    require_positive(dim=dim, n_blocks=n_blocks)
    if not int(int(dim * ffn_scale) * 0.25) >= 1:
        raise ValueError(f'ffn_scale must give PCFN at least 4 hidden channels (dim * ffn_scale), got {ffn_scale}')


class DMlp(nn.Module):
    """Local detail branch: depthwise 3x3 (to ``growth_rate`` x the width), 1x1, GELU, 1x1 back."""

    def __init__(self, dim: int, growth_rate: float = 2.0) -> None:
        super().__init__()
        hidden_dim = int(dim * growth_rate)
        self.conv_0 = nn.Sequential(nn.Conv2d(dim, hidden_dim, 3, 1, 1, groups=dim),
                                    nn.Conv2d(hidden_dim, hidden_dim, 1, 1, 0))
        self.act = nn.GELU()
        self.conv_1 = nn.Conv2d(hidden_dim, dim, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_1(self.act(self.conv_0(x)))


class PCFN(nn.Module):
    """Partial-conv feed-forward: 1x1 expansion + GELU, a 3x3 conv + GELU on the first ``p_rate`` of the
    hidden channels only, 1x1 back."""

    def __init__(self, dim: int, growth_rate: float = 2.0, p_rate: float = 0.25) -> None:
        super().__init__()
        hidden_dim = int(dim * growth_rate)
        p_dim = int(hidden_dim * p_rate)
        self.conv_0 = nn.Conv2d(dim, hidden_dim, 1, 1, 0)
        self.conv_1 = nn.Conv2d(p_dim, p_dim, 3, 1, 1)
        self.act = nn.GELU()
        self.conv_2 = nn.Conv2d(hidden_dim, dim, 1, 1, 0)
        self.p_dim = p_dim
        self.hidden_dim = hidden_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv_0(x))
        part = self.act(self.conv_1(x[:, :self.p_dim]))
        if torch.is_grad_enabled():
            x = torch.cat([part, x[:, self.p_dim:]], dim=1)
        else:  # write into our own intermediate, as the release does at inference: one feature map less
            x[:, :self.p_dim] = part
        return self.conv_2(x)


class SMFA(nn.Module):
    """Self-modulation feature aggregation (see the module docstring). ``belt`` is the release's name."""

    def __init__(self, dim: int = 36) -> None:
        super().__init__()
        self.linear_0 = nn.Conv2d(dim, dim * 2, 1, 1, 0)
        self.linear_1 = nn.Conv2d(dim, dim, 1, 1, 0)
        self.linear_2 = nn.Conv2d(dim, dim, 1, 1, 0)
        self.lde = DMlp(dim, 2)
        self.dw_conv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)
        self.gelu = nn.GELU()
        self.down_scale = DOWN_SCALE
        self.alpha = nn.Parameter(torch.ones((1, dim, 1, 1)))
        self.belt = nn.Parameter(torch.zeros((1, dim, 1, 1)))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        h, w = f.shape[-2:]
        y, x = self.linear_0(f).chunk(2, dim=1)
        pooled = self.dw_conv(F.adaptive_max_pool2d(x, (h // self.down_scale, w // self.down_scale)))
        variance = torch.var(x, dim=(-2, -1), keepdim=True)  # unbiased, as the release
        gate = self.gelu(self.linear_1(pooled * self.alpha + variance * self.belt))
        return self.linear_2(x * F.interpolate(gate, size=(h, w), mode='nearest') + self.lde(y))


class FMB(nn.Module):
    """Feature modulation block: SMFA then PCFN, each on the channel-normalised input, each residual."""

    def __init__(self, dim: int, ffn_scale: float = 2.0) -> None:
        super().__init__()
        self.smfa = SMFA(dim)
        self.pcfn = PCFN(dim, ffn_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.smfa(F.normalize(x)) + x
        return self.pcfn(F.normalize(x)) + x


class _Encoder(nn.Module):
    """``to_feat`` conv and the FMBs with a global residual: the features every SMFANet tail reads."""

    def __init__(self, dim: int, n_blocks: int, ffn_scale: float, upscaling_factor: int) -> None:
        super().__init__()
        _check_widths(dim, n_blocks, ffn_scale)
        self.scale = upscaling_factor
        self.to_feat = nn.Conv2d(3, dim, 3, 1, 1)
        self.feats = nn.Sequential(*(FMB(dim, ffn_scale) for _ in range(n_blocks)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.to_feat(x)
        return self.feats(x) + x


# Parameter counts of the released checkpoints (SMFANet_DIV2K_100w_x{2,3,4}SR.pth; the paper's Table 1 rounds
# them to 186K / 191K / 197K).
@ARCH_REGISTRY.register(meta=replace(SMFANET_SPEC, params={2: 185628, 3: 190503, 4: 197328}))
class SMFANet(_Encoder):
    """SMFANet with a conv + pixel-shuffle tail (``to_img``). Defaults: the paper's SMFANet."""

    scale_in_forward = False

    def __init__(self, dim: int = 36, n_blocks: int = 8, ffn_scale: float = 2, upscaling_factor: int = 4) -> None:
        super().__init__(dim, n_blocks, ffn_scale, upscaling_factor)
        require_positive(upscaling_factor=upscaling_factor)
        self.to_img = nn.Sequential(nn.Conv2d(dim, 3 * upscaling_factor ** 2, 3, 1, 1),
                                    nn.PixelShuffle(upscaling_factor))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_img(self.features(x))


# SMFANet_plus_DIV2K_100w_x{2,3,4}SR.pth; the paper's Table 2: 480K / 487K / 496K.
@ARCH_REGISTRY.register(meta=replace(SMFANET_SPEC, params={2: 480300, 3: 486795, 4: 495888}))
def SMFANet_plus(upscaling_factor: int = 4) -> SMFANet:
    """SMFANet+ (the release's ``SMFANet_plus_*`` option files): 48 channels, 12 blocks."""
    return SMFANet(dim=48, n_blocks=12, ffn_scale=2, upscaling_factor=upscaling_factor)


def _scale(scale: int | None) -> int:
    if scale is None:
        raise ValueError('SMFANetIG / SMFANetIGPlus need the scale: forward(x, scale)')
    return scale


# The defaults are the official class's (SMFANet's size); the released IGConv models are SMFANet+ sized
# (dim 48, 12 blocks, the IGConv option files), whose counts tests/test_plksr_smfanet.py checks.
@ARCH_REGISTRY.register(meta=SMFANET_IG_SPEC)
class SMFANetIG(_Encoder):
    """SMFANet-IGConv: the SMFANet encoder and an IGConv ``to_img``; ``forward(x, scale)``, any integer scale.
    ``upscaling_factor`` is accepted and unused, as in the official class (the IGConv option files set it).
    """

    scale_in_forward = True

    def __init__(self, dim: int = 36, n_blocks: int = 8, ffn_scale: float = 2, upscaling_factor: int = 4,
                 sk_kernel_size: int = 3, implicit_dim: int = 256, latent_layers: int = 4,
                 geo_ensemble: bool = False) -> None:
        super().__init__(dim, n_blocks, ffn_scale, upscaling_factor)
        require_positive(sk_kernel_size=sk_kernel_size, implicit_dim=implicit_dim, latent_layers=latent_layers)
        self.to_img = IGConv(dim, sk_kernel_size, implicit_dim, latent_layers, geo_ensemble)

    def forward(self, x: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        return self.to_img(self.features(x), _scale(scale))


@ARCH_REGISTRY.register(meta=SMFANET_IG_SPEC)
class SMFANetIGPlus(_Encoder):
    """SMFANet-IGConv+: IGConv ``to_img`` (geometric ensemble) plus the IGSample ``skip`` from the input.
    In training with ``return_skip`` the forward returns ``(image, skip)``, as the official one does.
    """

    scale_in_forward = True

    def __init__(self, dim: int = 36, n_blocks: int = 8, ffn_scale: float = 2, upscaling_factor: int = 4,
                 sk_kernel_size: int = 3, implicit_dim: int = 256, latent_layers: int = 4,
                 geo_ensemble: bool = True, return_skip: bool = True) -> None:
        super().__init__(dim, n_blocks, ffn_scale, upscaling_factor)
        require_positive(sk_kernel_size=sk_kernel_size, implicit_dim=implicit_dim, latent_layers=latent_layers)
        self.to_img = IGConv(dim, sk_kernel_size, implicit_dim, latent_layers, geo_ensemble)
        self.return_skip = return_skip
        self.skip = IGSample(dim, sk_kernel_size, implicit_dim // 2, latent_layers // 2, geo_ensemble)

    def forward(self, x: torch.Tensor, scale: int | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        s = _scale(scale)
        features = self.features(x)
        skip = self.skip(x, features, s)
        out = self.to_img(features, s) + skip
        return (out, skip) if self.training and self.return_skip else out
