"""EIMN: Efficient Information Modulation Network (Liu et al., ECAI 2023).

A MetaFormer body of convolution-only blocks: MOLRCM (multi-order long-range convolutional modulation)
mixes space, SADFFM (spatially-adaptive dual-gated feed-forward, ending in DFFM) mixes channels.
Parameter names follow the official release (``head.0``, ``blockK.0``, ``normK``, ``tail.0``) so its
checkpoints load as they are. EIMNBaidu is the authors' same-size variant (EIMN_BasicSR,
basicsr/archs/EIMN_baidu_arch.py): the same body with a plain conv tail, for restoration at scale 1.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from srkit.archs.spec import ArchSpec, require_positive
from srkit.archs.weights import load_pretrained
from srkit.core.registry import ARCH_REGISTRY

__all__ = ['EIMN', 'EIMNBaidu', 'EIMN_A', 'EIMN_L']

logger = logging.getLogger('srkit')


def _inference_form(net: nn.Module) -> nn.Module:
    """srkit.archs.eimn_fused.fuse_eimn, imported on use (that module builds on this one's classes)."""
    from srkit.archs.eimn_fused import fuse_eimn
    return fuse_eimn(net)


# Every op works at any input size (stride 1, 'same' padding, global pooling). float16: LayerNorm
# statistics stay in float32 under autocast, and with the official checkpoints on Set5/Set14 no
# intermediate exceeds |1.2e3| (float16 max 65504); autocast float16 moves Set5 x4 PSNR by < 0.001 dB.
EIMN_SPEC = ArchSpec(scales=(2, 3, 4), scale_arg='scale', pad_multiple=1, min_size=1, fp16_safe=True,
                     channels_last_safe=True, tiling_exact=False,
                     subpixel_tail=('tail',), inference_form=_inference_form)
# Parameter counts of the presets come from the official checkpoints (BatchNorm running stats are buffers).
EIMN_L_SPEC = replace(EIMN_SPEC, params={2: 981724, 3: 990379})
EIMN_A_SPEC = replace(EIMN_SPEC, params={2: 860098, 3: 868753, 4: 880870})
# The same body (so the same size, precision and tiling claims) at scale 1; its tail is no sub-pixel conv.
EIMN_BAIDU_SPEC = replace(EIMN_SPEC, scales=(1,), same_size_output=True, subpixel_tail=())


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of an NCHW tensor (the official channels-first/last LayerNorms)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class DropPath(nn.Module):
    """Stochastic depth: drops a sample's whole residual branch while training."""

    def __init__(self, prob: float) -> None:
        super().__init__()
        self.prob = prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.prob == 0.0:
            return x
        keep = 1.0 - self.prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class MOLRCM(nn.Module):
    """Convolutional modulation: a multi-dilation large-kernel query gates a 1x1 value (SA-like, linear cost).

    The query's channels split 3/8 : 1/8 : rest into a dilated 5x5 path, an identity path and a dilated
    7x7 path, so different receptive fields ("orders") share one gate.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        c1, c2 = int(dim * 3 / 8), int(dim / 8)
        c3 = dim - c1 - c2
        self.splits = [c1, c2, c3]
        self.region = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.spatial_1 = nn.Conv2d(c1, c1, 5, padding=4, dilation=2, groups=c1)
        self.spatial_2 = nn.Conv2d(c3, c3, 7, padding=9, dilation=3, groups=c3)
        self.fusion = nn.Conv2d(dim, dim, 1)
        self.proj_value = nn.Sequential(nn.Conv2d(dim, dim, 1))  # a Sequential to keep the official key names
        self.proj_query = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.GELU())
        self.out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value = self.proj_value(x)
        query = self.region(self.proj_query(x))
        q1, q2, q3 = torch.split(query, self.splits, dim=1)
        gate = F.silu(self.fusion(torch.cat([self.spatial_1(q1), q2, self.spatial_2(q3)], dim=1)))
        return self.out(gate * value)


class DFFM(nn.Module):
    """Dual feature-fusion gate: global (pooled) and local context give a channel and a spatial sigmoid gate."""

    def __init__(self, dim: int, act_ratio: float = 0.25) -> None:
        super().__init__()
        reduced = int(dim * act_ratio)
        self.norm = ChannelLayerNorm(dim, eps=1e-6)
        self.global_reduce = nn.Conv2d(dim, reduced, 1)
        self.local_reduce = nn.Conv2d(dim, reduced, 1)
        self.channel_expand = nn.Conv2d(reduced, dim, 1)
        self.spatial_expand = nn.Conv2d(reduced * 2, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x)
        global_ctx = F.gelu(self.global_reduce(F.adaptive_avg_pool2d(y, 1)))
        local_ctx = F.gelu(self.local_reduce(y))
        channel_gate = torch.sigmoid(self.channel_expand(global_ctx))
        both = torch.cat([local_ctx, global_ctx.expand(-1, -1, *local_ctx.shape[2:])], dim=1)
        spatial_gate = torch.sigmoid(self.spatial_expand(both))
        return x * (channel_gate * spatial_gate)


class SADFFM(nn.Module):
    """Gated depthwise feed-forward (GELU(x1) * x2 after a 3x3 depthwise conv), refined by DFFM."""

    def __init__(self, dim: int, expand_ratio: float, drop: float = 0.0) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.linear_in = nn.Conv2d(dim, hidden * 2, 1)
        self.SAL = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2)
        self.linear_out = nn.Conv2d(hidden, dim, 1)
        self.DFFM = DFFM(dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.SAL(self.linear_in(x)).chunk(2, dim=1)
        return self.drop(self.DFFM(self.linear_out(F.gelu(x1) * x2)))


class EIMNBlock(nn.Module):
    """MetaFormer block: BN -> MOLRCM and BN -> SADFFM residual branches with per-channel layer scales."""

    def __init__(self, dim: int, mlp_ratio: float, drop: float = 0.0, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = MOLRCM(dim)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = SADFFM(dim, mlp_ratio, drop)
        self.drop_path = DropPath(drop_path)
        self.layer_scale_1 = nn.Parameter(torch.full((dim,), 1e-2))
        self.layer_scale_2 = nn.Parameter(torch.full((dim,), 1e-2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.layer_scale_1[:, None, None] * self.attn(self.norm1(x)))
        return x + self.drop_path(self.layer_scale_2[:, None, None] * self.mlp(self.norm2(x)))


def _check_norm(norm: str | type[nn.Module]) -> None:
    """Refuse a ``norm`` other than BatchNorm2d: the official constructors take the argument but build every
    block with BatchNorm2d whatever it says, so honouring another value would change the network and ignoring
    it would mislead."""
    if norm not in ('BatchNorm2d', nn.BatchNorm2d):
        raise ValueError(f'norm must be BatchNorm2d (the official EIMN builds its blocks with BatchNorm2d '
                         f'whatever norm says), got {norm!r}')


@ARCH_REGISTRY.register(meta=EIMN_SPEC)
class EIMN(nn.Module):
    """EIMN with the official constructor's arguments and meanings.

    num_stages stages, each ``depths`` EIMNBlocks then a LayerNorm; a global residual around the body;
    a 3x3 conv + PixelShuffle tail. ``freeze_param`` leaves only the tail trainable, as the official
    recipe does first when fine-tuning x3/x4 from a smaller scale. ``norm`` is accepted as the official
    signature has it, and must be BatchNorm2d (see ``_check_norm``).

    ``weight_path``: as in the official constructor, a non-empty path loads those weights when the network is
    built (before ``freeze_param``), strictly: every key and shape must fit, else a CheckpointError names the
    file and the first mismatched key. The file may be a raw state dict (the official releases), one under
    ``state_dict`` (what the official loader also accepts) or srkit's/BasicSR's ``params_ema``/``params``
    layout. It goes through ``srkit.archs.weights.load_pretrained``, srkit's one loading path
    (``weights_only=True``). ``''`` and null both mean random initialisation (the official code treats only
    ``''`` so; null, as the Baidu option file writes, reaches its loader as None and fails there).
    ``path.pretrain_network_g``, loaded after construction, replaces these weights, as in BasicSR.
    """

    def __init__(self, embed_dims: int = 64, scale: int = 2, depths: int = 1, mlp_ratios: float = 2.66,
                 drop_rate: float = 0.0, drop_path_rate: float = 0.0, num_stages: int = 16,
                 freeze_param: bool = False, norm: str | type[nn.Module] = 'BatchNorm2d',
                 weight_path: str | None = '') -> None:
        super().__init__()
        require_positive(embed_dims=embed_dims, scale=scale, depths=depths, num_stages=num_stages)
        if embed_dims < 8:
            raise ValueError(f'EIMN needs embed_dims >= 8 (MOLRCM splits channels in eighths), got {embed_dims}.')
        _check_norm(norm)
        self.num_stages = num_stages
        self.head = nn.Sequential(nn.Conv2d(3, embed_dims, 3, padding=1))
        # Built before the body, as the official constructor does, so that a seed gives the official initial
        # weights; assigned after it, so that the parameter order (optimizer states, checkpoints) is srkit's.
        tail = self._make_tail(embed_dims, scale)
        rates = torch.linspace(0, drop_path_rate, num_stages * depths).tolist()
        for i in range(num_stages):
            blocks = [EIMNBlock(embed_dims, mlp_ratios, drop_rate, rates[i * depths + j]) for j in range(depths)]
            self.add_module(f'block{i + 1}', nn.ModuleList(blocks))
            self.add_module(f'norm{i + 1}', ChannelLayerNorm(embed_dims))
        self.tail = tail
        if weight_path:
            load_pretrained(self, weight_path, param_key=None, arch_type=type(self).__name__,
                            hint="weight_path must hold weights of this exact network; '' starts from random ones.")
            logger.info('Loaded weight_path %s into %s.', weight_path, type(self).__name__)
        if freeze_param:
            for name, param in self.named_parameters():
                param.requires_grad_(name.startswith('tail.'))

    @staticmethod
    def _make_tail(embed_dims: int, scale: int) -> nn.Module:
        """Features to the RGB image: a 3x3 conv to 3 * scale^2 channels, then PixelShuffle(scale)."""
        return nn.Sequential(nn.Conv2d(embed_dims, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shallow = self.head(x)
        x = shallow
        for i in range(1, self.num_stages + 1):
            for block in getattr(self, f'block{i}'):
                x = block(x)
            x = getattr(self, f'norm{i}')(x)
        return self.tail(x + shallow)


@ARCH_REGISTRY.register(meta=EIMN_BAIDU_SPEC)
class EIMNBaidu(EIMN):
    """EIMN for same-size restoration (the authors' EIMNBaidu, train_EIMNNet_x2_baidu.yml): the tail is one 3x3
    conv to RGB, without PixelShuffle, so the output has the input's size; body, residual and names are EIMN's.

    The authors trained it for Baidu AI Studio's face beauty and acne removal task (image in, image out).
    The arguments are the official ones. The official constructor takes ``scale`` (default 2) and ignores it;
    here it defaults to 1, what the option file sets, and another value is refused rather than ignored.
    """

    def __init__(self, embed_dims: int = 64, scale: int = 1, depths: int = 1, mlp_ratios: float = 2.66,
                 drop_rate: float = 0.0, drop_path_rate: float = 0.0, num_stages: int = 16,
                 freeze_param: bool = False, norm: str | type[nn.Module] = 'BatchNorm2d',
                 weight_path: str | None = '') -> None:
        if scale != 1:
            raise ValueError(f'EIMNBaidu restores at the input size: scale must be 1, got {scale!r}')
        super().__init__(embed_dims=embed_dims, scale=scale, depths=depths, mlp_ratios=mlp_ratios,
                         drop_rate=drop_rate, drop_path_rate=drop_path_rate, num_stages=num_stages,
                         freeze_param=freeze_param, norm=norm, weight_path=weight_path)

    @staticmethod
    def _make_tail(embed_dims: int, scale: int) -> nn.Module:
        """Features to the RGB image at the same size: one 3x3 conv (``scale`` is 1)."""
        return nn.Sequential(nn.Conv2d(embed_dims, 3, 3, padding=1))


@ARCH_REGISTRY.register(meta=EIMN_L_SPEC)
def EIMN_L(scale: int = 2, **overrides: Any) -> EIMN:
    """EIMN-L: 16 stages of width 64 (0.98-1.00 M parameters)."""
    return EIMN(**{'embed_dims': 64, 'num_stages': 16, **overrides, 'scale': scale})


@ARCH_REGISTRY.register(meta=EIMN_A_SPEC)
def EIMN_A(scale: int = 2, **overrides: Any) -> EIMN:
    """EIMN-A: 14 stages of width 64 (0.86-0.88 M parameters)."""
    return EIMN(**{'embed_dims': 64, 'num_stages': 14, **overrides, 'scale': scale})
