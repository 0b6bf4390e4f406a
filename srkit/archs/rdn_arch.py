"""RDN (Zhang et al., CVPR 2018) as EDSR-PyTorch builds it, and its IGConv forms (Lee et al., arXiv 2408.09674).

``RDN`` has the parameter names of EDSR-PyTorch's src/model/rdn.py (``SFENet1``, ``SFENet2``, ``RDBs``,
``GFF``, ``UPNet``) and its options (``G0``, ``RDNkSize``, ``RDNconfig``: 'B' is the paper's network, D=16
blocks of C=8 convs growing by G=64; 'A' is D=20, C=6, G=32). ``RDNIG`` and ``RDNIGPlus`` are the classes
dslisleedh/IGConv registers (igconv/archs/rdn_arch.py): the same trunk, ``UPNet`` an IGConv, and for
IGConv+ ``skip`` an IGSample; one network for every integer scale (``net(x, scale)``).

As released, the convs inside the dense blocks are always 3x3: ``RDNkSize`` sizes only the shallow
feature convs, the global fusion conv and the upsampler.

Tiling: RDN has no global pooling, so tiles overlapping by its receptive field (about 130 LR pixels for
config B) would reproduce the untiled output; no practical overlap covers that, so the specs declare
tiled output inexact and srkit warns when asked to tile.
"""
from __future__ import annotations

import torch
from torch import nn

from srkit.archs.igconv_arch import IGConv, IGSample
from srkit.archs.spec import ArchSpec, require_positive
from srkit.core.registry import ARCH_REGISTRY

CONFIGS = {'A': (20, 6, 32), 'B': (16, 8, 64)}  # RDNconfig -> (D blocks, C convs per block, G growth rate)
IG_SPEC = ArchSpec(scales=(), scale_arg=None, scale_in_forward=True, tiling_exact=False)


def _conv(in_ch: int, out_ch: int, kernel_size: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size, padding=(kernel_size - 1) // 2)


class RDBConv(nn.Module):
    """One dense layer: its G new channels appended to its input."""

    def __init__(self, in_channels: int, grow_rate: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv(in_channels, grow_rate, 3), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, self.conv(x)), 1)


class RDB(nn.Module):
    """Residual dense block: C dense layers, a 1x1 local feature fusion (LFF) back to G0, a local skip."""

    def __init__(self, grow_rate0: int, grow_rate: int, n_conv_layers: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(*(RDBConv(grow_rate0 + c * grow_rate, grow_rate) for c in range(n_conv_layers)))
        self.LFF = nn.Conv2d(grow_rate0 + n_conv_layers * grow_rate, grow_rate0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LFF(self.convs(x)) + x


class _RDNTrunk(nn.Module):
    """Shallow features, D residual dense blocks and global feature fusion: what all three classes share.

    ``features(x)`` returns the fused features plus the first shallow features (the global skip), which
    the upsampler reads.
    """

    def __init__(self, G0: int, RDNkSize: int, RDNconfig: str, n_colors: int) -> None:
        super().__init__()
        require_positive(G0=G0, RDNkSize=RDNkSize, n_colors=n_colors)
        if RDNconfig not in CONFIGS:
            raise ValueError(f"RDNconfig must be 'A' or 'B', got {RDNconfig!r}")
        self.D, n_conv_layers, self.G = CONFIGS[RDNconfig]
        self.SFENet1 = _conv(n_colors, G0, RDNkSize)
        self.SFENet2 = _conv(G0, G0, RDNkSize)
        self.RDBs = nn.ModuleList(RDB(G0, self.G, n_conv_layers) for _ in range(self.D))
        self.GFF = nn.Sequential(nn.Conv2d(self.D * G0, G0, 1), _conv(G0, G0, RDNkSize))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        shallow = self.SFENet1(x)
        x = self.SFENet2(shallow)
        outs = []
        for block in self.RDBs:
            x = block(x)
            outs.append(x)
        return self.GFF(torch.cat(outs, 1)) + shallow


@ARCH_REGISTRY.register(meta=ArchSpec(scales=(2, 3, 4), scale_arg='scale', tiling_exact=False,
                                      subpixel_tail=('UPNet',),
                                      params={2: 22_123_395, 3: 22_308_035, 4: 22_271_107}))
class RDN(_RDNTrunk):
    """RDN with EDSR-PyTorch's options and parameter names; defaults are the paper's network (22.27 M at x4).

    ``UPNet``: conv to G*s^2 + shuffle + conv to RGB at x2/x3; two conv + shuffle(2) stages at x4.
    ``rgb_range``: the pixel range the weights were trained for (EDSR-PyTorch's default 255; RDN has no mean
    shift, so it matters): srkit's [0, 1] input is multiplied by it and the output divided by it.
    """

    def __init__(self, G0: int = 64, RDNkSize: int = 3, RDNconfig: str = 'B', scale: int = 4, n_colors: int = 3,
                 rgb_range: float = 255) -> None:
        super().__init__(G0, RDNkSize, RDNconfig, n_colors)
        if scale not in (2, 3, 4):
            raise ValueError(f'RDN supports scale 2, 3 or 4, not {scale!r}')
        if not rgb_range > 0:
            raise ValueError(f'rgb_range must be positive, got {rgb_range!r}')
        self.scale_in_forward = False
        self.rgb_range = rgb_range
        G, k = self.G, RDNkSize
        stages = [(G0, G * scale * scale, scale)] if scale in (2, 3) else [(G0, G * 4, 2), (G, G * 4, 2)]
        layers: list[nn.Module] = []
        for in_ch, out_ch, factor in stages:
            layers += [_conv(in_ch, out_ch, k), nn.PixelShuffle(factor)]
        self.UPNet = nn.Sequential(*layers, _conv(G, n_colors, k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.UPNet(self.features(x * self.rgb_range)) / self.rgb_range


def _check_ig(G0: int, sk_kernel_size: int, implicit_dim: int, latent_layers: int, max_s: int) -> None:
    """Sizes named as the user gave them (IGConv's own check would name its own arguments)."""
    require_positive(sk_kernel_size=sk_kernel_size, implicit_dim=implicit_dim, latent_layers=latent_layers,
                     max_s=max_s, G0=G0)


@ARCH_REGISTRY.register(meta=IG_SPEC)
class RDNIG(_RDNTrunk):
    """RDN-IGConv: the RDN trunk with an IGConv as ``UPNet`` (no ensemble by default), arguments as the
    official class. Works in srkit's [0, 1] range, as the official BasicSR-based training does."""

    def __init__(self, G0: int = 64, RDNkSize: int = 3, RDNconfig: str = 'B', n_colors: int = 3,
                 sk_kernel_size: int = 3, implicit_dim: int = 256, latent_layers: int = 4,
                 geo_ensemble: bool = False) -> None:
        _check_ig(G0, sk_kernel_size, implicit_dim, latent_layers, 4)
        super().__init__(G0, RDNkSize, RDNconfig, n_colors)
        self.scale_in_forward = True
        self.UPNet = IGConv(G0, sk_kernel_size, implicit_dim, latent_layers, geo_ensemble)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        return self.UPNet(self.features(x), scale)


@ARCH_REGISTRY.register(meta=IG_SPEC)
class RDNIGPlus(_RDNTrunk):
    """RDN-IGConv+: ``UPNet`` an IGConv, ``skip`` an IGSample (half the Fourier width and MLP depth, the same
    kernel size) adding the resampled LR image. In training with ``return_skip`` the forward returns
    ``(output, skip)``, as the official class does; otherwise the output alone."""

    def __init__(self, G0: int = 64, RDNkSize: int = 3, RDNconfig: str = 'B', n_colors: int = 3,
                 sk_kernel_size: int = 3, implicit_dim: int = 256, latent_layers: int = 4,
                 geo_ensemble: bool = False, max_s: int = 4, return_skip: bool = False) -> None:
        _check_ig(G0, sk_kernel_size, implicit_dim, latent_layers, max_s)
        super().__init__(G0, RDNkSize, RDNconfig, n_colors)
        self.scale_in_forward = True
        self.return_skip = return_skip
        self.UPNet = IGConv(G0, sk_kernel_size, implicit_dim, latent_layers, geo_ensemble, max_s)
        self.skip = IGSample(G0, sk_kernel_size, implicit_dim // 2, latent_layers // 2, geo_ensemble, max_s)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        features = self.features(x)
        skip = self.skip(x, features, scale)
        out = self.UPNet(features, scale) + skip
        return (out, skip) if self.training and self.return_skip else out
