"""IMDN's inference form: the same function in eval mode, restructured for CPU speed (issue 18).

Eager IMDN at batch 1 on a CPU spends most of its time in 3x3 convs on NCHW memory (oneDNN reorders
every input and output to its blocked layout), then in the 1x1 convs (torch's im2col path), the
concatenations feeding them and CCA's ``var_mean`` (a one-pass Welford reduction, ~6x slower than two
plain passes). Here:

- features stay in channels_last memory: the 3x3 convs run on oneDNN's NHWC kernels without reorders,
  and the distillation splits are channel slices of them, read in place;
- every 1x1 conv is a sum of GEMMs over the NHWC view of the parts it would concatenate (no cat): the
  IMDB's ``c5`` over the four distilled parts, with CCA's per-channel scale folded into its weights per
  image, and the trunk's fusion conv over the six block outputs;
- CCA's statistics are a two-pass mean and variance; LeakyReLUs run in place.

The output equals eager float32's within 1e-5; only the order of floating-point sums differs.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from srkit.archs.imdn_arch import _SLOPE, IMDB, IMDN, CCALayer

__all__ = ['FusedIMDN', 'fuse_imdn']


def _rows(x: torch.Tensor) -> torch.Tensor:
    """The (N*H*W, C) matrix of channels_last NCHW features (a view, or a strided view for a channel slice)."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def _frozen(module: nn.Module) -> nn.Module:
    """A copy with its own, untrainable tensors."""
    return copy.deepcopy(module).requires_grad_(False)


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    """A copy of ``conv``'s bias (every IMDN conv has one)."""
    assert conv.bias is not None
    return conv.bias.detach().clone()


class _FusedIMDB(nn.Module):
    """An IMDB on channels_last features: c5 as four GEMMs over the parts, CCA's scale in their weights."""

    c5_weight: torch.Tensor
    c5_bias: torch.Tensor

    def __init__(self, block: IMDB) -> None:
        super().__init__()
        if not isinstance(block.cca, CCALayer):
            raise TypeError('IMDN inference form: the block has no CCA layer (IMDN_RTC is not supported).')
        self.distilled = block.distilled
        self.splitting = nn.ModuleList(_frozen(c) for c in (block.c1, block.c2, block.c3))
        self.last = _frozen(block.c4)
        self.attention = _frozen(block.cca.conv_du)
        # (out, 4 * distilled), scaled per image by CCA's attention
        self.register_buffer('c5_weight', block.c5.weight.detach().flatten(1).clone())
        self.register_buffer('c5_bias', _bias(block.c5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output, written over ``x`` (channels_last NCHW, owned by the caller's loop)."""
        parts = []
        remaining = x
        for conv in self.splitting:
            out = F.leaky_relu_(conv(remaining), _SLOPE)
            parts.append(out[:, :self.distilled])
            remaining = out[:, self.distilled:]
        parts.append(self.last(remaining))
        stats = []
        for part in parts:  # CCA: std + mean per channel, two passes, in float32 as the eager CCA
            flat = part.flatten(2).float()
            mean = flat.mean(2, keepdim=True)
            stats.append((flat - mean).square_().mean(2).sqrt_() + mean[..., 0])
        scale = self.attention(torch.cat(stats, 1)[..., None, None]).flatten(1)  # (N, 4 * distilled)
        for n in range(x.shape[0]):  # x += c5(CCA(parts)), the residual added in place
            weight = (self.c5_weight * scale[n]).t()
            target = _rows(x[n:n + 1]).add_(self.c5_bias)
            for i, part in enumerate(parts):
                target.addmm_(_rows(part[n:n + 1]), weight[i * self.distilled:(i + 1) * self.distilled])
        return x


class FusedIMDN(nn.Module):
    """IMDN (or IMDN_AS) in eval mode, restructured for inference; built by ``fuse_imdn``."""

    fusion_t: torch.Tensor
    fusion_b: torch.Tensor

    def __init__(self, net: IMDN) -> None:
        super().__init__()
        self.head = _frozen(net.fea_conv)
        self.blocks = nn.ModuleList(_FusedIMDB(getattr(net, f'IMDB{i}')) for i in range(1, net.num_modules + 1))
        fusion = net.c[0]
        assert isinstance(fusion, nn.Conv2d)
        self.register_buffer('fusion_t', fusion.weight.detach().flatten(1).t().contiguous())  # (blocks * nf, nf)
        self.register_buffer('fusion_b', _bias(fusion))
        self.lr_conv = _frozen(net.LR_conv)
        self.upsampler = _frozen(net.upsampler)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shallow = self.head(x.contiguous(memory_format=torch.channels_last))
        feat = shallow.clone()  # updated in place by every block once the trunk's fusion has read it
        fused = torch.empty_like(shallow)
        target = _rows(fused)
        target.copy_(self.fusion_b.expand_as(target))
        width = shallow.shape[1]
        for i, block in enumerate(self.blocks):
            feat = block(feat)
            target.addmm_(_rows(feat), self.fusion_t[i * width:(i + 1) * width])
        out = self.lr_conv(F.leaky_relu_(fused, _SLOPE)).add_(shallow)
        return self.upsampler(out).contiguous()


def fuse_imdn(net: nn.Module) -> nn.Module:
    """IMDN's inference form (``ArchSpec.inference_form``): a new module equal to ``net`` in eval mode."""
    if not isinstance(net, IMDN):
        raise TypeError(f'fuse_imdn expects an IMDN, got {type(net).__name__}')
    return FusedIMDN(net).eval()
