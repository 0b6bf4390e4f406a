"""SRFormer (Zhou et al., ICCV 2023): SwinIR's residual groups of window attention, with permuted self-attention.

Permuted self-attention (PSA) keeps the queries of an S x S window at full width but computes keys and
values at half width and merges every 2x2 group of tokens into one token of full width (the spatial
positions move into the channels): each query attends to (S/2)^2 tokens, so a 22 x 22 or 16 x 16 window
costs what a 11 x 11 or 8 x 8 one would with plain window attention. The relative-position bias of a
query is the one of the merged token it falls into. The MLP is a ConvFFN (a 5x5 depth-wise conv added
inside). Shifted windows alternate with plain ones as in Swin; the shifted ones mask tokens that the
cyclic shift brought from the opposite border.

Constructor arguments, parameter and buffer names are the authors' (HVision-NKU/SRFormer,
basicsr/archs/srformer_arch.py at d0c2da6), so their released checkpoints (SRFormer_SRx{2,3,4}_DF2K.pth,
SRFormerLight_SRx{2,3,4}_DIV2K.pth) load strictly. The IGConv repository's SRFormer
(dslisleedh/IGConv, igconv/archs/srformer_ig_arch.py) is the same class with two more upsamplers,
``igconv`` and ``igconv+igsample``, and their arguments; srkit's class takes both (``forward(x, scale)``
for those). Each shifted block keeps the authors' ``attn_mask`` buffer (a checkpoint holds it) and uses
it for inputs of the ``img_size`` it was built for, as the authors' forward does.

Attention runs through ``F.scaled_dot_product_attention`` with the relative-position bias as its float
mask. The bias is gathered from its table once and cached while the table is unchanged (every forward
only when it is being trained); a shifted-window mask is computed once per input size and cached. The
mask is zero in every window except those of the last window row and column, so only those get a
bias + mask materialised; the others share the bias.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils import checkpoint

from srkit.archs.edsr_arch import DIV2K_RGB_MEAN, Upsample
from srkit.archs.eimn_arch import DropPath
from srkit.archs.igconv_arch import IGConv, IGSample
from srkit.archs.spec import ArchSpec, require_positive
from srkit.archs.window_ops import (
    IG_UPSAMPLERS,
    MASKED,
    PatchEmbed,
    add_skip,
    crop_to_scale,
    init_weights,
    pad_to_window,
    window_partition,
    window_reverse,
)
from srkit.core.registry import ARCH_REGISTRY

__all__ = ['PSA', 'PSABlock', 'SRFormer', 'SRFormer_IGConv', 'SRFormer_IGConvPlus', 'SRFormer_light',
           'aligned_relative_position_index', 'cached_window_mask', 'shifted_window_mask']

Upsampler = Literal['', 'pixelshuffle', 'pixelshuffledirect', 'nearest+conv', 'igconv', 'igconv+igsample']
NUM_FEAT = 64  # width of the authors' pixel-shuffle tails (fixed in their code)


def aligned_relative_position_index(permuted: tuple[int, int]) -> torch.Tensor:
    """(4 * P, P) index into the bias table, P = ph * pw merged tokens: query (y, x) of the full window
    uses the relative position of the merged token (y // 2, x // 2) it belongs to."""
    ph, pw = permuted
    ys, xs = torch.meshgrid(torch.arange(ph), torch.arange(pw), indexing='ij')
    ys, xs = ys.flatten(), xs.flatten()
    merged = (ys[:, None] - ys[None, :] + ph - 1) * (2 * pw - 1) + (xs[:, None] - xs[None, :] + pw - 1)
    rows = merged.view(ph, 1, pw, 1, ph * pw).expand(ph, 2, pw, 2, ph * pw)
    return rows.reshape(4 * ph * pw, ph * pw)


def _band_labels(size: int, window: int, start: int) -> torch.Tensor:
    """Per row (or column): 0 up to the last window, 1 in it before ``start``, 2 from ``start`` on.

    ``start`` is negative (from the end); Python's slicing rules are the authors', so the bands are the
    same in the corner cases too (a shift of one row, a window as large as the image)."""
    labels = torch.zeros(size)
    labels[-window:start] = 1
    labels[start:] = 2
    return labels


def shifted_window_mask(h: int, w: int, window: int, shift: int, device: torch.device | None = None
                        ) -> torch.Tensor:
    """(windows, window^2, (window/2)^2) additive mask of the shifted blocks for an H x W feature map.

    A query and a merged key token attend to each other only where both lie in the same band of the
    shifted image (``_band_labels``), on the full grid and on the half-resolution grid of merged tokens
    (whose band starts at ``(-shift) // 2``, the authors' rounding). Blocks use ``cached_window_mask``.
    """
    half, start = window // 2, (-shift) // 2
    full = 3 * _band_labels(h, window, -shift)[:, None] + _band_labels(w, window, -shift)
    merged = 3 * _band_labels(h // 2, half, start)[:, None] + _band_labels(w // 2, half, start)
    queries = window_partition(full[None, :, :, None], window)[..., 0]
    keys = window_partition(merged[None, :, :, None], half)[..., 0]
    mask = torch.zeros(queries.shape[0], window * window, half * half)
    return mask.masked_fill(queries[:, :, None] != keys[:, None, :], MASKED).to(device)


# One mask per input size (and device), shared by every shifted block: computed once, not per forward.
cached_window_mask = functools.lru_cache(maxsize=8)(shifted_window_mask)


class PSA(nn.Module):
    """Permuted self-attention over (B * windows, S^2, C) tokens; keys/values are (S/2)^2 merged tokens."""

    def __init__(self, dim: int, window_size: tuple[int, int], num_heads: int, qkv_bias: bool = True,
                 qk_scale: float | None = None, attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        self.dim, self.num_heads, self.window_size = dim, num_heads, window_size
        self.permuted_window_size = (window_size[0] // 2, window_size[1] // 2)
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        ph, pw = self.permuted_window_size
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ph - 1) * (2 * pw - 1), num_heads))
        self.register_buffer('aligned_relative_position_index', aligned_relative_position_index((ph, pw)))
        self.kv = nn.Linear(dim, dim // 2, bias=qkv_bias)
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self._bias_cache: tuple[tuple[int, ...], torch.Tensor] | None = None
        self._mask_check: tuple[tuple[int, ...], bool] | None = None

    aligned_relative_position_index: torch.Tensor

    def relative_bias(self) -> torch.Tensor:
        """(heads, S^2, (S/2)^2): gathered once and reused while the table is unchanged (its version
        counter moves on every in-place update: an optimiser step, a state-dict load); gathered on every
        call while the table is trained, so that gradients reach it."""
        table = self.relative_position_bias_table
        if torch.is_grad_enabled() and table.requires_grad:
            return self._gather_bias()
        key = (id(table), table.data_ptr(), table._version, id(self.aligned_relative_position_index))
        if self._bias_cache is None or self._bias_cache[0] != key:
            self._bias_cache = (key, self._gather_bias())
        return self._bias_cache[1]

    def _gather_bias(self) -> torch.Tensor:
        index = self.aligned_relative_position_index
        return self.relative_position_bias_table[index.view(-1)].view(*index.shape, -1).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                grid: tuple[int, int] | None = None) -> torch.Tensor:
        """``mask``: (windows, S^2, (S/2)^2) for the shifted blocks, with ``grid`` = (window rows, columns)."""
        b_, n, c = x.shape
        ph, pw = self.permuted_window_size
        heads = self.num_heads
        # (B_, ph, 2, pw, 2, [k, v], C/4) -> [k, v], B_, merged token, its 2x2 tokens' channels -> heads
        kv = self.kv(x).view(b_, ph, 2, pw, 2, 2, c // 4).permute(5, 0, 1, 3, 2, 4, 6)
        k, v = kv.reshape(2, b_, n // 4, heads, c // heads).transpose(2, 3)
        q = self.q(x).view(b_, n, heads, c // heads).transpose(1, 2)
        bias = self.relative_bias().to(q.dtype)
        dropout = self.attn_drop if self.training else 0.0
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout, scale=self.scale)
        else:
            if grid is None:
                raise ValueError('PSA: a mask needs the window grid (rows, columns)')
            out = self._masked_attention(q, k, v, bias, mask.to(q.dtype), grid, dropout)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b_, n, c)))

    def _masked_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor,
                          mask: torch.Tensor, grid: tuple[int, int], dropout: float) -> torch.Tensor:
        """Windows of the last row and column get bias + their mask; the others (mask zero) the bias alone."""
        rows, cols = grid
        q5, k5, v5 = (t.unflatten(0, (-1, rows, cols)) for t in (q, k, v))
        masks = mask.view(rows, cols, 1, *mask.shape[1:])

        def attend(sel: tuple[slice | int, ...], attn_mask: torch.Tensor) -> torch.Tensor:
            return F.scaled_dot_product_attention(q5[sel], k5[sel], v5[sel], attn_mask=attn_mask,
                                                  dropout_p=dropout, scale=self.scale)

        if not self._interior_unmasked(mask, grid):
            return attend((slice(None),), masks + bias).flatten(0, 2)
        out = torch.empty_like(q5)
        if rows > 1 and cols > 1:
            inner = (slice(None), slice(0, -1), slice(0, -1))
            out[inner] = attend(inner, bias)
        out[:, -1] = attend((slice(None), -1), masks[-1] + bias)
        if rows > 1:
            edge = (slice(None), slice(0, -1), -1)
            out[edge] = attend(edge, masks[:-1, -1] + bias)
        return out.flatten(0, 2)

    def _interior_unmasked(self, mask: torch.Tensor, grid: tuple[int, int]) -> bool:
        """Whether ``mask`` is zero away from the last window row and column: true of every shifted-window
        mask (srkit's and the authors'); checked once per mask tensor all the same, as a loaded
        ``attn_mask`` could hold anything."""
        key = (mask.data_ptr(), mask._version, *grid, *mask.shape)
        if self._mask_check is None or self._mask_check[0] != key:
            rows, cols = grid
            interior = mask.view(rows, cols, *mask.shape[1:])[:-1, :-1]
            self._mask_check = (key, not bool(interior.any()))
        return self._mask_check[1]


class DWConv(nn.Module):
    """The ConvFFN's 5x5 depth-wise conv + GELU on the token sequence seen as an image."""

    def __init__(self, hidden_features: int) -> None:
        super().__init__()
        self.depthwise_conv = nn.Sequential(
            nn.Conv2d(hidden_features, hidden_features, 5, 1, 2, groups=hidden_features), nn.GELU())

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        image = x.transpose(1, 2).unflatten(2, x_size)
        return self.depthwise_conv(image).flatten(2).transpose(1, 2)


class ConvFFN(nn.Module):
    """fc1 -> GELU -> (+ depth-wise conv of itself) -> fc2."""

    def __init__(self, in_features: int, hidden_features: int, act_layer: Callable[[], nn.Module] = nn.GELU,
                 drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.dwconv = DWConv(hidden_features)
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        x = self.act(self.fc1(x))
        x = self.drop(x + self.dwconv(x, x_size))
        return self.drop(self.fc2(x))


class PSABlock(nn.Module):
    """norm -> (shifted) window PSA -> residual, norm -> ConvFFN -> residual.

    As in the authors' code, a block whose ``input_resolution`` fits in one window neither shifts nor
    partitions beyond it (its window becomes the resolution).
    """

    attn_mask: torch.Tensor | None

    def __init__(self, dim: int, input_resolution: tuple[int, int], num_heads: int, window_size: int = 7,
                 shift_size: int = 0, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 qk_scale: float | None = None, drop: float = 0.0, attn_drop: float = 0.0,
                 drop_path: float = 0.0, norm_layer: Callable[[int], nn.Module] = nn.LayerNorm) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        self.window_size, self.shift_size = window_size, shift_size
        if min(input_resolution) <= window_size:
            self.window_size, self.shift_size = min(input_resolution), 0
        mask = (cached_window_mask(*input_resolution, self.window_size, self.shift_size, torch.get_default_device())
                if self.shift_size > 0 else None)
        self.register_buffer('attn_mask', None if mask is None else mask.clone())  # its own: a load writes it
        self.norm1 = norm_layer(dim)
        self.attn = PSA(dim, (self.window_size, self.window_size), num_heads, qkv_bias, qk_scale, attn_drop, drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = norm_layer(dim)
        self.mlp = ConvFFN(dim, int(dim * mlp_ratio), drop=drop)

    def window_mask(self, x_size: tuple[int, int], device: torch.device) -> torch.Tensor | None:
        """The stored mask at the resolution it was built for (the authors' rule), else the cached one."""
        if self.shift_size == 0:
            return None
        if x_size == tuple(self.input_resolution) and self.attn_mask is not None:
            return self.attn_mask
        return cached_window_mask(*x_size, self.window_size, self.shift_size, device)

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        h, w = x_size
        b, _, c = x.shape
        ws, shift = self.window_size, self.shift_size
        image = self.norm1(x).view(b, h, w, c)
        if shift:
            image = torch.roll(image, (-shift, -shift), dims=(1, 2))
        attended = self.attn(window_partition(image, ws), self.window_mask(x_size, x.device), (h // ws, w // ws))
        image = window_reverse(attended, ws, h, w)
        if shift:
            image = torch.roll(image, (shift, shift), dims=(1, 2))
        x = x + self.drop_path(image.reshape(b, h * w, c))
        return x + self.drop_path(self.mlp(self.norm2(x), x_size))


class PSALayer(nn.Module):
    """``depth`` blocks, plain and shifted windows alternating (the authors' BasicLayer)."""

    def __init__(self, dim: int, input_resolution: tuple[int, int], depth: int, num_heads: int, window_size: int,
                 mlp_ratio: float, qkv_bias: bool, qk_scale: float | None, drop: float, attn_drop: float,
                 drop_path: Sequence[float], norm_layer: Callable[[int], nn.Module], use_checkpoint: bool) -> None:
        super().__init__()
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(
            PSABlock(dim, input_resolution, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2,
                     mlp_ratio, qkv_bias, qk_scale, drop, attn_drop, drop_path[i], norm_layer)
            for i in range(depth))

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        for block in self.blocks:
            if self.use_checkpoint and self.training:
                x = checkpoint.checkpoint(block, x, x_size, use_reentrant=False)
            else:
                x = block(x, x_size)
        return x


def _residual_conv(dim: int, resi_connection: str) -> nn.Module:
    """The conv closing a residual group (and the body): one 3x3, or 3x3 -> 1x1 -> 3x3 at a quarter width."""
    if resi_connection == '1conv':
        return nn.Conv2d(dim, dim, 3, 1, 1)
    return nn.Sequential(nn.Conv2d(dim, dim // 4, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True),
                         nn.Conv2d(dim // 4, dim // 4, 1, 1, 0), nn.LeakyReLU(0.2, inplace=True),
                         nn.Conv2d(dim // 4, dim, 3, 1, 1))


class PSAGroup(nn.Module):
    """A residual group: the blocks, then a conv on the tokens seen as an image, plus the group's input."""

    def __init__(self, layer: PSALayer, dim: int, resi_connection: str) -> None:
        super().__init__()
        self.residual_group = layer
        self.conv = _residual_conv(dim, resi_connection)

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        y = self.residual_group(x, x_size)
        y = self.conv(y.transpose(1, 2).unflatten(2, x_size))
        return y.flatten(2).transpose(1, 2) + x


def _check_sizes(embed_dim: int, depths: Sequence[int], num_heads: Sequence[int], window_size: int,
                 upscale: int, upsampler: str, in_chans: int) -> None:
    """Refuse what the authors' code would only fail on later, with a cryptic reshape error."""
    if len(depths) != len(num_heads) or not depths:
        raise ValueError(f'depths and num_heads must be non-empty lists of one length, got {depths}, {num_heads}')
    require_positive(**{f'depths[{i}]': d for i, d in enumerate(depths)},
                     **{f'num_heads[{i}]': h for i, h in enumerate(num_heads)})
    if window_size % 2:
        raise ValueError(f'window_size must be even (PSA merges 2x2 tokens), got {window_size}')
    if embed_dim % 4 or any(embed_dim % h for h in num_heads):
        raise ValueError(f'embed_dim ({embed_dim}) must be a multiple of 4 and of every num_heads {num_heads}')
    if upsampler == 'pixelshuffle' and upscale & (upscale - 1) and upscale != 3:
        raise ValueError(f'upscale must be 2^n or 3 for the pixelshuffle upsampler, got {upscale}')
    if upsampler == 'nearest+conv' and upscale != 4:
        raise ValueError(f'upscale must be 4 for the nearest+conv upsampler, got {upscale}')
    if upsampler in IG_UPSAMPLERS and in_chans != 3:
        raise ValueError(f'the {upsampler} upsampler outputs RGB: in_chans must be 3, got {in_chans}')


SRFORMER_SPEC = ArchSpec(
    scales=(2, 3, 4), pad_multiple=22, tiling_exact=False,
    subpixel_tail=('conv_before_upsample', 'upsample', 'conv_last'),
    params={2: 10376783, 3: 10561423, 4: 10524495},
    example_args={'img_size': 64, 'window_size': 22, 'embed_dim': 180, 'depths': [6] * 6,
                  'num_heads': [6] * 6, 'mlp_ratio': 2, 'upsampler': 'pixelshuffle'})


@ARCH_REGISTRY.register(meta=SRFORMER_SPEC)
class SRFormer(nn.Module):
    """SRFormer with the authors' arguments and names (their defaults, which describe no published model:
    the published ones are in the option files; ``SRFormer_light`` and the registry's example are two).

    ``upsampler``: ``pixelshuffle`` (classical), ``pixelshuffledirect`` (lightweight), ``nearest+conv``
    (real-world, x4), ``''`` (same-size restoration, ``upscale`` 1), or the IGConv repository's
    ``igconv`` / ``igconv+igsample`` (any scale per call: ``forward(x, scale)``; ``sk_kernel_size``,
    ``implicit_dim``, ``latent_layers``, ``geo_ensemble`` configure them, ``return_skip`` makes a
    training forward return ``(image, skip)``). ``norm_layer`` and ``patch_size`` are kept for the
    authors' signature; ``img_size`` only sizes the stored masks (any input size runs: the forward pads
    to the window and crops back). The authors' window_size default (7) is odd and cannot run: give one.
    """

    mean: torch.Tensor

    def __init__(self, img_size: int = 64, patch_size: int = 1, in_chans: int = 3, embed_dim: int = 96,
                 depths: tuple[int, ...] | list[int] = (6, 6, 6, 6),
                 num_heads: tuple[int, ...] | list[int] = (6, 6, 6, 6), window_size: int = 7,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, qk_scale: float | None = None,
                 drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: float = 0.1,
                 norm_layer: Callable[[int], nn.Module] = nn.LayerNorm, ape: bool = False, patch_norm: bool = True,
                 use_checkpoint: bool = False, upscale: int = 2, img_range: float = 1.0, upsampler: Upsampler = '',
                 resi_connection: Literal['1conv', '3conv'] = '1conv', sk_kernel_size: int = 3,
                 implicit_dim: int = 256, latent_layers: int = 4, geo_ensemble: bool = True,
                 return_skip: bool = True) -> None:
        super().__init__()
        require_positive(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
                         window_size=window_size, upscale=upscale, sk_kernel_size=sk_kernel_size,
                         implicit_dim=implicit_dim)
        if latent_layers < 0:
            raise ValueError(f'latent_layers must be >= 0, got {latent_layers}')
        _check_sizes(embed_dim, depths, num_heads, window_size, upscale, upsampler, in_chans)
        self.img_range, self.upscale, self.upsampler = img_range, upscale, upsampler
        self.window_size, self.embed_dim, self.return_skip = window_size, embed_dim, return_skip
        self.scale_in_forward = upsampler in IG_UPSAMPLERS
        mean = DIV2K_RGB_MEAN if in_chans == 3 else (0.0,)
        self.register_buffer('mean', torch.tensor(mean).view(1, -1, 1, 1), persistent=False)

        padded = -(-img_size // window_size) * window_size
        resolution = (padded // patch_size, padded // patch_size)
        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(embed_dim, norm_layer if patch_norm else None)
        self.absolute_pos_embed = (nn.Parameter(torch.zeros(1, resolution[0] * resolution[1], embed_dim))
                                   if ape else None)
        self.pos_drop = nn.Dropout(drop_rate)
        rates = torch.linspace(0, drop_path_rate, sum(depths), device='cpu').tolist()
        self.layers = nn.ModuleList()
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            first = sum(depths[:i])
            layer = PSALayer(embed_dim, resolution, depth, heads, window_size, mlp_ratio, qkv_bias, qk_scale,
                             drop_rate, attn_drop_rate, rates[first:first + depth], norm_layer, use_checkpoint)
            self.layers.append(PSAGroup(layer, embed_dim, resi_connection))
        self.norm = norm_layer(embed_dim)
        self.conv_after_body = _residual_conv(embed_dim, resi_connection)
        self._build_tail(upsampler, upscale, embed_dim, in_chans, sk_kernel_size, implicit_dim, latent_layers,
                         geo_ensemble)
        self.apply(init_weights)
        if self.absolute_pos_embed is not None:
            nn.init.trunc_normal_(self.absolute_pos_embed, std=0.02)

    def _build_tail(self, upsampler: str, upscale: int, embed_dim: int, out_ch: int, sk_kernel_size: int,
                    implicit_dim: int, latent_layers: int, geo_ensemble: bool) -> None:
        self.skip: IGSample | None = None
        if upsampler in ('pixelshuffle', 'nearest+conv'):
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, NUM_FEAT, 3, 1, 1),
                                                      nn.LeakyReLU(inplace=True))
        if upsampler == 'pixelshuffle':
            self.upsample: nn.Module = Upsample(upscale, NUM_FEAT)
            self.conv_last = nn.Conv2d(NUM_FEAT, out_ch, 3, 1, 1)
        elif upsampler == 'pixelshuffledirect':
            self.upsample = nn.Sequential(nn.Conv2d(embed_dim, upscale ** 2 * out_ch, 3, 1, 1),
                                          nn.PixelShuffle(upscale))
        elif upsampler == 'nearest+conv':
            self.conv_up1 = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
            self.conv_up2 = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
            self.conv_hr = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
            self.conv_last = nn.Conv2d(NUM_FEAT, out_ch, 3, 1, 1)
            self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        elif upsampler in IG_UPSAMPLERS:
            self.upsample = IGConv(embed_dim, sk_kernel_size, implicit_dim, latent_layers, geo_ensemble)
            if upsampler == 'igconv+igsample':
                self.skip = IGSample(embed_dim, sk_kernel_size, implicit_dim // 2, latent_layers // 2, geo_ensemble)
        else:
            self.conv_last = nn.Conv2d(embed_dim, out_ch, 3, 1, 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x_size = (x.shape[2], x.shape[3])
        tokens = self.patch_embed(x)
        if self.absolute_pos_embed is not None:
            tokens = tokens + self.absolute_pos_embed
        tokens = self.pos_drop(tokens)
        for layer in self.layers:
            tokens = layer(tokens, x_size)
        return self.norm(tokens).transpose(1, 2).unflatten(2, x_size)

    def _tail(self, feat: torch.Tensor, scale: int) -> torch.Tensor:
        if self.upsampler == 'pixelshuffle':
            return self.conv_last(self.upsample(self.conv_before_upsample(feat)))
        if self.upsampler == 'nearest+conv':
            x = self.conv_before_upsample(feat)
            x = self.lrelu(self.conv_up1(F.interpolate(x, scale_factor=2, mode='nearest')))
            x = self.lrelu(self.conv_up2(F.interpolate(x, scale_factor=2, mode='nearest')))
            return self.conv_last(self.lrelu(self.conv_hr(x)))
        if self.upsampler in IG_UPSAMPLERS:
            return self.upsample(feat, scale)
        return self.upsample(feat)  # pixelshuffledirect

    def _scale(self, scale: int | None) -> int:
        if self.scale_in_forward:
            if scale is None:
                raise ValueError(f'SRFormer with upsampler {self.upsampler!r} needs the scale: forward(x, scale).')
            return scale
        if scale is not None and scale != self.upscale:
            raise ValueError(f'This SRFormer upscales x{self.upscale}, not x{scale}.')
        return self.upscale

    def forward(self, x: torch.Tensor, scale: int | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The SR image (and, training the IGConv+ form with ``return_skip``, its IGSample part)."""
        s = self._scale(scale)
        h, w = x.shape[-2:]
        lr = pad_to_window(x, self.window_size)
        mean = self.mean.to(lr.dtype)
        x = (lr - mean) * self.img_range
        shallow = self.conv_first(x)
        feat = self.conv_after_body(self.forward_features(shallow)) + shallow
        out = x + self.conv_last(feat) if self.upsampler == '' else self._tail(feat, s)
        out = crop_to_scale(out / self.img_range + mean, lr, (h, w))  # at its scale (an IGConvSR tail's, if one)
        if self.skip is None:
            return out
        return add_skip(out, crop_to_scale(self.skip(lr, feat, s), lr, (h, w)), self.training, self.return_skip)


def _classical(in_chans: int, upscale: int, upsampler: Upsampler, geo_ensemble: bool = True,
               return_skip: bool = True) -> SRFormer:
    """The classical body as released (SRFormer_SRx*_DF2K.pth, and the IGConv repository's options): 180
    channels, 6 groups of 6 blocks, 22 x 22 windows, MLP ratio 2, stored masks sized for 64 x 64."""
    return SRFormer(img_size=64, in_chans=in_chans, embed_dim=180, depths=[6] * 6, num_heads=[6] * 6,
                    window_size=22, mlp_ratio=2.0, upscale=upscale, img_range=1.0, upsampler=upsampler,
                    resi_connection='1conv', geo_ensemble=geo_ensemble, return_skip=return_skip)


@ARCH_REGISTRY.register(meta=ArchSpec(scales=(2, 3, 4), pad_multiple=16, tiling_exact=False,
                                      subpixel_tail=('upsample',), params={2: 853272, 3: 861387, 4: 872748}))
def SRFormer_light(upscale: int = 4, in_chans: int = 3) -> SRFormer:
    """SRFormer-light as released (SRFormerLight_SRx*_DIV2K.pth): 60 channels, 4 groups of 6 blocks,
    16 x 16 windows, one-step pixel-shuffle tail (853K / 861K / 873K parameters at x2 / x3 / x4)."""
    return SRFormer(img_size=64, in_chans=in_chans, embed_dim=60, depths=[6] * 4, num_heads=[6] * 4,
                    window_size=16, mlp_ratio=2.0, upscale=upscale, img_range=1.0, upsampler='pixelshuffledirect',
                    resi_connection='1conv')


@ARCH_REGISTRY.register(meta=ArchSpec(scales=(), scale_arg=None, scale_in_forward=True, pad_multiple=22,
                                      tiling_exact=False, params={s: 11217231 for s in (2, 3, 4)}))
def SRFormer_IGConv() -> SRFormer:
    """The classical SRFormer with IGConv (the IGConv repository's SRFormer_IGConv_DF2K options): one
    network for every scale, ``forward(x, scale)``; no geometric ensemble, as in those options."""
    return _classical(3, 4, 'igconv', geo_ensemble=False)


@ARCH_REGISTRY.register(meta=ArchSpec(scales=(), scale_arg=None, scale_in_forward=True, pad_multiple=22,
                                      tiling_exact=False, params={s: 12114511 for s in (2, 3, 4)}))
def SRFormer_IGConvPlus(return_skip: bool = False) -> SRFormer:
    """The classical SRFormer with IGConv+ (geometric ensemble + IGSample skip; the IGConv repository's
    SRFormer_IGConvPlus_DF2K options, ``return_skip: false`` as there)."""
    return _classical(3, 4, 'igconv+igsample', return_skip=return_skip)
