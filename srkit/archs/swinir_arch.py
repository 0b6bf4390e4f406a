"""SwinIR (Liang et al., ICCVW 2021) and SwinIRMS, its multi-scale form from the IGConv repository.

Layout, constructor arguments (with their defaults), parameter and buffer names are those of the authors'
``models/network_swinir.py`` (JingyunLiang/SwinIR) and of ``SwinIRMS`` in IGConv's ``swin_ig_arch.py``, so
the released files (``params``) load strictly: every window-attention layer keeps its persistent
``relative_position_index`` buffer, and every shifted block its ``attn_mask`` buffer, the (0 / -100)
shifted-window mask for ``img_size // patch_size`` (that is why a file trained with img_size 48 fits a
network built with img_size 48 only; the presets take ``img_size``).

What differs is how attention is computed, not what: ``F.scaled_dot_product_attention`` with the
relative-position bias (plus the shift mask) as its float ``attn_mask``, which equals the explicit
softmax(q k^T * scale + bias + mask) v within float rounding. The shift mask is a function of the input
size alone; the authors rebuild it in every shifted block of every forward whenever the input is not
``img_size``. Here it is built once per input size and shared by all blocks (a small per-network cache);
for ``img_size`` inputs it equals the stored buffer. The bias is gathered from its learnable table once per
block per forward: caching it across forwards would go stale when weights change without a version bump
(``param.data`` writes), and the gather is negligible next to the attention itself.

Both networks pad the input (reflect, bottom/right) to a multiple of ``window_size`` and crop the output,
as the authors' SwinIR does (their SwinIRMS needs multiples; srkit pads it the same way).
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial
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
    Mlp,
    PatchEmbed,
    ShiftMaskCache,
    add_skip,
    crop_to_scale,
    init_weights,
    relative_position_index,
    shifted_window_mask,
    to_image,
    to_tokens,
    trunc_normal_,
    window_partition,
    window_reverse,
)
from srkit.archs.window_ops import MASK_CACHE_SIZE as MASK_CACHE_SIZES
from srkit.core.registry import ARCH_REGISTRY

__all__ = ['RSTB', 'SwinIR', 'SwinIRMS', 'SwinIR_M', 'SwinIR_S', 'SwinTransformerBlock', 'WindowAttention',
           'relative_position_index', 'shifted_window_mask']

NUM_FEAT = 64  # the authors' fixed width of the 'pixelshuffle' and 'nearest+conv' reconstruction convs
SR_UPSAMPLERS = ('pixelshuffle', 'pixelshuffledirect', 'nearest+conv', '')

Size = tuple[int, int]
NormLayer = Callable[[int], nn.Module]


def _pair(value: int | list[int] | tuple[int, ...], name: str) -> Size:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2:
        raise ValueError(f'{name} must be an integer or a pair of integers, got {value!r}')
    require_positive(**{name: pair[0]}, **{f'{name}[1]': pair[1]})
    return pair[0], pair[1]


def effective_window(resolution: Size, window_size: int, shift_size: int) -> tuple[int, int]:
    """(window, shift) a block uses: as the authors', a resolution not above the window makes one
    unshifted window of that size (this fixes the shapes of the bias table and buffers)."""
    if min(resolution) <= window_size:
        return min(resolution), 0
    return window_size, shift_size


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, with a learnt relative-position bias per head."""

    relative_position_index: torch.Tensor

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True,
                 qk_scale: float | None = None, attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'embed_dim ({dim}) must be divisible by num_heads ({num_heads})')
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer('relative_position_index', relative_position_index(window_size))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        trunc_normal_(self.relative_position_bias_table)

    def relative_position_bias(self) -> torch.Tensor:
        """(heads, N, N): the table read at every pair of window positions."""
        n = self.window_size ** 2
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, -1).permute(2, 0, 1).contiguous()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B * nW, N, C) windows; ``mask`` (nW, N, N) for a shifted layer, else None."""
        b_, n, c = x.shape
        q, k, v = self.qkv(x).view(b_, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.relative_position_bias()
        dropout = self.attn_drop if self.training else 0.0
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.unsqueeze(0).to(q.dtype),
                                                 dropout_p=dropout, scale=self.scale)
        else:
            # Windows x heads as one axis, so the (nW * heads, N, N) mask broadcasts over the batch unexpanded.
            nw = mask.shape[0]
            grouped = (b_ // nw, nw * self.num_heads, n, -1)
            attn_mask = (mask.unsqueeze(1) + bias).view(1, *grouped[1:3], n).to(q.dtype)
            out = F.scaled_dot_product_attention(q.reshape(grouped), k.reshape(grouped), v.reshape(grouped),
                                                 attn_mask=attn_mask, dropout_p=dropout, scale=self.scale)
            out = out.view(b_, self.num_heads, n, -1)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b_, n, c)))


class SwinTransformerBlock(nn.Module):
    """x + W-MSA(LN(x)), then x + MLP(LN(x)); odd blocks shift the windows by half a window first."""

    attn_mask: torch.Tensor | None

    def __init__(self, dim: int, input_resolution: Size, num_heads: int, window_size: int = 7, shift_size: int = 0,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, qk_scale: float | None = None, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0, norm_layer: NormLayer = nn.LayerNorm) -> None:
        super().__init__()
        self.window_size, self.shift_size = effective_window(input_resolution, window_size, shift_size)
        self.norm1 = norm_layer(dim)
        self.attn = WindowAttention(dim, self.window_size, num_heads, qkv_bias, qk_scale, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        # Kept for the checkpoints (the authors use it for img_size inputs; it equals the computed mask). A
        # resolution that is no multiple of the window (the authors' code fails there) gets the padded one's.
        h, w = (-(-r // self.window_size) * self.window_size for r in input_resolution)
        mask = shifted_window_mask(h, w, self.window_size, self.shift_size) if self.shift_size else None
        self.register_buffer('attn_mask', mask)

    def forward(self, x: torch.Tensor, x_size: Size, mask: torch.Tensor | None) -> torch.Tensor:
        """``x`` (B, H*W, C); ``mask`` the shift mask for ``x_size`` (used only when this block shifts)."""
        h, w = x_size
        b, _, c = x.shape
        ws, shift = self.window_size, self.shift_size
        y = self.norm1(x).view(b, h, w, c)
        if shift:
            y = torch.roll(y, (-shift, -shift), dims=(1, 2))
        y = self.attn(window_partition(y, ws), mask if shift else None)
        y = window_reverse(y, ws, h, w)
        if shift:
            y = torch.roll(y, (shift, shift), dims=(1, 2))
        x = x + self.drop_path(y.reshape(b, h * w, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class BasicLayer(nn.Module):
    """``depth`` Swin blocks, alternating plain and shifted windows."""

    def __init__(self, dim: int, input_resolution: Size, depth: int, num_heads: int, window_size: int,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, qk_scale: float | None = None, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: list[float] | None = None, norm_layer: NormLayer = nn.LayerNorm,
                 use_checkpoint: bool = False) -> None:
        super().__init__()
        rates = drop_path or [0.0] * depth
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(dim, input_resolution, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2,
                                 mlp_ratio, qkv_bias, qk_scale, drop, attn_drop, rates[i], norm_layer)
            for i in range(depth))

    def forward(self, x: torch.Tensor, x_size: Size, mask: torch.Tensor | None) -> torch.Tensor:
        for block in self.blocks:
            if self.use_checkpoint and self.training and torch.is_grad_enabled():
                x = checkpoint.checkpoint(block, x, x_size, mask, use_reentrant=False)
            else:
                x = block(x, x_size, mask)
        return x


def _conv_block(dim: int, resi_connection: str) -> nn.Module:
    """The conv closing a residual group: one 3x3 conv, or the authors' parameter-saving '3conv'."""
    if resi_connection == '1conv':
        return nn.Conv2d(dim, dim, 3, 1, 1)
    if resi_connection == '3conv':
        if dim < 4:
            raise ValueError(f"resi_connection '3conv' needs embed_dim >= 4, got {dim}")
        return nn.Sequential(nn.Conv2d(dim, dim // 4, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True),
                             nn.Conv2d(dim // 4, dim // 4, 1, 1, 0), nn.LeakyReLU(0.2, inplace=True),
                             nn.Conv2d(dim // 4, dim, 3, 1, 1))
    raise ValueError(f"resi_connection must be '1conv' or '3conv', got {resi_connection!r}")


class RSTB(nn.Module):
    """Residual Swin Transformer Block: Swin blocks, then a conv on the image-shaped features, plus the input."""

    def __init__(self, dim: int, input_resolution: Size, depth: int, num_heads: int, window_size: int,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, qk_scale: float | None = None, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: list[float] | None = None, norm_layer: NormLayer = nn.LayerNorm,
                 use_checkpoint: bool = False, resi_connection: str = '1conv') -> None:
        super().__init__()
        self.residual_group = BasicLayer(dim, input_resolution, depth, num_heads, window_size, mlp_ratio, qkv_bias,
                                         qk_scale, drop, attn_drop, drop_path, norm_layer, use_checkpoint)
        self.conv = _conv_block(dim, resi_connection)

    def forward(self, x: torch.Tensor, x_size: Size, mask: torch.Tensor | None) -> torch.Tensor:
        return to_tokens(self.conv(to_image(self.residual_group(x, x_size, mask), x_size))) + x


# Released classical (SwinIR-M) files exist for x2, x3, x4, x8. pad_multiple 8: the window of every released
# network and option file (the forward also pads to its own window_size, so another window stays correct).
# example_args: the authors' defaults build a same-size restorer (upsampler ''); the sweep builds the SR form.
SWINIR_SPEC = ArchSpec(scales=(2, 3, 4, 8), pad_multiple=8, tiling_exact=False,
                       example_args={'upsampler': 'pixelshuffle', 'window_size': 8})


@ARCH_REGISTRY.register(meta=SWINIR_SPEC)
class SwinIR(nn.Module):
    """SwinIR with the authors' constructor: shallow conv, RSTBs (deep features), reconstruction.

    ``upsampler``: 'pixelshuffle' (classical SR: conv to 64 + LeakyReLU, sub-pixel convs, conv), 'pixelshuffledirect'
    (lightweight SR: one conv + shuffle), 'nearest+conv' (real-world SR, x2 or x4), '' (same-size restoration:
    the output adds to the input). ``resi_connection``: '1conv' or '3conv'. ``norm_layer`` is a module class
    (not an option-file value). ``drop_path_rate`` only acts in training.
    """

    mean: torch.Tensor
    upsample: nn.Module

    def __init__(self, img_size: int | list[int] | tuple[int, ...] = 64, patch_size: int | list[int] = 1,
                 in_chans: int = 3, embed_dim: int = 96, depths: list[int] | tuple[int, ...] = (6, 6, 6, 6),
                 num_heads: list[int] | tuple[int, ...] = (6, 6, 6, 6), window_size: int = 7, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, qk_scale: float | None = None, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.1, norm_layer: NormLayer = nn.LayerNorm,
                 ape: bool = False, patch_norm: bool = True, use_checkpoint: bool = False, upscale: int = 2,
                 img_range: float = 1.0,
                 upsampler: Literal['pixelshuffle', 'pixelshuffledirect', 'nearest+conv', ''] | None = '',
                 resi_connection: Literal['1conv', '3conv'] = '1conv') -> None:
        super().__init__()
        image, patch = _pair(img_size, 'img_size'), _pair(patch_size, 'patch_size')
        require_positive(in_chans=in_chans, embed_dim=embed_dim, window_size=window_size, upscale=upscale)
        if len(depths) != len(num_heads) or not depths:
            raise ValueError(f'depths and num_heads must be non-empty and of one length, got {depths}, {num_heads}')
        require_positive(**{f'depths[{i}]': d for i, d in enumerate(depths)},
                         **{f'num_heads[{i}]': h for i, h in enumerate(num_heads)})
        if not callable(norm_layer):
            raise ValueError(f'norm_layer must be a normalisation module class (nn.LayerNorm), not {norm_layer!r}')
        self.upsampler = upsampler or ''
        self._check_upsampler(self.upsampler, upscale)
        self.img_range, self.upscale, self.window_size, self.ape = img_range, upscale, window_size, ape
        self.scale_in_forward = False
        mean = DIV2K_RGB_MEAN if in_chans == 3 else (0.0,)
        self.register_buffer('mean', torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        resolution = (image[0] // patch[0], image[1] // patch[1])
        # One shift mask per input size serves every shifted block: they all share this window and shift.
        self._window, self._shift = effective_window(resolution, window_size, window_size // 2)
        self._masks = ShiftMaskCache(MASK_CACHE_SIZES)

        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(embed_dim, norm_layer if patch_norm else None)
        if ape:
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, resolution[0] * resolution[1], embed_dim))
            trunc_normal_(self.absolute_pos_embed)
        self.pos_drop = nn.Dropout(drop_rate)
        rates = torch.linspace(0, drop_path_rate, sum(depths), device='cpu').tolist()
        starts = [sum(depths[:i]) for i in range(len(depths) + 1)]
        self.layers = nn.ModuleList(
            RSTB(embed_dim, resolution, depth, heads, window_size, mlp_ratio, qkv_bias, qk_scale, drop_rate,
                 attn_drop_rate, rates[starts[i]:starts[i + 1]], norm_layer, use_checkpoint, resi_connection)
            for i, (depth, heads) in enumerate(zip(depths, num_heads)))
        self.norm = norm_layer(embed_dim)
        self.conv_after_body = _conv_block(embed_dim, resi_connection)
        self._build_tail(embed_dim, in_chans)
        self.apply(partial(init_weights, trunc_normal=trunc_normal_))

    @staticmethod
    def _check_upsampler(upsampler: str, upscale: int) -> None:
        if upsampler not in SR_UPSAMPLERS:
            raise ValueError(f'upsampler must be one of {list(SR_UPSAMPLERS)}, got {upsampler!r}')
        if upsampler == 'nearest+conv' and upscale not in (2, 4):
            raise ValueError(f"upsampler 'nearest+conv' upsamples x2 or x4, not upscale {upscale}")

    def _build_tail(self, embed_dim: int, out_chans: int) -> None:
        """The reconstruction modules of ``self.upsampler``, under the authors' names."""
        if self.upsampler in ('pixelshuffle', 'nearest+conv'):
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, NUM_FEAT, 3, 1, 1),
                                                      nn.LeakyReLU(inplace=True))
        if self.upsampler == 'pixelshuffle':
            self.upsample = Upsample(self.upscale, NUM_FEAT)
            self.conv_last = nn.Conv2d(NUM_FEAT, out_chans, 3, 1, 1)
        elif self.upsampler == 'pixelshuffledirect':
            self.upsample = nn.Sequential(nn.Conv2d(embed_dim, self.upscale ** 2 * out_chans, 3, 1, 1),
                                          nn.PixelShuffle(self.upscale))
        elif self.upsampler == 'nearest+conv':
            self.conv_up1 = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
            if self.upscale == 4:
                self.conv_up2 = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
            self.conv_hr = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
            self.conv_last = nn.Conv2d(NUM_FEAT, out_chans, 3, 1, 1)
        elif self.upsampler == '':
            self.conv_last = nn.Conv2d(embed_dim, out_chans, 3, 1, 1)

    def shift_mask(self, h: int, w: int, device: torch.device) -> torch.Tensor | None:
        """The (nW, N, N) shift mask for an h x w input, built once per size (None when no block shifts)."""
        if not self._shift:
            return None
        return self._masks.fetch((h, w, device), lambda: shifted_window_mask(h, w, self._window, self._shift, device))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The RSTBs between the shallow conv and ``conv_after_body`` (image in, image out)."""
        x_size = (x.shape[2], x.shape[3])
        mask = self.shift_mask(*x_size, x.device)
        x = self.patch_embed(x)
        if self.ape:
            x = x + self.absolute_pos_embed
        x = self.pos_drop(x)
        for layer in self.layers:
            x = layer(x, x_size, mask)
        return to_image(self.norm(x), x_size)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """Reflect-pad bottom/right to a multiple of ``window_size`` (the authors' check_image_size)."""
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % self.window_size, -w % self.window_size
        return F.pad(x, (0, pad_w, 0, pad_h), mode='reflect') if pad_h or pad_w else x

    def _reconstruct(self, features: torch.Tensor, scale: int | None) -> torch.Tensor:
        """Deep features (after the long skip) -> the normalised output image."""
        if self.upsampler == 'pixelshuffle':
            return self.conv_last(self.upsample(self.conv_before_upsample(features)))
        if self.upsampler == 'pixelshuffledirect':
            return self.upsample(features)
        x = self.conv_before_upsample(features)
        x = F.leaky_relu(self.conv_up1(F.interpolate(x, scale_factor=2, mode='nearest')), 0.2)
        if self.upscale == 4:
            x = F.leaky_relu(self.conv_up2(F.interpolate(x, scale_factor=2, mode='nearest')), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(x), 0.2))

    def _run(self, x: torch.Tensor, scale: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(normalised-back output, padded input, deep features), all on the padded size."""
        lr = self._pad(x)
        mean = self.mean.to(lr.dtype)
        x = (lr - mean) * self.img_range
        first = self.conv_first(x)
        features = self.conv_after_body(self.forward_features(first)) + first
        out = x + self.conv_last(features) if self.upsampler == '' else self._reconstruct(features, scale)
        return out / self.img_range + mean, lr, features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, padded, _ = self._run(x, None)
        # Cropped to the scale it was made at. The authors crop to ``upscale`` times the size: the same, but for
        # upsampler '' with upscale > 1, where theirs keeps the padding, and for a tail that IGConvSR swapped in.
        return crop_to_scale(out, padded, x.shape[-2:])


@ARCH_REGISTRY.register(meta=ArchSpec(scales=(), scale_arg=None, scale_in_forward=True, pad_multiple=8,
                                      tiling_exact=False, example_args={'window_size': 8}))
class SwinIRMS(SwinIR):
    """The IGConv repository's multi-scale SwinIR: SwinIR's constructor and the IGConv arguments, ``forward(x, scale)``.

    ``upsampler`` 'igconv': an IGConv (``upsample``) replaces the sub-pixel tail and maps the deep features to
    RGB at any integer scale. 'igconv+igsample' (IGConv+): ``upsample`` with ``geo_ensemble``, plus ``skip``, an
    IGSample (``implicit_dim // 2``, ``latent_layers // 2``) sampling the LR image, added after the mean shift;
    in training with ``return_skip`` the forward returns ``(image, skip)``. SwinIR's own upsamplers work as in
    SwinIR (the scale argument, if given, must be ``upscale``).
    """

    def __init__(self, img_size: int | list[int] | tuple[int, ...] = 64, patch_size: int | list[int] = 1,
                 in_chans: int = 3, embed_dim: int = 96, depths: list[int] | tuple[int, ...] = (6, 6, 6, 6),
                 num_heads: list[int] | tuple[int, ...] = (6, 6, 6, 6), window_size: int = 7, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, qk_scale: float | None = None, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.1, norm_layer: NormLayer = nn.LayerNorm,
                 ape: bool = False, patch_norm: bool = True, use_checkpoint: bool = False, upscale: int = 2,
                 img_range: float = 1.0,
                 upsampler: Literal['igconv', 'igconv+igsample', 'pixelshuffle', 'pixelshuffledirect', 'nearest+conv',
                                    ''] | None = 'igconv',
                 resi_connection: Literal['1conv', '3conv'] = '1conv', sk_kernel_size: int = 3, implicit_dim: int = 256,
                 latent_layers: int = 4, geo_ensemble: bool = True, return_skip: bool = True) -> None:
        require_positive(sk_kernel_size=sk_kernel_size, implicit_dim=implicit_dim)
        if sk_kernel_size % 2 == 0 or implicit_dim % 2:
            raise ValueError(f'sk_kernel_size must be odd and implicit_dim even, got {sk_kernel_size}, {implicit_dim}')
        if isinstance(latent_layers, bool) or not isinstance(latent_layers, int) or latent_layers < 0:
            raise ValueError(f'latent_layers must be an integer >= 0, got {latent_layers!r}')
        self._ig_args = (sk_kernel_size, implicit_dim, latent_layers, geo_ensemble)
        self.return_skip = return_skip
        super().__init__(img_size, patch_size, in_chans, embed_dim, depths, num_heads, window_size, mlp_ratio, qkv_bias,
                         qk_scale, drop_rate, attn_drop_rate, drop_path_rate, norm_layer, ape, patch_norm,
                         use_checkpoint, upscale, img_range, upsampler, resi_connection)  # type: ignore[arg-type]
        self.scale_in_forward = self.upsampler in IG_UPSAMPLERS

    @staticmethod
    def _check_upsampler(upsampler: str, upscale: int) -> None:
        if upsampler not in IG_UPSAMPLERS:
            SwinIR._check_upsampler(upsampler, upscale)

    def _build_tail(self, embed_dim: int, out_chans: int) -> None:
        if self.upsampler not in IG_UPSAMPLERS:
            super()._build_tail(embed_dim, out_chans)
            return
        if out_chans != 3:
            raise ValueError(f'IGConv generates RGB kernels: in_chans must be 3, got {out_chans}')
        kernel_size, implicit_dim, latent_layers, geo_ensemble = self._ig_args
        self.upsample = IGConv(embed_dim, kernel_size, implicit_dim, latent_layers, geo_ensemble)
        if self.upsampler == 'igconv+igsample':
            self.skip = IGSample(embed_dim, kernel_size, implicit_dim // 2, latent_layers // 2, geo_ensemble)

    def _reconstruct(self, features: torch.Tensor, scale: int | None) -> torch.Tensor:
        if self.upsampler in IG_UPSAMPLERS:
            assert scale is not None
            return self.upsample(features, scale)
        return super()._reconstruct(features, scale)

    def forward(self, x: torch.Tensor, scale: int | None = None  # type: ignore[override]
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.scale_in_forward and scale is None:
            raise ValueError(f"SwinIRMS with upsampler '{self.upsampler}' needs the scale: forward(x, scale)")
        if not self.scale_in_forward and scale not in (None, self.upscale):
            raise ValueError(f"SwinIRMS with upsampler '{self.upsampler}' upsamples x{self.upscale} only, not x{scale}")
        out, padded, features = self._run(x, scale)
        if self.upsampler != 'igconv+igsample':
            return crop_to_scale(out, padded, x.shape[-2:])
        assert scale is not None
        skip = crop_to_scale(self.skip(padded, features, scale), padded, x.shape[-2:])
        return add_skip(crop_to_scale(out, padded, x.shape[-2:]), skip, self.training, self.return_skip)


# Parameter counts of the authors' networks at the released files' sizes (counted from their code; these
# include the relative-position bias tables, which the paper's counts leave out: see tests/test_swinir.py).
@ARCH_REGISTRY.register(meta=ArchSpec(scales=(2, 3, 4, 8), pad_multiple=8, tiling_exact=False,
                                      subpixel_tail=('conv_before_upsample', 'upsample', 'conv_last'),
                                      params={2: 11752487, 3: 11937127, 4: 11900199, 8: 12047911}))
def SwinIR_M(upscale: int = 4, in_chans: int = 3, img_size: int = 64) -> SwinIR:
    """Classical SR SwinIR (001_classicalSR_*_SwinIR-M_x*.pth): 180 channels, 6 RSTBs of 6 blocks, 6 heads,
    window 8, MLP ratio 2, '1conv', 'pixelshuffle'. ``img_size`` 64 fits the DF2K_s64w8 files, 48 the
    DIV2K_s48w8 ones (only their ``attn_mask`` buffers differ)."""
    return SwinIR(img_size=img_size, in_chans=in_chans, embed_dim=180, depths=[6] * 6, num_heads=[6] * 6,
                  window_size=8, mlp_ratio=2.0, upscale=upscale, img_range=1.0, upsampler='pixelshuffle',
                  resi_connection='1conv')


@ARCH_REGISTRY.register(meta=ArchSpec(scales=(2, 3, 4), pad_multiple=8, tiling_exact=False,
                                      subpixel_tail=('upsample',), params={2: 910152, 3: 918267, 4: 929628}))
def SwinIR_S(upscale: int = 2, in_chans: int = 3, img_size: int = 64) -> SwinIR:
    """Lightweight SR SwinIR (002_lightweightSR_DIV2K_s64w8_SwinIR-S_x*.pth): 60 channels, 4 RSTBs of 6 blocks,
    6 heads, window 8, MLP ratio 2, '1conv', 'pixelshuffledirect'."""
    return SwinIR(img_size=img_size, in_chans=in_chans, embed_dim=60, depths=[6] * 4, num_heads=[6] * 4,
                  window_size=8, mlp_ratio=2.0, upscale=upscale, img_range=1.0, upsampler='pixelshuffledirect',
                  resi_connection='1conv')
