"""RCAN (Zhang et al., ECCV 2018) as its authors release it, and its IGConv+ form (Lee et al., arXiv 2408.09674).

``RCAN`` has the parameter names of yulunzhang/RCAN (RCAN_TrainCode/code/model/rcan.py, EDSR-PyTorch style:
``sub_mean``, ``head``, ``body``, ``tail``, ``add_mean``), so the released RCAN_BIX{2,3,4,8}.pt load strictly.
``RCANIGPlus`` is the class dslisleedh/IGConv registers (igconv/archs/rcan_arch.py): the same trunk with its
sizes fixed (10 groups of 20 blocks, 64 channels), ``rgb_range`` 1, ``tail`` an IGConv and ``skip`` an
IGSample, one network for every integer scale (``net(x, scale)``).

Two facts of the release kept on purpose: the mean shifts are 1x1 convs whose weight and bias are ordinary
trainable parameters (the authors' ``self.requires_grad = False`` sets a module attribute and freezes
nothing, so their optimiser trained them); and ``res_scale`` is accepted but unused (their residual
channel attention block never multiplies by it).
"""
from __future__ import annotations

import torch
from torch import nn

from srkit.archs.edsr_arch import Upsample
from srkit.archs.igconv_arch import IGConv, IGSample
from srkit.archs.spec import ArchSpec, require_positive
from srkit.core.registry import ARCH_REGISTRY

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


def _conv(in_ch: int, out_ch: int, kernel_size: int = 3) -> nn.Conv2d:
    """The authors' ``default_conv``: same padding, with bias."""
    return nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2)


class MeanShift(nn.Conv2d):
    """Adds ``sign * rgb_range * mean``: a 1x1 conv initialised to the identity, as in the release."""

    def __init__(self, rgb_range: float, sign: int) -> None:
        super().__init__(3, 3, 1)
        assert self.bias is not None
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.bias.copy_(sign * rgb_range * torch.tensor(DIV2K_RGB_MEAN))


class CALayer(nn.Module):
    """Channel attention: global average pool, squeeze to ``channels // reduction``, sigmoid gate."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(nn.Conv2d(channels, channels // reduction, 1), nn.ReLU(inplace=True),
                                     nn.Conv2d(channels // reduction, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv_du(self.avg_pool(x))


class RCAB(nn.Module):
    """Residual channel attention block: x + CA(conv(ReLU(conv(x))))."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels), nn.ReLU(inplace=True), _conv(channels, channels),
                                  CALayer(channels, reduction))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class ResidualGroup(nn.Module):
    """``n_resblocks`` RCABs and a conv, around a group-level skip."""

    def __init__(self, channels: int, reduction: int, n_resblocks: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*(RCAB(channels, reduction) for _ in range(n_resblocks)),
                                  _conv(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


def _trunk(n_resgroups: int, n_resblocks: int, n_feats: int, reduction: int) -> tuple[nn.Sequential, nn.Sequential]:
    """(head, body): the feature extractor both classes share, built in the release's order (so that a seed
    gives the authors' initial weights)."""
    require_positive(n_resgroups=n_resgroups, n_resblocks=n_resblocks, n_feats=n_feats, reduction=reduction)
    if n_feats // reduction < 1:
        raise ValueError(f'reduction ({reduction}) must not exceed n_feats ({n_feats})')
    head = nn.Sequential(_conv(3, n_feats))
    body = nn.Sequential(*(ResidualGroup(n_feats, reduction, n_resblocks) for _ in range(n_resgroups)),
                         _conv(n_feats, n_feats))
    return head, body


def _features(net: RCAN | RCANIGPlus, x: torch.Tensor) -> torch.Tensor:
    """Mean-shifted input through head and body, with the long skip (the features the tail reads)."""
    x = net.head(net.sub_mean(x))
    return net.body(x) + x


@ARCH_REGISTRY.register(meta=ArchSpec(scales=(2, 3, 4, 8), scale_arg='scale', tiling_exact=False,
                                      subpixel_tail=('tail',),
                                      params={2: 15_444_667, 3: 15_629_307, 4: 15_592_379, 8: 15_740_091}))
class RCAN(nn.Module):
    """RCAN with the authors' argument and parameter names; defaults are the paper's network (15.59 M at x4).

    ``rgb_range``: the pixel range the weights were trained for (the authors' pipeline: 255). srkit's images
    are in [0, 1]: they are multiplied by ``rgb_range`` on the way in and the output divided by it, so a
    released checkpoint gives the authors' result, in srkit's range.
    """

    def __init__(self, n_resgroups: int = 10, n_resblocks: int = 20, n_feats: int = 64, reduction: int = 16,
                 scale: int = 4, rgb_range: float = 255, res_scale: float = 1) -> None:
        super().__init__()
        require_positive(scale=scale)
        if not rgb_range > 0:
            raise ValueError(f'rgb_range must be positive, got {rgb_range!r}')
        self.scale_in_forward = False
        self.rgb_range = rgb_range
        self.res_scale = res_scale  # unused, as in the release
        self.sub_mean = MeanShift(rgb_range, -1)
        head, body = _trunk(n_resgroups, n_resblocks, n_feats, reduction)
        tail = nn.Sequential(Upsample(scale, n_feats), _conv(n_feats, 3))
        self.add_mean = MeanShift(rgb_range, 1)
        self.head, self.body, self.tail = head, body, tail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.add_mean(self.tail(_features(self, x * self.rgb_range))) / self.rgb_range


@ARCH_REGISTRY.register(meta=ArchSpec(scales=(), scale_arg=None, scale_in_forward=True, tiling_exact=False))
class RCANIGPlus(nn.Module):
    """RCAN-IGConv+: the RCAN trunk (10 x 20 blocks, 64 channels, rgb_range 1) with an IGConv tail and an
    IGSample skip, arguments as the official class.

    ``sk_kernel_size``, ``implicit_dim``, ``n_layers``: the IGConv's kernel size, Fourier width and MLP depth;
    ``dysample_kernel_size``: IGSample's kernel size (its width is fixed at 128, its depth at 2);
    ``geo_ensemble`` and ``max_s`` apply to both. ``return_skip`` is accepted and, as in the official
    class, changes nothing (it always returns the sum). The official ``conv`` argument (a Python callable
    for the trunk's convs) is not taken: option files cannot give one.
    """

    def __init__(self, sk_kernel_size: int = 3, implicit_dim: int = 256, n_layers: int = 4,
                 geo_ensemble: bool = True, return_skip: bool = False, dysample_kernel_size: int = 3,
                 max_s: int = 4) -> None:
        super().__init__()
        require_positive(sk_kernel_size=sk_kernel_size, implicit_dim=implicit_dim, n_layers=n_layers,
                         dysample_kernel_size=dysample_kernel_size, max_s=max_s)
        self.scale_in_forward = True
        n_feats = 64
        self.sub_mean = MeanShift(1.0, -1)
        head, body = _trunk(n_resgroups=10, n_resblocks=20, n_feats=n_feats, reduction=16)
        self.add_mean = MeanShift(1.0, 1)
        self.head, self.body = head, body
        self.tail = IGConv(n_feats, sk_kernel_size, implicit_dim, n_layers, geo_ensemble, max_s)
        self.skip = IGSample(n_feats, dysample_kernel_size, 128, 2, geo_ensemble, max_s)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        features = _features(self, x)
        return self.add_mean(self.tail(features, scale)) + self.skip(x, features, scale)
