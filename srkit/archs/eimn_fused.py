"""EIMN's inference form: the same function in eval mode, restructured for CPU speed (issue 18).

Where eager EIMN loses time on a CPU at batch 1 (torch.profiler, 320x180 x4, 1 thread): its 1x1 convs
take torch's slow im2col path, ChannelLayerNorm permutes the feature map twice, depthwise convs on NCHW
memory and the dilated 7x7 one (padding 9) miss oneDNN's depthwise kernels, and every element-wise op of
the gating tails allocates a fresh full-size tensor: a 40-80 MB allocation is a fresh mmap whose page
faults cost more than the arithmetic. Here:

- the body is one NHWC tensor; every 1x1 conv is a GEMM over the channel dimension (``addmm``),
  LayerNorms normalise the last dimension without permutes, depthwise convs run on the NCHW view of it
  (channels_last memory, oneDNN's depthwise kernels) and the dilated ones get their padding explicitly,
  which keeps them on those kernels;
- BatchNorm is folded into the 1x1 convs that read it; the layer scales into ``attn.out`` and DFFM's
  channel gate; the feed-forward's hidden width is padded with zero channels to a multiple of 16
  (padded channels stay exactly 0 and meet zero weights);
- on the CPU, the point-wise parts run over strips of rows (STRIP_PIXELS): their intermediates stay
  small and in cache, and the feed-forward (1x1 -> 3x3 depthwise -> gate -> 1x1) never holds its wide
  hidden features at full size; the full-size buffers a block needs are allocated once per forward and
  reused by every block; element-wise tails run in place. Off the CPU one strip covers the image.

Folding is done in float64 and rounded once. The output equals eager float32's within 1e-5; only the
order of floating-point sums differs.
"""
from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn import functional as F

from srkit.archs.eimn_arch import DFFM, EIMN, MOLRCM, SADFFM, EIMNBlock

__all__ = ['FusedEIMN', 'fuse_eimn']

_ALIGN = 16  # channel counts that oneDNN's AVX-512 kernels handle without a remainder loop
STRIP_PIXELS = 4096  # pixels per strip of rows on the CPU: the feed-forward's intermediates stay in cache


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _strips(height: int, width: int, device: torch.device) -> Iterator[tuple[int, int]]:
    """Row ranges covering ``height``; one range off the CPU, where big kernels are what is fast."""
    rows = max(1, STRIP_PIXELS // width) if device.type == 'cpu' else height
    for start in range(0, height, rows):
        yield start, min(start + rows, height)


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with bn(x) == x * scale + shift in eval mode, in float64."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError('EIMN inference form: a BatchNorm without running statistics cannot be folded.')
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    return scale, shift


def _conv(module: nn.Module) -> nn.Conv2d:
    assert isinstance(module, nn.Conv2d), type(module).__name__
    return module


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    return conv.bias.detach() if conv.bias is not None else conv.weight.new_zeros(conv.out_channels)


def _matrix(conv: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """A 1x1 conv's (weight (out, in), bias (out,)) in float64."""
    conv = _conv(conv)
    return conv.weight.detach().double().flatten(1), _bias(conv).double()


def _fold_input_affine(weight: torch.Tensor, bias: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """W (x * scale + shift) + b == (W * scale) x + (W shift + b)."""
    return weight * scale, bias + weight @ shift


def _pad_rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    """``t`` with zero rows appended along dim 0 up to ``rows``."""
    return F.pad(t, (0, 0) * (t.dim() - 1) + (0, rows - t.shape[0]))


def _float32(t: torch.Tensor) -> torch.Tensor:
    """A float32 contiguous copy that shares nothing with ``t``."""
    return t.detach().to(torch.float32, copy=True).contiguous()


class _Linear(nn.Module):
    """A 1x1 conv as a GEMM on channels-last features; weights are buffers (nothing here trains)."""

    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer('weight', _float32(weight))
        self.register_buffer('bias', _float32(bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def into(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The GEMM of 2-D ``x`` written into ``out`` (a view of a bigger buffer)."""
        return torch.addmm(self.bias, x, self.weight.t(), out=out)


class _Depthwise(nn.Module):
    """A depthwise conv on NHWC features, through their NCHW view (channels_last memory)."""

    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, padding: int, dilation: int) -> None:
        super().__init__()
        self.register_buffer('weight', _float32(weight))
        self.register_buffer('bias', _float32(bias))
        self.padding = padding
        self.dilation = dilation

    @classmethod
    def of(cls, conv: nn.Conv2d) -> _Depthwise:
        padding = conv.padding
        assert isinstance(padding, tuple), 'EIMN convs have numeric padding'
        return cls(conv.weight, _bias(conv), padding[0], conv.dilation[0])

    def forward(self, x: torch.Tensor, padded: torch.Tensor | None = None) -> torch.Tensor:
        """``padded``: a zero-bordered buffer to copy ``x`` into and convolve without implicit padding.
        With implicit padding 9 (7x7, dilation 3) oneDNN picks a generic grouped kernel about 7x slower
        than its depthwise one."""
        if padded is not None:
            p = self.padding
            padded[:, p:p + x.shape[1], p:p + x.shape[2]] = x
            x = padded
        out = F.conv2d(x.permute(0, 3, 1, 2), self.weight, self.bias, padding=0 if padded is not None else self.padding,
                       dilation=self.dilation, groups=self.weight.shape[0])
        return out.permute(0, 2, 3, 1)


class _LastDimLayerNorm(nn.Module):
    """A LayerNorm over channels for NHWC features (no permutes)."""

    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        assert isinstance(norm, nn.LayerNorm), type(norm).__name__
        self.shape = tuple(norm.normalized_shape)
        self.eps = norm.eps
        self.register_buffer('weight', _float32(norm.weight))
        self.register_buffer('bias', _float32(norm.bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.shape, self.weight, self.bias, self.eps)

    def forward_(self, x: torch.Tensor) -> None:
        """Normalise NHWC ``x`` in place, strip by strip (no full-size temporary)."""
        for n in range(x.shape[0]):
            for r0, r1 in _strips(x.shape[1], x.shape[2], x.device):
                x[n, r0:r1] = self(x[n, r0:r1])


class _Workspace:
    """Full-size NHWC buffers shared by every block of one forward: allocated (and page-faulted) once."""

    def __init__(self, x: torch.Tensor) -> None:
        self.value = torch.empty_like(x)
        self.query = torch.empty_like(x)
        self.spatial = x.new_empty(x.shape[:3] + (1,))
        self._padded: dict[tuple[int, int], torch.Tensor] = {}

    def padded(self, channels: int, padding: int) -> torch.Tensor:
        """A zero-bordered NHWC buffer for a conv's explicit padding; blocks only ever write its interior."""
        key = (channels, padding)
        if key not in self._padded:
            n, h, w, _ = self.value.shape
            self._padded[key] = self.value.new_zeros(n, h + 2 * padding, w + 2 * padding, channels)
        return self._padded[key]


class _FusedMOLRCM(nn.Module):
    """x += layer_scale_1 * MOLRCM(norm1(x)), in place on NHWC ``x``."""

    out_t: torch.Tensor
    out_b: torch.Tensor

    def __init__(self, attn: MOLRCM, norm: nn.BatchNorm2d, layer_scale: torch.Tensor) -> None:
        super().__init__()
        scale, shift = _bn_affine(norm)
        self.value = _Linear(*_fold_input_affine(*_matrix(attn.proj_value[0]), scale, shift))
        self.query = _Linear(*_fold_input_affine(*_matrix(attn.proj_query[0]), scale, shift))
        self.region = _Depthwise.of(attn.region)
        self.spatial_1 = _Depthwise.of(attn.spatial_1)
        self.spatial_2 = _Depthwise.of(attn.spatial_2)
        c1, c2, _ = attn.splits
        self.bounds = (c1, c1 + c2)
        self.fusion = _Linear(*_matrix(attn.fusion))
        out_w, out_b = _matrix(attn.out)
        ls = layer_scale.detach().double()
        self.register_buffer('out_t', _float32((out_w * ls[:, None]).t()))
        self.register_buffer('out_b', _float32(out_b * ls))

    def forward(self, x: torch.Tensor, work: _Workspace) -> None:
        batch, height, width, _ = x.shape
        value, query = work.value, work.query
        for n in range(batch):
            for r0, r1 in _strips(height, width, x.device):
                rows = (r1 - r0) * width
                source = x[n, r0:r1].view(rows, -1)
                self.value.into(source, value[n, r0:r1].view(rows, -1))
                torch.ops.aten.gelu_(self.query.into(source, query[n, r0:r1].view(rows, -1)))
        query = self.region(query)
        lo, hi = self.bounds
        near = self.spatial_1(query[..., :lo])
        far = self.spatial_2(query[..., hi:], work.padded(query.shape[-1] - hi, self.spatial_2.padding))
        for n in range(batch):
            for r0, r1 in _strips(height, width, x.device):
                rows = (r1 - r0) * width
                mixed = torch.cat([near[n, r0:r1], query[n, r0:r1, :, lo:hi], far[n, r0:r1]], dim=-1)
                gate = F.silu(self.fusion(mixed.view(rows, -1)), inplace=True)
                gate.mul_(value[n, r0:r1].view(rows, -1))
                x[n, r0:r1].view(rows, -1).add_(self.out_b).addmm_(gate, self.out_t)


class _FusedSADFFM(nn.Module):
    """x += layer_scale_2 * SADFFM(norm2(x)), in place on NHWC ``x``, over strips of rows.

    GELU(x1) and x2 are computed apart (two GEMMs, two depthwise convs), so both come out contiguous.
    """

    out_t: torch.Tensor
    out_b: torch.Tensor
    layer_scale: torch.Tensor

    def __init__(self, mlp: SADFFM, norm: nn.BatchNorm2d, layer_scale: torch.Tensor) -> None:
        super().__init__()
        hidden = mlp.linear_out.in_channels
        padded = _round_up(hidden, _ALIGN)
        in_w, in_b = _fold_input_affine(*_matrix(mlp.linear_in), *_bn_affine(norm))
        sal_w, sal_b = mlp.SAL.weight.detach().double(), _bias(mlp.SAL).double()
        x1, x2 = slice(0, hidden), slice(hidden, 2 * hidden)
        self.linear_in_1 = _Linear(_pad_rows(in_w[x1], padded), _pad_rows(in_b[x1], padded))
        self.linear_in_2 = _Linear(_pad_rows(in_w[x2], padded), _pad_rows(in_b[x2], padded))
        self.sal_1 = _Depthwise(_pad_rows(sal_w[x1], padded), _pad_rows(sal_b[x1], padded), 1, 1)
        self.sal_2 = _Depthwise(_pad_rows(sal_w[x2], padded), _pad_rows(sal_b[x2], padded), 1, 1)
        out_w, out_b = _matrix(mlp.linear_out)
        self.register_buffer('out_t', _float32(F.pad(out_w, (0, padded - hidden)).t()))
        self.register_buffer('out_b', _float32(out_b))
        dffm: DFFM = mlp.DFFM
        self.norm = _LastDimLayerNorm(dffm.norm)
        self.global_reduce = _Linear(*_matrix(dffm.global_reduce))
        self.local_reduce = _Linear(*_matrix(dffm.local_reduce))
        self.channel_expand = _Linear(*_matrix(dffm.channel_expand))
        self.register_buffer('layer_scale', _float32(layer_scale))
        spatial_w, spatial_b = _matrix(dffm.spatial_expand)
        reduced = dffm.local_reduce.out_channels
        self.spatial_local = _Linear(spatial_w[:, :reduced], spatial_b)
        self.spatial_global = _Linear(spatial_w[:, reduced:], torch.zeros_like(spatial_b))

    def _hidden_strips(self, image: torch.Tensor) -> Iterator[tuple[int, int, torch.Tensor]]:
        """(r0, r1, GELU(x1) * x2 for rows r0:r1) over strips of one image (H, W, C).

        The 3x3 conv needs one row either side of a strip: the two rows of linear_in's output it shares
        with the previous strip are carried over (buffers used in turn), not recomputed.
        """
        height, width, channels = image.shape
        strips = list(_strips(height, width, image.device))
        most = max(r1 - r0 for r0, r1 in strips) + 2
        paths = ((self.linear_in_1, self.sal_1), (self.linear_in_2, self.sal_2))
        buffers = [[image.new_empty(most, width, linear.weight.shape[0]) for _ in range(2)] for linear, _ in paths]
        start = end = 0  # rows [start, end) of linear_in's output that the previous strip computed
        for k, (r0, r1) in enumerate(strips):
            top, bottom = max(r0 - 1, 0), min(r1 + 1, height)
            carried = end - top
            halves = []
            for pair, (linear, conv) in zip(buffers, paths):
                current, previous = pair[k % 2], pair[1 - k % 2]
                if carried:
                    current[:carried] = previous[top - start:end - start]
                fresh = current[carried:bottom - top].view(-1, current.shape[-1])
                linear.into(image[end:bottom].view(-1, channels), fresh)
                halves.append(conv(current[None, :bottom - top])[0, r0 - top:r1 - top])
            start, end = top, bottom
            x1, x2 = halves
            yield r0, r1, torch.ops.aten.gelu_(x1).mul_(x2)

    def forward(self, x: torch.Tensor, work: _Workspace) -> None:
        batch, height, width, _ = x.shape
        z, spatial = work.value, work.spatial  # the attention's value is spent by now
        totals = []
        for n in range(batch):
            total = x.new_zeros(z.shape[-1])
            for r0, r1, hidden in self._hidden_strips(x[n]):
                rows = (r1 - r0) * width
                z_rows = torch.addmm(self.out_b, hidden.reshape(rows, -1), self.out_t,
                                     out=z[n, r0:r1].view(rows, -1))
                y = self.norm(z_rows)
                total += y.sum(0)
                local = torch.ops.aten.gelu_(self.local_reduce(y))
                spatial[n, r0:r1] = self.spatial_local(local).view(r1 - r0, width, 1)
            totals.append(total)
        global_ctx = F.gelu(self.global_reduce(torch.stack(totals) / (height * width)))
        channel_gate = torch.sigmoid(self.channel_expand(global_ctx)).mul_(self.layer_scale)
        spatial.add_(self.spatial_global(global_ctx)[:, None, None, :]).sigmoid_()
        x.addcmul_(z.mul_(channel_gate[:, None, None, :]), spatial)


class _FusedStage(nn.Module):
    """An EIMN stage: its blocks, then its LayerNorm, all in place on NHWC ``x``."""

    def __init__(self, blocks: nn.ModuleList, norm: nn.Module) -> None:
        super().__init__()
        branches: list[nn.Module] = []  # each block's two residual branches, in order
        for block in blocks:
            assert isinstance(block, EIMNBlock)
            branches += [_FusedMOLRCM(block.attn, block.norm1, block.layer_scale_1),
                         _FusedSADFFM(block.mlp, block.norm2, block.layer_scale_2)]
        self.branches = nn.ModuleList(branches)
        self.norm = _LastDimLayerNorm(norm)

    def forward(self, x: torch.Tensor, work: _Workspace) -> None:
        for branch in self.branches:
            branch(x, work)
        self.norm.forward_(x)


class FusedEIMN(nn.Module):
    """EIMN (or EIMNBaidu) in eval mode, restructured for inference (see the module docstring).

    Built by ``fuse_eimn``; holds its own copies of every tensor, none trainable. ``forward`` runs under
    ``torch.no_grad`` and updates its intermediates in place.
    """

    def __init__(self, net: EIMN) -> None:
        super().__init__()
        self.head = copy.deepcopy(net.head).requires_grad_(False)
        self.stages = nn.ModuleList(_FusedStage(getattr(net, f'block{i}'), getattr(net, f'norm{i}'))
                                    for i in range(1, net.num_stages + 1))
        self.tail = copy.deepcopy(net.tail).requires_grad_(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shallow = self.head(x.contiguous(memory_format=torch.channels_last)).permute(0, 2, 3, 1)
        feat = shallow.clone()
        work = _Workspace(feat)
        for stage in self.stages:
            stage(feat, work)
        return self.tail(feat.add_(shallow).permute(0, 3, 1, 2)).contiguous()


def fuse_eimn(net: nn.Module) -> nn.Module:
    """EIMN's inference form (``ArchSpec.inference_form``): a new module equal to ``net`` in eval mode."""
    if not isinstance(net, EIMN):
        raise TypeError(f'fuse_eimn expects an EIMN, got {type(net).__name__}')
    return FusedEIMN(net).eval()
