"""HiT-SRF (Zhang, Zhang and Yu, "HiT-SR: Hierarchical Transformer for Efficient Image Super-Resolution",
ECCV 2024) and its IGConv / IGConv+ forms (Lee et al., arXiv 2408.09674).

The constructor, parameter names and forward are the authors' (XiangZ-0/HiT-SR, basicsr/archs/hit_srf_arch.py),
so their released HiT-SRF-{2,3,4}x checkpoints load strictly; ``upsampler='igconv'`` / ``'igconv+igsample'``
and the IG arguments are the IGConv authors' (dslisleedh/IGConv, igconv/archs/hit_srf_arch.py), whose option
files name ``type: HiT_SRF``. Neither release keeps a buffer in its state dict, and neither does srkit.

The network: a 3x3 conv, residual groups of hierarchical transformer blocks, a 3x3 conv and a sub-pixel tail.
Block ``i`` of every group works in windows of ``base_win_size * hier_win_ratios[i]`` (4x4 up to 64x64 in the
released model), so one group sees from small to large neighbourhoods. Each block's spatial-channel
correlation (SCC) has no softmax: the spatial half correlates each pixel with the base-window "cells" of its
window (the cells' pixels merged by ``spatial_linear``) plus a relative-position bias, the channel half
correlates channels over the window; both are linear in the window area. Without a softmax,
``scaled_dot_product_attention`` does not compute it, so it is not used.

Where srkit computes the same function differently (tests/test_hit_srf.py checks each against the authors'
form or outputs):

- the position bias: the authors evaluate an MLP on every (dy, dx) offset, gather an (L, L) table per window
  (16.7M entries for a 64x64 window) and average it over each cell, in every forward. Averaging a table entry
  over a cell is a box filter over the offset table, so srkit pools the table once and gathers (L, M) entries
  (the same numbers, summed in another order); in inference (no grad) the result is kept per block until one
  of its parameters changes (EMA updates, a loaded checkpoint).
- the spatial correlation ``(q v^T / s + bias) v`` is associated as ``q (v^T v / s) + bias v``: no (L, M)
  map per window, and the bias multiplies all windows' values in one matmul (within 1e-5 of the authors' order).
- window padding: the authors reflect-pad each block's input to a multiple of its window, in two steps when
  the window is more than twice the input. srkit does exactly that, and keeps reflecting where the authors'
  ``F.pad`` raises (inputs below a third of the window); a 1-pixel side is replicated. The network therefore
  takes any input size, and ``pad_multiple`` is 1, as the authors' forward pads nothing itself.
- ``expansion_factor`` (in the authors' option files) and ``geo_ensemble`` (in IGConv's) are accepted and
  unused, as in the released code: ``mlp_ratio`` sets the FFN width, and the upsampler fixes the ensemble
  (off for 'igconv', on for 'igconv+igsample').
"""
from __future__ import annotations

import typing
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils import checkpoint

from srkit.archs.edsr_arch import DIV2K_RGB_MEAN, Upsample
from srkit.archs.eimn_arch import DropPath
from srkit.archs.igconv_arch import IGConv, IGSample
from srkit.archs.spec import ArchSpec, require_positive
from srkit.archs.window_ops import IG_UPSAMPLERS, add_skip, init_weights, resi_conv
from srkit.core.registry import ARCH_REGISTRY

__all__ = ['HiT_SRF', 'HiT_SRF_IGConv', 'HiT_SRF_IGConvPlus', 'SCC', 'reflect_pad', 'window_sizes']

Upsampler = Literal['pixelshuffle', 'pixelshuffledirect', 'nearest+conv', 'igconv', 'igconv+igsample', '']
NUM_FEAT = 64  # width of the 'pixelshuffle' / 'nearest+conv' tails (fixed in the authors' code)


def window_sizes(base_win_size: Sequence[int], hier_win_ratios: Sequence[float]) -> list[tuple[int, int]]:
    """(height, width) of block i's windows: the base window scaled by ``hier_win_ratios[i]`` (truncated)."""
    return [(int(base_win_size[0] * r), int(base_win_size[1] * r)) for r in hier_win_ratios]


def reflect_pad(x: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    """Pad (N, C, H, W) bottom/right by reflection, each step adding at most side - 1 (all one reflection can).

    For every size the authors' block accepts this is their padding (one step, or two when the window is more
    than twice the side); smaller inputs take more steps, and a 1-pixel side is first doubled.
    """
    if pad_h and x.shape[-2] == 1:
        x, pad_h = torch.cat([x, x], dim=-2), pad_h - 1
    if pad_w and x.shape[-1] == 1:
        x, pad_w = torch.cat([x, x], dim=-1), pad_w - 1
    while pad_h or pad_w:
        step_h, step_w = min(pad_h, x.shape[-2] - 1), min(pad_w, x.shape[-1] - 1)
        x = F.pad(x, (0, step_w, 0, step_h), mode='reflect')
        pad_h, pad_w = pad_h - step_h, pad_w - step_w
    return x


def _nchw(x: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) tokens as an NCHW view (channels_last in memory) for a conv."""
    return x.permute(0, 3, 1, 2)


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1)


class DFE(nn.Module):
    """Dual feature extraction: a 1x1-3x3-1x1 bottleneck (width in/5) gated by a 1x1 conv; gives q and v."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.out_features = out_features
        mid = in_features // 5
        self.conv = nn.Sequential(nn.Conv2d(in_features, mid, 1), nn.LeakyReLU(0.2, inplace=True),
                                  nn.Conv2d(mid, mid, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True),
                                  nn.Conv2d(mid, out_features, 1))
        self.linear = nn.Conv2d(in_features, out_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * self.linear(x)


class DynamicPosBias(nn.Module):
    """An MLP from a relative offset (dy, dx) to one bias per head (CrossFormer's dynamic position bias)."""

    def __init__(self, dim: int, num_heads: int, residual: bool) -> None:
        super().__init__()
        self.residual, self.num_heads, self.pos_dim = residual, num_heads, dim // 4
        self.pos_proj = nn.Linear(2, self.pos_dim)
        self.pos1 = self._stage(self.pos_dim)
        self.pos2 = self._stage(self.pos_dim)
        self.pos3 = self._stage(num_heads)

    def _stage(self, out_dim: int) -> nn.Sequential:
        return nn.Sequential(nn.LayerNorm(self.pos_dim), nn.ReLU(inplace=True), nn.Linear(self.pos_dim, out_dim))

    def forward(self, offsets: torch.Tensor) -> torch.Tensor:
        pos = self.pos_proj(offsets)
        if self.residual:
            pos = pos + self.pos1(pos)
            return self.pos3(pos + self.pos2(pos))
        return self.pos3(self.pos2(self.pos1(pos)))


def _cell_index(window: tuple[int, int], cells: tuple[int, int]) -> torch.Tensor:
    """(M, L): where the mean bias of query pixel l over cell m sits in the cell-pooled offset table.

    Cell (i, j) covers rows i*a .. i*a+a-1 (a = window height / cells); the offsets from row r to them run
    from r - i*a - a + 1 to r - i*a, i.e. table rows r + H - (i+1)*a onwards: one entry of the table
    average-pooled with an a x b kernel (width 2W - b). Columns alike.
    """
    (h, w), (mh, mw) = window, cells
    a, b = h // mh, w // mw
    rows = torch.arange(h)[:, None] + h - (torch.arange(mh)[None] + 1) * a  # (H, mh)
    cols = torch.arange(w)[:, None] + w - (torch.arange(mw)[None] + 1) * b  # (W, mw)
    index = rows[:, None, :, None] * (2 * w - b) + cols[None, :, None, :]  # (H, W, mh, mw)
    return index.reshape(h * w, mh * mw).t().contiguous()  # (M, L): the bias is kept cell-major


class SCC(nn.Module):
    """Spatial-channel correlation in windows of ``window_size``, on padded (B, H, W, C) tokens.

    q and v are the two channel halves of the DFE output, split into heads. Spatial: each window's v is
    merged per cell of the base window (``spatial_linear`` over the cell's pixels), and
    ``(q v_cells^T / head_dim + bias) v_cells`` mixes the cells into every pixel. Channel: one head,
    ``v (v^T q / L)`` mixes the channels with their correlation over the window. Both halves are concatenated
    and projected.
    """

    cell_index: torch.Tensor

    def __init__(self, dim: int, base_win_size: Sequence[int], window_size: tuple[int, int], num_heads: int,
                 value_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        self.qv = DFE(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.value_drop = nn.Dropout(value_drop)
        self.proj_drop = nn.Dropout(proj_drop)
        self.base_win_size = (min(window_size[0], base_win_size[0]), min(window_size[1], base_win_size[1]))
        self.scale = dim // (2 * num_heads)  # the authors divide by the head width, not its square root
        cell_area = self.base_win_size[0] * self.base_win_size[1]
        self.spatial_linear = nn.Linear(window_size[0] * window_size[1] // cell_area, 1)
        self.pos = DynamicPosBias(dim // 4, num_heads, residual=False)
        self.register_buffer('cell_index', _cell_index(window_size, self.base_win_size), persistent=False)
        self._cached_bias: tuple[tuple[Any, ...], torch.Tensor] | None = None

    def position_bias(self) -> torch.Tensor:
        """(heads, L, M) bias of each window pixel towards each cell: the authors' per-offset MLP averaged over
        the cell. Computed without autocast (it is small) and, in inference, kept until a parameter changes."""
        params = list(self.pos.parameters())
        key = (params[0].device, params[0].dtype, *((p.data_ptr(), p._version) for p in params))
        if self._cached_bias is not None and self._cached_bias[0] == key and not torch.is_grad_enabled():
            return self._cached_bias[1]
        (h, w), (mh, mw) = self.window_size, self.base_win_size
        device, dtype = params[0].device, params[0].dtype
        dy = torch.arange(1 - h, h, device=device, dtype=dtype)
        dx = torch.arange(1 - w, w, device=device, dtype=dtype)
        offsets = torch.stack(torch.meshgrid(dy, dx, indexing='ij'), dim=-1).reshape(-1, 2)
        with torch.autocast(device.type, enabled=False):
            table = self.pos(offsets).t().reshape(self.num_heads, 2 * h - 1, 2 * w - 1)
        pooled = F.avg_pool2d(table, (h // mh, w // mw), stride=1)
        bias = pooled.flatten(1)[:, self.cell_index].transpose(1, 2)  # a view of a (heads, M, L) tensor
        if not torch.is_grad_enabled():
            self._cached_bias = (key, bias)
        return bias

    def _apply(self, *args: Any, **kwargs: Any) -> SCC:
        self._cached_bias = None  # .to() / .half() ... may reuse the old storage: never trust the cache across them
        return super()._apply(*args, **kwargs)

    def heads(self, q: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Window tokens q, v (n, L, C/2) -> q (n, heads, L, d) and the cells' merged v (n, heads, M, d)."""
        n, length, half = q.shape
        (h, w), (mh, mw) = self.window_size, self.base_win_size
        cells = v.reshape(n, mh, h // mh, mw, w // mw, half).permute(0, 1, 3, 5, 2, 4)
        v_cells = self.spatial_linear(cells.reshape(n, mh * mw, half, -1)).squeeze(-1)  # (n, M, half)
        v_heads = v_cells.reshape(n, mh * mw, self.num_heads, -1).transpose(1, 2)
        return q.reshape(n, length, self.num_heads, -1).transpose(1, 2), v_heads

    def _spatial(self, q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``(q v^T / s + bias) v`` associated as ``q (v^T v / s) + bias v``: no (L, M) map per window, and the
        bias (the same for all windows) multiplies every window's values in one matmul per head."""
        n, length, half = q.shape
        q_heads, v_heads = self.heads(q, v)
        values = self.value_drop(v_heads)
        out = q_heads @ (v_heads.transpose(-2, -1) @ values / self.scale)
        heads, cells, d = values.shape[1:]
        bias_t = self.position_bias().to(q.dtype).transpose(1, 2)  # (heads, M, L), contiguous
        # v^T bias^T rather than bias v: a matmul with d (5) columns is several times slower than with d rows
        biased = values.permute(1, 0, 3, 2).reshape(heads, n * d, cells) @ bias_t  # (heads, n * d, L)
        out = out + biased.reshape(heads, n, d, length).permute(1, 0, 3, 2)
        return out.transpose(1, 2).reshape(n, length, half)

    def _channel(self, q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        corr = q.transpose(1, 2) @ v / q.shape[1]  # (n, half, half)
        return self.value_drop(v) @ corr.transpose(1, 2)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``x`` (B, Hp, Wp, C), window multiples -> (B, H, W, C) for ``size`` = (H, W): the padding is cropped
        before the projection (per pixel, so the same numbers as projecting first)."""
        b, hp, wp, c = x.shape
        (h, w), (out_h, out_w) = self.window_size, size
        qv = _nhwc(self.qv(_nchw(x)))
        windows = qv.reshape(b, hp // h, h, wp // w, w, c).transpose(2, 3).reshape(-1, h * w, c)
        q, v = windows.chunk(2, dim=-1)
        out = torch.cat([self._spatial(q, v), self._channel(q, v)], dim=-1)
        out = out.reshape(b, hp // h, wp // w, h, w, c).transpose(2, 3).reshape(b, hp, wp, c)
        return self.proj_drop(self.proj(out[:, :out_h, :out_w]))

    def extra_repr(self) -> str:
        return f'dim={self.dim}, window_size={self.window_size}, num_heads={self.num_heads}'


class DepthwiseConv(nn.Module):
    """5x5 depthwise conv + GELU on (B, H, W, C) tokens (the ConvFFN's spatial branch)."""

    def __init__(self, hidden_features: int) -> None:
        super().__init__()
        self.hidden_features = hidden_features
        self.depthwise_conv = nn.Sequential(
            nn.Conv2d(hidden_features, hidden_features, 5, 1, 2, groups=hidden_features), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _nhwc(self.depthwise_conv(_nchw(x)))


class ConvFFN(nn.Module):
    """fc1 -> activation -> (+ depthwise conv branch) -> fc2."""

    def __init__(self, in_features: int, hidden_features: int | None = None, out_features: int | None = None,
                 act_layer: Callable[[], nn.Module] = nn.GELU, drop: float = 0.0) -> None:
        super().__init__()
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.dwconv = DepthwiseConv(hidden_features)
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.fc1(x))
        x = self.drop(x + self.dwconv(x))
        return self.drop(self.fc2(x))


class HierarchicalTransformerBlock(nn.Module):
    """Post-norm block: x + norm1(SCC(x padded to its windows)), then x + norm2(ConvFFN(x))."""

    def __init__(self, dim: int, input_resolution: tuple[int, int], num_heads: int, base_win_size: Sequence[int],
                 window_size: tuple[int, int], mlp_ratio: float = 4.0, drop: float = 0.0, value_drop: float = 0.0,
                 drop_path: float = 0.0, act_layer: Callable[[], nn.Module] = nn.GELU,
                 norm_layer: Callable[[int], nn.Module] = nn.LayerNorm) -> None:
        super().__init__()
        self.dim, self.input_resolution, self.num_heads = dim, input_resolution, num_heads
        self.window_size, self.mlp_ratio = window_size, mlp_ratio
        self.norm1 = norm_layer(dim)
        self.correlation = SCC(dim, base_win_size, window_size, num_heads, value_drop, drop)
        self.drop_path: nn.Module = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = ConvFFN(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[1:3]
        win_h, win_w = self.window_size
        padded = _nhwc(reflect_pad(_nchw(x), -h % win_h, -w % win_w))
        x = x + self.drop_path(self.norm1(self.correlation(padded, (h, w))))
        return x + self.drop_path(self.norm2(self.mlp(x)))

    def extra_repr(self) -> str:
        return f'dim={self.dim}, num_heads={self.num_heads}, window_size={self.window_size}, mlp_ratio={self.mlp_ratio}'


class BasicLayer(nn.Module):
    """``depth`` blocks, block i with window i of the hierarchy (gradient checkpointing optional)."""

    def __init__(self, dim: int, input_resolution: tuple[int, int], depth: int, num_heads: int,
                 base_win_size: Sequence[int], mlp_ratio: float = 4.0, drop: float = 0.0, value_drop: float = 0.0,
                 drop_path: float | Sequence[float] = 0.0, norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
                 use_checkpoint: bool = False, hier_win_ratios: Sequence[float] = (0.5, 1, 2, 4, 6, 8)) -> None:
        super().__init__()
        self.dim, self.input_resolution, self.depth = dim, input_resolution, depth
        self.use_checkpoint = use_checkpoint
        windows = window_sizes(base_win_size, hier_win_ratios)
        rates = list(drop_path) if isinstance(drop_path, Sequence) else [drop_path] * depth
        self.blocks = nn.ModuleList(
            HierarchicalTransformerBlock(dim, input_resolution, num_heads, base_win_size, windows[i], mlp_ratio,
                                         drop, value_drop, rates[i], norm_layer=norm_layer)
            for i in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            if self.use_checkpoint and torch.is_grad_enabled():
                x = checkpoint.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x


class RHTB(nn.Module):
    """Residual hierarchical transformer block: a BasicLayer, a conv, and the group's skip connection."""

    def __init__(self, dim: int, input_resolution: tuple[int, int], depth: int, num_heads: int,
                 base_win_size: Sequence[int], mlp_ratio: float = 4.0, drop: float = 0.0, value_drop: float = 0.0,
                 drop_path: float | Sequence[float] = 0.0, norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
                 use_checkpoint: bool = False, resi_connection: str = '1conv',
                 hier_win_ratios: Sequence[float] = (0.5, 1, 2, 4, 6, 8)) -> None:
        super().__init__()
        self.dim, self.input_resolution = dim, input_resolution
        self.residual_group = BasicLayer(dim, input_resolution, depth, num_heads, base_win_size, mlp_ratio, drop,
                                         value_drop, drop_path, norm_layer, use_checkpoint, hier_win_ratios)
        self.conv = resi_conv(dim, resi_connection)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _nhwc(self.conv(_nchw(self.residual_group(x)))) + x


class PatchEmbed(nn.Module):
    """NCHW features -> (B, H, W, C) tokens, layer-normed when ``patch_norm`` (the authors' patch size is 1)."""

    def __init__(self, embed_dim: int, norm_layer: Callable[[int], nn.Module] | None) -> None:
        super().__init__()
        self.norm = norm_layer(embed_dim) if norm_layer is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _nhwc(x)
        return self.norm(x) if self.norm is not None else x


class UpsampleOneStep(nn.Sequential):
    """'pixelshuffledirect': one 3x3 conv to out_ch * s^2 channels and a pixel shuffle."""

    def __init__(self, scale: int, num_feat: int, num_out_ch: int) -> None:
        super().__init__(nn.Conv2d(num_feat, scale ** 2 * num_out_ch, 3, 1, 1), nn.PixelShuffle(scale))


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


HIT_SRF_SPEC = ArchSpec(scales=(2, 3, 4), scale_arg='upscale', tiling_exact=False, fp16_safe=False,
                        subpixel_tail=('upsample',), params={2: 846944, 3: 855059, 4: 866420})


@ARCH_REGISTRY.register(meta=HIT_SRF_SPEC)
class HiT_SRF(nn.Module):
    """HiT-SRF with the authors' arguments (defaults: the released model, 866K parameters at x4).

    ``upsampler``: 'pixelshuffledirect' (released), 'pixelshuffle', 'nearest+conv' (x4), '' (same-size
    restoration: the output is the input plus a residual), or IGConv's 'igconv' / 'igconv+igsample', which take
    the scale per call (``forward(x, scale)``; ``upscale`` is then unused) and use ``sk_kernel_size``,
    ``implicit_dim``, ``latent_layers``; with 'igconv+igsample' and ``return_skip`` the training forward
    returns ``(image, skip)``. ``expansion_factor`` and ``geo_ensemble`` are accepted and unused (as released).
    """

    mean: torch.Tensor

    def __init__(self, img_size: int | tuple[int, int] | list[int] = 64, patch_size: int = 1, in_chans: int = 3,
                 embed_dim: int = 60, depths: tuple[int, ...] | list[int] = (6, 6, 6, 6),
                 num_heads: tuple[int, ...] | list[int] = (6, 6, 6, 6),
                 base_win_size: tuple[int, ...] | list[int] = (8, 8), mlp_ratio: float = 2.0,
                 drop_rate: float = 0.0, value_drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 norm_layer: Callable[[int], nn.Module] = nn.LayerNorm, ape: bool = False, patch_norm: bool = True,
                 use_checkpoint: bool = False, upscale: int = 4, img_range: float = 1.0,
                 upsampler: Upsampler | None = 'pixelshuffledirect', resi_connection: str = '1conv',
                 hier_win_ratios: tuple[float, ...] | list[float] = (0.5, 1, 2, 4, 6, 8),
                 sk_kernel_size: int = 3, implicit_dim: int = 256, latent_layers: int = 4, geo_ensemble: bool = True,
                 return_skip: bool = True, expansion_factor: float | None = None) -> None:
        super().__init__()
        require_positive(patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim, upscale=upscale,
                         **{f'depths[{i}]': d for i, d in enumerate(depths)},
                         **{f'num_heads[{i}]': n for i, n in enumerate(num_heads)})
        windows = self._check_windows(embed_dim, depths, num_heads, base_win_size, hier_win_ratios)
        del expansion_factor, geo_ensemble  # unused in the released code too (see the module docstring)
        self.img_range, self.upscale, self.upsampler = img_range, upscale, upsampler or ''
        self.scale_in_forward = self.upsampler in IG_UPSAMPLERS
        self.return_skip = return_skip
        self.base_win_size, self.window_sizes = tuple(base_win_size), windows
        mean = DIV2K_RGB_MEAN if in_chans == 3 else (0.0,)
        self.register_buffer('mean', torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.num_layers, self.embed_dim, self.num_features = len(depths), embed_dim, embed_dim
        self.ape, self.patch_norm, self.mlp_ratio = ape, patch_norm, mlp_ratio
        size, patch = _pair(img_size), _pair(patch_size)
        self.patches_resolution = (size[0] // patch[0], size[1] // patch[1])

        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(embed_dim, norm_layer if patch_norm else None)
        if ape:
            self.absolute_pos_embed = nn.Parameter(
                torch.zeros(1, self.patches_resolution[0] * self.patches_resolution[1], embed_dim))
            nn.init.trunc_normal_(self.absolute_pos_embed, std=0.02)
        self.pos_drop = nn.Dropout(drop_rate)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        starts = [sum(depths[:i]) for i in range(len(depths) + 1)]
        self.layers = nn.ModuleList(
            RHTB(embed_dim, self.patches_resolution, depth, heads, base_win_size, mlp_ratio, drop_rate,
                 value_drop_rate, rates[starts[i]:starts[i + 1]], norm_layer, use_checkpoint, resi_connection,
                 hier_win_ratios)
            for i, (depth, heads) in enumerate(zip(depths, num_heads)))
        self.norm = norm_layer(embed_dim)
        self.conv_after_body = resi_conv(embed_dim, resi_connection)
        self._build_tail(in_chans, upscale, sk_kernel_size, implicit_dim, latent_layers)
        self.apply(init_weights)

    @staticmethod
    def _check_windows(embed_dim: int, depths: Sequence[int], num_heads: Sequence[int],
                       base_win_size: Sequence[int], hier_win_ratios: Sequence[float]) -> list[tuple[int, int]]:
        """The hierarchy's windows, after the checks the authors' code fails on later (or silently)."""
        if len(num_heads) != len(depths):
            raise ValueError(f'num_heads ({list(num_heads)}) needs one entry per group of depths ({list(depths)})')
        if len(base_win_size) != 2:
            raise ValueError(f'base_win_size must be [height, width], got {list(base_win_size)}')
        if max(depths) > len(hier_win_ratios):
            raise ValueError(f'a group of {max(depths)} blocks needs as many hier_win_ratios, '
                             f'got {len(hier_win_ratios)}')
        if embed_dim < 16 or any(embed_dim % (2 * n) for n in num_heads):
            raise ValueError(f'embed_dim ({embed_dim}) must be at least 16 (the position MLP is embed_dim // 16 wide) '
                             f'and split into q and v halves of num_heads ({list(num_heads)}) heads each')
        windows = window_sizes(base_win_size, hier_win_ratios[:max(depths)])
        for window in windows:
            if min(window) < 1 or any(w > b and w % b for w, b in zip(window, base_win_size)):
                raise ValueError(f'window {window} (base_win_size {list(base_win_size)} times hier_win_ratios) must '
                                 'be positive and, where larger than the base window, a multiple of it')
        return windows

    def _build_tail(self, out_ch: int, upscale: int, sk_kernel_size: int, implicit_dim: int,
                    latent_layers: int) -> None:
        dim = self.embed_dim
        if self.upsampler == 'pixelshuffle':
            if upscale & (upscale - 1) and upscale != 3:
                raise ValueError(f"upsampler 'pixelshuffle' supports scales 2^n and 3, not {upscale}")
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(dim, NUM_FEAT, 3, 1, 1), nn.LeakyReLU(inplace=True))
            self.upsample: nn.Module = Upsample(upscale, NUM_FEAT)
            self.conv_last = nn.Conv2d(NUM_FEAT, out_ch, 3, 1, 1)
        elif self.upsampler == 'pixelshuffledirect':
            self.upsample = UpsampleOneStep(upscale, dim, out_ch)
        elif self.upsampler == 'nearest+conv':
            if upscale != 4:
                raise ValueError(f"upsampler 'nearest+conv' supports x4 only, not x{upscale}")
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(dim, NUM_FEAT, 3, 1, 1), nn.LeakyReLU(inplace=True))
            self.conv_up1 = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
            self.conv_up2 = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
            self.conv_hr = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
            self.conv_last = nn.Conv2d(NUM_FEAT, out_ch, 3, 1, 1)
            self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        elif self.upsampler in IG_UPSAMPLERS:
            if out_ch != 3:
                raise ValueError(f'IGConv upsamplers output RGB: in_chans must be 3, got {out_ch}')
            plus = self.upsampler == 'igconv+igsample'
            self.upsample = IGConv(dim, sk_kernel_size, implicit_dim, latent_layers, plus)
            if plus:
                self.skip = IGSample(dim, sk_kernel_size, implicit_dim // 2, latent_layers // 2, True)
        elif self.upsampler == '':
            self.conv_last = nn.Conv2d(dim, out_ch, 3, 1, 1)
        else:
            raise ValueError(f'upsampler must be one of {list(typing.get_args(Upsampler))} or None, '
                             f'got {self.upsampler!r}')

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The transformer body on NCHW features -> NCHW features (a channels_last view)."""
        x = self.patch_embed(x)
        if self.ape:
            h, w = x.shape[1:3]
            if (h, w) != self.patches_resolution:
                raise ValueError(f'ape=True works at img_size {self.patches_resolution} only, got {(h, w)}')
            x = x + self.absolute_pos_embed.view(1, h, w, -1)
        x = self.pos_drop(x)
        for layer in self.layers:
            x = layer(x)
        return _nchw(self.norm(x))

    def _tail(self, x: torch.Tensor, scale: int | None) -> torch.Tensor:
        if self.upsampler == 'pixelshuffle':
            return self.conv_last(self.upsample(self.conv_before_upsample(x)))
        if self.upsampler == 'nearest+conv':
            x = self.conv_before_upsample(x)
            x = self.lrelu(self.conv_up1(F.interpolate(x, scale_factor=2, mode='nearest')))
            x = self.lrelu(self.conv_up2(F.interpolate(x, scale_factor=2, mode='nearest')))
            return self.conv_last(self.lrelu(self.conv_hr(x)))
        if self.upsampler in IG_UPSAMPLERS:
            return self.upsample(x, scale)
        return self.upsample(x)

    def forward(self, x: torch.Tensor, scale: int | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.scale_in_forward and scale is None:
            raise ValueError(f"HiT_SRF with upsampler '{self.upsampler}' takes the scale per call: net(x, scale)")
        lr = x
        x = (x - self.mean) * self.img_range
        first = self.conv_first(x)
        features = self.conv_after_body(self.forward_features(first)) + first
        if self.upsampler == '':
            return (x + self.conv_last(features)) / self.img_range + self.mean
        out = self._tail(features, scale) / self.img_range + self.mean
        if self.upsampler != 'igconv+igsample':
            return out
        return add_skip(out, self.skip(lr, features, scale), self.training, self.return_skip)


# IGConv's option files (options/{train,test}/HiT_SR*/): the released HiT-SRF body with each upsampler.
_IG_BODY: dict[str, Any] = {'img_size': 64, 'in_chans': 3, 'embed_dim': 60, 'depths': (6, 6, 6, 6),
                            'num_heads': (6, 6, 6, 6), 'base_win_size': (8, 8), 'img_range': 1.0,
                            'resi_connection': '1conv', 'hier_win_ratios': (0.5, 1, 2, 4, 6, 8)}


def _ig_spec(params: int) -> ArchSpec:
    return ArchSpec(scales=(), scale_arg=None, scale_in_forward=True, tiling_exact=False, fp16_safe=False,
                    params={s: params for s in (2, 3, 4)})


@ARCH_REGISTRY.register(meta=_ig_spec(1381127))
def HiT_SRF_IGConv() -> HiT_SRF:
    """HiT-SRF-IGConv as IGConv's option files build it: ``net(x, scale)`` at any integer scale."""
    return HiT_SRF(**_IG_BODY, upsampler='igconv', geo_ensemble=False)


@ARCH_REGISTRY.register(meta=_ig_spec(1725447))
def HiT_SRF_IGConvPlus(return_skip: bool = False) -> HiT_SRF:
    """HiT-SRF-IGConv+ (geometric ensemble and IGSample skip) as IGConv's option files build it (they set
    ``return_skip: false``; true makes the training forward return ``(image, skip)``)."""
    return HiT_SRF(**_IG_BODY, upsampler='igconv+igsample', geo_ensemble=True, return_skip=return_skip)
