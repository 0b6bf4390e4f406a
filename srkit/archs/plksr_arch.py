"""PLKSR (Lee, Yun and Ro, arXiv 2404.11848) and PLKSR-IGConv+, as their authors release them.

``PLKSR`` follows dslisleedh/PLKSR ``plksr/archs/plksr_arch.py`` (commit f054868) and ``PLKSRIGPlus``
IGConv's ``igconv/archs/plksr_arch.py`` (dslisleedh/IGConv, commit 1627959): the same arguments and
parameter names (``feats`` is one ``nn.Sequential``: head conv, blocks, and for PLKSR the tail conv;
``channe_mixer`` keeps the release's spelling), so the official option files and checkpoints load as they are.

A block: a channel mixer (CCM 3x3 -> 1x1, ICCM 1x1 -> 3x3, DCCM 3x3 -> 3x3, doubling the width between
with a GELU), a large kernel applied to the first ``int(dim * split_ratio)`` channels only (PLK; the
ablations SparsePLK (RepLKNet-style dilated kernels) and RectSparsePLK (SLaK-style m x n kernels) too),
element-wise attention ``x * sigmoid(conv3x3(x))`` (EA), a 1x1 refinement and the identity. PLKSR adds the
input repeated ``s^2`` times to the tail (nearest-neighbour upsampling after the pixel shuffle); PLKSR-IGConv+
replaces the tail by IGConv and the input skip by IGSample, one network for every integer scale.

The release's presets are its option files: ``PLKSR`` (64 channels, 28 DCCM blocks, 17x17 kernels, EA)
and ``PLKSR_tiny`` (64 channels, 12 DCCM blocks, 13x13 kernels, no EA). The official constructors have no
defaults; srkit's give the PLKSR preset, so every official call still means what it means there.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal, TypeVar

import torch
from torch import nn

from srkit.archs.igconv_arch import IGConv, IGSample
from srkit.archs.spec import ArchSpec, require_positive
from srkit.archs.window_ops import trunc_normal_
from srkit.core.registry import ARCH_REGISTRY

__all__ = ['EA', 'PLKBlock', 'PLKConv2d', 'PLKSR', 'PLKSRIGPlus', 'RectSparsePLKConv2d', 'SparsePLKConv2d',
           'PLKSR_tiny']

ModuleT = TypeVar('ModuleT', bound=nn.Module)
MixerType = Literal['CCM', 'ICCM', 'DCCM']
LKType = Literal['PLK', 'SparsePLK', 'RectSparsePLK']
# Kernel sizes of the mixer's two convs: (expanding, reducing).
_MIXER_KERNELS = {'CCM': (3, 1), 'ICCM': (1, 3), 'DCCM': (3, 3)}

# Local convs only, so tiles that overlap by the receptive field give the untiled output. That field is 310
# LR pixels for PLKSR (28 blocks x (2 + 8 + 1) + 2) and 98 for PLKSR_tiny: wider than any practical tile
# overlap (and than the registry sweep's test images), so srkit treats tiling as inexact and warns.
PLKSR_SPEC = ArchSpec(scales=(), scale_arg='upscaling_factor', tiling_exact=False)


@torch.no_grad()
def _trunc_normal(conv: ModuleT, std: float = 0.02, bound: float = 2.0) -> ModuleT:
    """The release's initialisation of its large kernels and of every block's last conv: BasicSR's
    ``trunc_normal_`` (std 0.02, cut at +-2), i.e. the inverse normal CDF of uniforms over the kept range.

    torch's own ``trunc_normal_`` now samples by rejection, which draws other numbers from the same seed;
    this keeps the release's draws, so a seed gives the authors' initial weights.
    """
    weight = conv.weight
    assert isinstance(weight, torch.Tensor)
    if not weight.is_meta:
        trunc_normal_(weight, std, bound)
    return conv


def _channel_mixer(kind: str, dim: int) -> nn.Sequential:
    """CCM / ICCM / DCCM: ``dim -> 2 dim -> dim`` with a GELU between (official indices 0 and 2)."""
    if kind not in _MIXER_KERNELS:
        raise ValueError(f'ccm_type must be one of {", ".join(_MIXER_KERNELS)}, got {kind!r}')
    k1, k2 = _MIXER_KERNELS[kind]
    mixer = nn.Sequential(nn.Conv2d(dim, dim * 2, k1, 1, k1 // 2), nn.GELU(), nn.Conv2d(dim * 2, dim, k2, 1, k2 // 2))
    _trunc_normal(mixer[2])
    return mixer


def _on_first_channels(x: torch.Tensor, idx: int, part: torch.Tensor) -> torch.Tensor:
    """``x`` with its first ``idx`` channels replaced by ``part``.

    Without autograd this writes into ``x`` (the block's own intermediate, as the release does at
    inference) and saves a copy of the feature map; with autograd it concatenates.
    """
    if torch.is_grad_enabled():
        return torch.cat([part, x[:, idx:]], dim=1)
    x[:, :idx] = part
    return x


class PLKConv2d(nn.Module):
    """Partial large kernel: a ``kernel_size`` conv on the first ``dim`` channels (plus them, ``with_idt``)."""

    def __init__(self, dim: int, kernel_size: int, with_idt: bool) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f'kernel_size must be odd (the output keeps the input size), got {kernel_size}')
        self.with_idt = with_idt
        self.idx = dim
        self.conv = _trunc_normal(nn.Conv2d(dim, dim, kernel_size, 1, kernel_size // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        part = x[:, :self.idx]
        out = self.conv(part)
        return _on_first_channels(x, self.idx, out + part if self.with_idt else out)


class SparsePLKConv2d(nn.Module):
    """Ablation: a sum of dilated kernels (and, ``use_max_kernel``, one dense kernel as wide as the widest
    dilated one) on the first ``dim`` channels, RepLKNet / UniRepLKNet style."""

    def __init__(self, dim: int, max_kernel_size: int, sub_kernel_sizes: Sequence[int], dilations: Sequence[int],
                 use_max_kernel: bool, with_idt: bool) -> None:
        super().__init__()
        self.use_max_kernel = use_max_kernel
        self.with_idt = with_idt
        self.idx = dim
        self.max_kernel_size = max([max_kernel_size, *((k - 1) * d + 1 for k, d in zip(sub_kernel_sizes, dilations))])
        convs = [nn.Conv2d(dim, dim, k, 1, (k // 2) * d, dilation=d) for k, d in zip(sub_kernel_sizes, dilations)]
        if use_max_kernel:
            convs.append(nn.Conv2d(dim, dim, self.max_kernel_size, 1, self.max_kernel_size // 2))
        if not convs:
            raise ValueError('SparsePLK needs sparse_kernels or use_max_kernel: it has no kernel')
        self.convs = nn.ModuleList(_trunc_normal(conv) for conv in convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        part = x[:, :self.idx]
        out = part if self.with_idt else None
        for conv in self.convs:
            y = conv(part)
            out = y if out is None else out + y
        assert out is not None, 'SparsePLK without kernels'
        return torch.cat([out, x[:, self.idx:]], dim=1)


class RectSparsePLKConv2d(nn.Module):
    """Ablation: m x n, n x m and n x n kernels (m = kernel_size, n = m // 3) on the first ``dim`` channels,
    SLaK style."""

    def __init__(self, dim: int, kernel_size: int) -> None:
        super().__init__()
        m, n = kernel_size, kernel_size // 3
        if m % 2 == 0 or n % 2 == 0:
            raise ValueError(f'RectSparsePLK needs kernel_size and kernel_size // 3 odd, got {kernel_size}')
        self.idx = dim
        self.mn_conv = nn.Conv2d(dim, dim, (m, n), 1, (m // 2, n // 2))
        self.nm_conv = nn.Conv2d(dim, dim, (n, m), 1, (n // 2, m // 2))
        self.nn_conv = nn.Conv2d(dim, dim, (n, n), 1, (n // 2, n // 2))
        for conv in (self.mn_conv, self.nm_conv, self.nn_conv):  # after all three, as the release (same seed)
            _trunc_normal(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        part = x[:, :self.idx]
        return _on_first_channels(x, self.idx, self.mn_conv(part) + self.nm_conv(part) + self.nn_conv(part))


class EA(nn.Module):
    """Element-wise attention: ``x * sigmoid(conv3x3(x))``, an input-dependent weight per value."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(dim, dim, 3, 1, 1), nn.Sigmoid())
        _trunc_normal(self.f[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.f(x)


class PLKBlock(nn.Module):
    """Channel mixer -> partial large kernel -> EA (or identity) -> 1x1 refinement, plus the input."""

    def __init__(self, dim: int, ccm_type: str, max_kernel_size: int, split_ratio: float, lk_type: str = 'PLK',
                 use_max_kernel: bool = False, sparse_kernels: Sequence[int] = (5, 5, 5),
                 sparse_dilations: Sequence[int] = (2, 3, 4), with_idt: bool = False, use_ea: bool = True) -> None:
        super().__init__()
        self.channe_mixer = _channel_mixer(ccm_type, dim)
        pdim = int(dim * split_ratio)
        if not 1 <= pdim <= dim:
            raise ValueError(f'split_ratio must keep between 1 and dim ({dim}) channels for the large kernel, '
                             f'got {split_ratio} ({pdim} channels)')
        self.lk: nn.Module
        if lk_type == 'PLK':
            self.lk = PLKConv2d(pdim, max_kernel_size, with_idt)
        elif lk_type == 'SparsePLK':
            self.lk = SparsePLKConv2d(pdim, max_kernel_size, sparse_kernels, sparse_dilations, use_max_kernel,
                                      with_idt)
        elif lk_type == 'RectSparsePLK':
            self.lk = RectSparsePLKConv2d(pdim, max_kernel_size)
        else:
            raise ValueError(f'lk_type must be PLK, SparsePLK or RectSparsePLK, got {lk_type!r}')
        self.attn = EA(dim) if use_ea else nn.Identity()
        self.refine = _trunc_normal(nn.Conv2d(dim, dim, 1, 1, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.refine(self.attn(self.lk(self.channe_mixer(x)))) + x


def _blocks(dim: int, n_blocks: int, ccm_type: str, kernel_size: int, split_ratio: float, lk_type: str,
            use_max_kernel: bool, sparse_kernels: Sequence[int], sparse_dilations: Sequence[int], with_idt: bool,
            use_ea: bool) -> list[nn.Module]:
    """The head conv and ``n_blocks`` PLK blocks, created in the release's order (so a seed gives its weights)."""
    require_positive(dim=dim, n_blocks=n_blocks, kernel_size=kernel_size)
    return [nn.Conv2d(3, dim, 3, 1, 1), *(
        PLKBlock(dim, ccm_type, kernel_size, split_ratio, lk_type, use_max_kernel, sparse_kernels, sparse_dilations,
                 with_idt, use_ea) for _ in range(n_blocks))]


# Parameter counts: the authors' classes built with each preset's arguments (the paper's tables give none).
@ARCH_REGISTRY.register(meta=replace(PLKSR_SPEC, params={2: 7365324, 3: 7373979, 4: 7386096}))
class PLKSR(nn.Module):
    """PLKSR: ``feats`` (head conv, blocks, conv to ``3 s^2``) plus the input repeated ``s^2`` times, then a
    pixel shuffle. Defaults: the paper's PLKSR (its DIV2K option files). ``is_coreml`` chose another
    implementation of the same repeat in the release; it is accepted and changes nothing.
    """

    scale_in_forward = False

    def __init__(self, dim: int = 64, n_blocks: int = 28, upscaling_factor: int = 4, ccm_type: MixerType = 'DCCM',
                 kernel_size: int = 17, split_ratio: float = 0.25, lk_type: LKType = 'PLK',
                 use_max_kernel: bool = False, sparse_kernels: Sequence[int] = (5, 5, 5, 5),
                 sparse_dilations: Sequence[int] = (1, 2, 3, 4), with_idt: bool = False, use_ea: bool = True,
                 is_coreml: bool = False) -> None:
        super().__init__()
        require_positive(upscaling_factor=upscaling_factor)
        self.scale = upscaling_factor
        self.feats = nn.Sequential(
            *_blocks(dim, n_blocks, ccm_type, kernel_size, split_ratio, lk_type, use_max_kernel, sparse_kernels,
                     sparse_dilations, with_idt, use_ea),
            nn.Conv2d(dim, 3 * upscaling_factor ** 2, 3, 1, 1))
        _trunc_normal(self.feats[0])
        _trunc_normal(self.feats[-1])
        self.to_img = nn.PixelShuffle(upscaling_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_img(self.feats(x) + x.repeat_interleave(self.scale ** 2, dim=1))


@ARCH_REGISTRY.register(meta=replace(PLKSR_SPEC, params={2: 2349772, 3: 2358427, 4: 2370544}))
def PLKSR_tiny(upscaling_factor: int = 4) -> PLKSR:
    """PLKSR-tiny (the release's ``*_64_12_0.25_13`` option files): 12 DCCM blocks, 13x13 kernels, no EA."""
    return PLKSR(dim=64, n_blocks=12, upscaling_factor=upscaling_factor, ccm_type='DCCM', kernel_size=13,
                 split_ratio=0.25, lk_type='PLK', use_ea=False)


@ARCH_REGISTRY.register(meta=ArchSpec(scales=(), scale_arg=None, scale_in_forward=True, tiling_exact=False,
                                      params={2: 8280259, 3: 8280259, 4: 8280259}))
class PLKSRIGPlus(nn.Module):
    """PLKSR-IGConv+: the PLKSR encoder (``feats`` without the tail conv), IGConv ``to_rgb`` and the IGSample
    ``skip`` from the input image: ``forward(x, scale)``, any integer scale. Defaults: the IGConv option
    file's (PLKSR's size, implicit_dim 256, 4 latent layers, geometric ensemble). The official forward has
    no ``return_skip``: it always returns the image. With ``with_idt`` (an ablation) the IGConv copy's
    inference path keeps only the large-kernel channels and fails; srkit computes what its training path does.
    """

    scale_in_forward = True

    def __init__(self, dim: int = 64, n_blocks: int = 28, ccm_type: MixerType = 'DCCM', kernel_size: int = 17,
                 split_ratio: float = 0.25, lk_type: LKType = 'PLK', use_max_kernel: bool = False,
                 sparse_kernels: Sequence[int] = (5, 5, 5, 5), sparse_dilations: Sequence[int] = (1, 2, 3, 4),
                 with_idt: bool = False, use_ea: bool = True, sk_kernel_size: int = 3, implicit_dim: int = 256,
                 latent_layers: int = 4, geo_ensemble: bool = True) -> None:
        super().__init__()
        require_positive(sk_kernel_size=sk_kernel_size, implicit_dim=implicit_dim, latent_layers=latent_layers)
        self.feats = nn.Sequential(*_blocks(dim, n_blocks, ccm_type, kernel_size, split_ratio, lk_type,
                                            use_max_kernel, sparse_kernels, sparse_dilations, with_idt, use_ea))
        _trunc_normal(self.feats[0])
        self.to_rgb = IGConv(dim, sk_kernel_size, implicit_dim, latent_layers, geo_ensemble)
        self.skip = IGSample(dim, sk_kernel_size, implicit_dim // 2, latent_layers // 2, geo_ensemble)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        features = self.feats(x)
        return self.to_rgb(features, scale) + self.skip(x, features, scale)
