"""MMA (arXiv 2403.08330): an EDSR-like shell around MetaFormer blocks whose token mixer is a
bidirectional Vision-Mamba layer plus a channel-attention block.

Parameter names are the official ones (``basicsr/archs/mma_arch.py`` and Vim's ``Mamba(bimamba_type='v2')``),
so official checkpoints load strictly. The official code needs CUDA-only packages; here the selective scan
is srkit's pure-PyTorch scan (mamba_ssm's kernel where it imports) and the causal depthwise conv1d is
``F.conv1d`` with left padding (causal_conv1d's kernel where it imports).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from srkit.archs.spec import ArchSpec, require_positive
from srkit.core.registry import ARCH_REGISTRY
from srkit.ops.selective_scan import selective_scan

try:  # a source-only CUDA build: absent on most machines
    from causal_conv1d import causal_conv1d_fn
except (ImportError, OSError):
    causal_conv1d_fn = None

__all__ = ['MMA', 'BiMamba', 'MMA_light']

# Autocast fp16 and channels_last are checked against fp32 / contiguous outputs in tests/test_mma_arch.py.
MMA_SPEC = ArchSpec(scales=(2, 3, 4, 8), fp16_safe=True, channels_last_safe=True, tiling_exact=False)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of an NCHW map (the official ``LayerNorm(dim, 'WithBias')``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ChannelAttention(nn.Module):
    """RCAN's squeeze-and-excitation channel attention."""

    def __init__(self, num_feat: int, squeeze_factor: int) -> None:
        super().__init__()
        hidden = num_feat // squeeze_factor
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(num_feat, hidden, 1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, num_feat, 1), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.attention(x)


class CAB(nn.Module):
    """Channel-attention block: the convolutional half of the hybrid token mixer."""

    def __init__(self, num_feat: int, compress_ratio: int = 4, squeeze_factor: int = 30) -> None:
        super().__init__()
        hidden = num_feat // compress_ratio
        self.cab = nn.Sequential(
            nn.Conv2d(num_feat, hidden, 3, 1, 1), nn.GELU(), nn.Conv2d(hidden, num_feat, 3, 1, 1),
            ChannelAttention(num_feat, squeeze_factor))

    def forward(self, x: Tensor) -> Tensor:
        return self.cab(x)


class FeedForward(nn.Module):
    """Gated depthwise-conv feed-forward network (Restormer's GDFN)."""

    def __init__(self, dim: int, ffn_expansion_factor: float = 2.66, bias: bool = True) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, 1, 1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        gate, value = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)


def _dt_init_(proj: nn.Linear, dt_min: float = 1e-3, dt_max: float = 0.1, floor: float = 1e-4) -> None:
    """Mamba's step-size init: softplus(bias) log-uniform in [dt_min, dt_max], weights of unit variance."""
    bound = proj.in_features ** -0.5
    nn.init.uniform_(proj.weight, -bound, bound)
    dt = torch.exp(torch.rand(proj.out_features) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
    dt = dt.clamp(min=floor)
    with torch.no_grad():
        proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus


def _s4d_log_a(d_inner: int, d_state: int) -> nn.Parameter:
    """log of S4D-real A = -(1..d_state) per channel; the scan uses A = -exp(A_log)."""
    return nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1))


class BiMamba(nn.Module):
    """Vim's bidirectional Mamba layer ("v2"): one in/out projection, a forward and a backward scan with
    their own conv1d, x_proj, dt_proj, A and D, summed before ``out_proj``. Tokens: (B, d_model, L)."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2) -> None:
        super().__init__()
        self.d_inner = expand * d_model
        self.d_state = d_state
        self.dt_rank = math.ceil(d_model / 16)
        d_inner, proj_out = self.d_inner, self.dt_rank + 2 * d_state
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner)
        self.x_proj = nn.Linear(d_inner, proj_out, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner)
        self.A_log = _s4d_log_a(d_inner, d_state)
        self.D = nn.Parameter(torch.ones(d_inner))
        self.A_b_log = _s4d_log_a(d_inner, d_state)
        self.conv1d_b = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner)
        self.x_proj_b = nn.Linear(d_inner, proj_out, bias=False)
        self.dt_proj_b = nn.Linear(self.dt_rank, d_inner)
        self.D_b = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)
        # Like the official layer, only the forward dt_proj gets Mamba's init; dt_proj_b keeps nn.Linear's.
        _dt_init_(self.dt_proj)

    def forward(self, x: Tensor) -> Tensor:
        xz = torch.matmul(self.in_proj.weight, x)  # (B, 2 d_inner, L)
        forward = self._scan(xz, self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D)
        backward = self._scan(xz.flip(-1), self.conv1d_b, self.x_proj_b, self.dt_proj_b, self.A_b_log, self.D_b)
        return torch.matmul(self.out_proj.weight, forward + backward.flip(-1))

    def _scan(self, xz: Tensor, conv: nn.Conv1d, x_proj: nn.Linear, dt_proj: nn.Linear, A_log: Tensor,
              D: Tensor) -> Tensor:
        x, z = xz.chunk(2, dim=1)
        x = _causal_conv_silu(x, conv)
        dt, B, C = torch.matmul(x_proj.weight, x).split([self.dt_rank, self.d_state, self.d_state], dim=1)
        delta = torch.matmul(dt_proj.weight, dt)
        return selective_scan(x, delta, -torch.exp(A_log.float()), B, C, D.float(), z=z,
                              delta_bias=dt_proj.bias.float(), delta_softplus=True)


def _causal_conv_silu(x: Tensor, conv: nn.Conv1d) -> Tensor:
    """silu(depthwise conv1d) where token t sees only tokens <= t."""
    if causal_conv1d_fn is not None and x.is_cuda:
        return causal_conv1d_fn(x, conv.weight.squeeze(1), conv.bias, activation='silu')
    return F.silu(F.conv1d(F.pad(x, (conv.kernel_size[0] - 1, 0)), conv.weight, conv.bias, groups=conv.groups))


class MambaLayer(nn.Module):
    """Runs BiMamba over the H*W pixels of a feature map, in row-major order."""

    def __init__(self, dim: int, d_state: int = 16, d_conv: int = 4, expand: int = 2) -> None:
        super().__init__()
        self.mamba = BiMamba(dim, d_state, d_conv, expand)

    def forward(self, x: Tensor) -> Tensor:
        return self.mamba(x.flatten(2)).reshape(x.shape)


class HybridAttBlock(nn.Module):
    """Token mixer: global bidirectional Mamba plus local channel attention, summed."""

    def __init__(self, dim: int, d_state: int, compress_ratio: int, squeeze_factor: int) -> None:
        super().__init__()
        self.mamba = MambaLayer(dim, d_state)
        self.channel_attention = CAB(dim, compress_ratio, squeeze_factor)

    def forward(self, x: Tensor) -> Tensor:
        return self.mamba(x) + self.channel_attention(x)


class MMABlock(nn.Module):
    """MetaFormer block (official name MLPMixer): x + mixer(LN(x)), then x + GDFN(LN(x))."""

    def __init__(self, dim: int, d_state: int = 16, ffn_expansion_factor: float = 2.66, compress_ratio: int = 4,
                 squeeze_factor: int = 30) -> None:
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim)
        self.attn = HybridAttBlock(dim, d_state, compress_ratio, squeeze_factor)
        self.norm2 = ChannelLayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_expansion_factor)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


def _upsampler(scale: int, num_feat: int) -> nn.Sequential:
    """Conv + PixelShuffle stages (BasicSR's Upsample): log2(scale) x2 stages, or one x3 stage."""
    if scale == 3:
        return nn.Sequential(nn.Conv2d(num_feat, 9 * num_feat, 3, 1, 1), nn.PixelShuffle(3))
    if scale < 2 or scale & (scale - 1):
        raise ValueError(f'MMA: upscale {scale} is not supported; use 3 or a power of 2')
    layers: list[nn.Module] = []
    for _ in range(int(math.log2(scale))):
        layers += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2)]
    return nn.Sequential(*layers)


@ARCH_REGISTRY.register(meta=MMA_SPEC)
class MMA(nn.Module):
    """The MMA network. Defaults are the published model (num_feat 192, num_block 24, img_range 1, as in
    the official option files); the extra keyword arguments are the official layers' fixed values."""

    mean: Tensor

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 192, num_block: int = 24,
                 upscale: int = 4, img_range: float = 1., rgb_mean: Sequence[float] = (0.4488, 0.4371, 0.4040),
                 d_state: int = 16, ffn_expansion_factor: float = 2.66, compress_ratio: int = 4,
                 squeeze_factor: int = 30) -> None:
        super().__init__()
        require_positive(num_in_ch=num_in_ch, num_out_ch=num_out_ch, num_feat=num_feat, num_block=num_block,
                         upscale=upscale, d_state=d_state, compress_ratio=compress_ratio, squeeze_factor=squeeze_factor)
        self.img_range = img_range
        self.register_buffer('mean', torch.tensor(rgb_mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(MMABlock(num_feat, d_state, ffn_expansion_factor, compress_ratio, squeeze_factor)
                                    for _ in range(num_block)))
        self.conv_after_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.upsample = _upsampler(upscale, num_feat)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        mean = self.mean.to(x.dtype)
        x = self.conv_first((x - mean) * self.img_range)
        x = x + self.conv_after_body(self.body(x))
        return self.conv_last(self.upsample(x)) / self.img_range + mean


@ARCH_REGISTRY.register(meta=MMA_SPEC)
def MMA_light(num_in_ch: int = 3, num_out_ch: int = 3, upscale: int = 4, **kwargs) -> MMA:
    """srkit's lightweight MMA (the paper promises one, publishes none): 60 features, 10 blocks, 1.02M
    parameters at x2 (1.15M at x4)."""
    options = {'num_feat': 60, 'num_block': 10, **kwargs}
    return MMA(num_in_ch, num_out_ch, upscale=upscale, **options)
