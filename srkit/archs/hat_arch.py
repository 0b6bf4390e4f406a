"""HAT: Hybrid Attention Transformer (Chen et al., "Activating More Pixels in Image Super-Resolution
Transformer", CVPR 2023), and its IGConv / IGConv+ forms (Lee et al., arXiv 2408.09674).

Constructor arguments, parameter and buffer names are those of the authors' ``HAT`` (XPixelGroup/HAT
hat/archs/hat_arch.py), so the released checkpoints (HAT-S_SRx4.pth, HAT_SRx4.pth,
HAT-L_SRx4_ImageNet-pretrain.pth ...) load strictly: every name and shape is the one the authors' code builds
(tests/fixtures/hat/official_keys.json.gz), including the two relative-position index buffers
``relative_position_index_SA`` / ``relative_position_index_OCA``, persistent here too. The IGConv
authors' copy of the class (dslisleedh/IGConv igconv/archs/hat_arch.py) adds ``upsampler: 'igconv'`` and
``'igconv+igsample'`` with ``sk_kernel_size``, ``implicit_dim``, ``latent_layers``, ``geo_ensemble`` and
``return_skip``; this class takes those as well and is then called as ``net(x, scale)``.

Each residual hybrid attention group (RHAG) is a stack of hybrid attention blocks (window self-attention,
shifted every other block, plus a channel-attention conv branch scaled by ``conv_scale``) and one
overlapping cross-attention block (OCAB: queries from a window, keys and values from a window enlarged by
``overlap_ratio``). Differences from the authors' code, none of which changes a trained model's output:

- attention runs through ``F.scaled_dot_product_attention`` with the relative-position bias (and the
  shifted-window mask) as ``attn_mask`` (tests/test_hat.py checks it against the explicit softmax);
- the shifted-window mask is computed once per input size and kept, the relative-position bias once per
  weight version when no gradient is recorded (in training it is gathered each forward, for its gradient);
- an input whose sides are not multiples of ``window_size`` is padded (reflect, as the authors' test code
  pads) and the output cropped, where the authors' network fails;
- ``upsampler: ''`` (the authors' default, which returns the input unchanged) is refused: name one.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from srkit.archs.edsr_arch import DIV2K_RGB_MEAN, Upsample
from srkit.archs.igconv_arch import IGConv, IGSample
from srkit.archs.mma_arch import CAB
from srkit.archs.spec import ArchSpec, require_positive
from srkit.archs.window_ops import (
    IG_UPSAMPLERS,
    MASK_CACHE_SIZE,
    BiasTable,
    Mlp,
    PatchEmbed,
    ShiftMaskCache,
    add_skip,
    crop_to_scale,
    init_weights,
    pad_to_window,
    to_image,
    to_tokens,
    window_coords,
    window_partition,
    window_reverse,
)
from srkit.archs.window_ops import relative_position_index as relative_index_sa
from srkit.archs.window_ops import shifted_window_mask as shift_window_mask
from srkit.core.registry import ARCH_REGISTRY

__all__ = ['HAB', 'HAT', 'HAT_IGConv', 'HAT_IGConvPlus', 'HAT_L', 'HAT_S', 'OCAB', 'RHAG', 'WindowAttention',
           'relative_index_oca', 'relative_index_sa', 'shift_window_mask']

Upsampler = Literal['', 'pixelshuffle', 'igconv', 'igconv+igsample']

# The sizes of the authors' option files (options/test/HAT-S_SRx4.yml, HAT_SRx4.yml, HAT-L_SRx4_...yml).
_COMMON: dict[str, Any] = {'img_size': 64, 'window_size': 16, 'conv_scale': 0.01, 'overlap_ratio': 0.5,
                           'mlp_ratio': 2.0, 'img_range': 1.0, 'resi_connection': '1conv'}
HAT_S_SIZE: dict[str, Any] = {**_COMMON, 'embed_dim': 144, 'depths': (6,) * 6, 'num_heads': (6,) * 6,
                              'compress_ratio': 24, 'squeeze_factor': 24}
HAT_SIZE: dict[str, Any] = {**_COMMON, 'embed_dim': 180, 'depths': (6,) * 6, 'num_heads': (6,) * 6,
                            'compress_ratio': 3, 'squeeze_factor': 30}
HAT_L_SIZE: dict[str, Any] = {**HAT_SIZE, 'depths': (6,) * 12, 'num_heads': (6,) * 12}

# Channel attention pools the whole image: tiling changes the output. Autocast fp16 and channels_last are
# checked in tests/test_hat.py and by the registry sweep. pad_multiple: the window of every released model
# and option file (16); the network pads any other size to its own window itself.
HAT_SPEC = ArchSpec(scales=(2, 3, 4, 8), scale_arg='upscale', pad_multiple=16, tiling_exact=False,
                    subpixel_tail=('conv_before_upsample', 'upsample', 'conv_last'))
HAT_IG_SPEC = ArchSpec(scales=(), scale_arg=None, scale_in_forward=True, pad_multiple=16, tiling_exact=False)


def relative_index_oca(window_size: int, overlap_size: int) -> Tensor:
    """(w^2, o^2) index into the (w+o-1)^2 bias table for a w x w query window and its o x o key window.

    The authors' offset (w - o + 1) leaves some indices negative; the table lookup wraps them around as
    Python indexing does, which still gives every relative offset its own entry (the range spans exactly
    the table). Released weights were trained with these indices, so they are kept as they are.
    """
    offset = window_size - overlap_size + 1
    rel = window_coords(overlap_size)[:, None, :] - window_coords(window_size)[:, :, None] + offset
    return rel[0] * (window_size + overlap_size - 1) + rel[1]


def _drop_path(x: Tensor, p: float, training: bool) -> Tensor:
    """Stochastic depth: zero the branch of a random subset of samples, rescale the others."""
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1 - p)
    return x * keep / (1 - p)


class WindowAttention(BiasTable):
    """Multi-head self-attention inside each window, with a learnt relative-position bias."""

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True,
                 qk_scale: float | None = None, attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self._init_table((2 * window_size - 1) ** 2, num_heads)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, rpi: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (b * windows, n, c); mask: (windows, n, n) for shifted windows, None otherwise."""
        b_, n, c = x.shape
        heads, d = self.num_heads, c // self.num_heads
        q, k, v = self.qkv(x).view(b_, n, 3, heads, d).permute(2, 0, 3, 1, 4).unbind(0)  # (b_, heads, n, d)
        bias = self.attention_bias(rpi)
        if mask is not None:  # fold the windows into the head axis so that one mask serves the batch
            windows = mask.shape[0]
            bias = (bias.unsqueeze(0) + mask.unsqueeze(1)).flatten(0, 1)
            q, k, v = (t.reshape(b_ // windows, windows * heads, n, d) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=self.scale,
                                             dropout_p=self.attn_drop if self.training else 0.0)
        out = out.reshape(b_, heads, n, d).transpose(1, 2).reshape(b_, n, c)
        return self.proj_drop(self.proj(out))


class HAB(nn.Module):
    """Hybrid attention block: (shifted) window attention plus a scaled channel-attention conv branch on
    the same normalised input, then the MLP."""

    def __init__(self, dim: int, input_resolution: tuple[int, int], num_heads: int, window_size: int = 7,
                 shift_size: int = 0, compress_ratio: int = 3, squeeze_factor: int = 30, conv_scale: float = 0.01,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, qk_scale: float | None = None, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0,
                 norm_layer: Callable[[int], nn.Module] = nn.LayerNorm) -> None:
        super().__init__()
        if min(input_resolution) <= window_size:  # the authors' rule: one window covers the training patch
            shift_size, window_size = 0, min(input_resolution)
        self.window_size, self.shift_size = window_size, shift_size
        self.conv_scale, self.drop_path = conv_scale, drop_path
        self.norm1 = norm_layer(dim)
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias, qk_scale, attn_drop, drop)
        self.conv_block = CAB(dim, compress_ratio, squeeze_factor)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: Tensor, x_size: tuple[int, int], rpi_sa: Tensor, attn_mask: Tensor | None) -> Tensor:
        h, w = x_size
        b, _, c = x.shape
        ws, shift = self.window_size, self.shift_size
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        conv_x = self.conv_block(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).reshape(b, h * w, c)
        if shift:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
        windows = self.attn(window_partition(x, ws), rpi_sa, attn_mask if shift else None)
        x = window_reverse(windows, ws, h, w)
        if shift:
            x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
        x = shortcut + _drop_path(x.reshape(b, h * w, c), self.drop_path, self.training) + conv_x * self.conv_scale
        return x + _drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)


class OCAB(BiasTable):
    """Overlapping cross-attention block: queries from each window, keys and values from the window
    enlarged by ``overlap_ratio`` (zero-padded at the image border), then the MLP."""

    def __init__(self, dim: int, input_resolution: tuple[int, int], window_size: int, overlap_ratio: float,
                 num_heads: int, qkv_bias: bool = True, qk_scale: float | None = None, mlp_ratio: float = 2.0,
                 norm_layer: Callable[[int], nn.Module] = nn.LayerNorm) -> None:
        super().__init__()
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.overlap_win_size = int(window_size * overlap_ratio) + window_size
        self.norm1 = norm_layer(dim)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self._init_table((window_size + self.overlap_win_size - 1) ** 2, num_heads)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, x_size: tuple[int, int], rpi: Tensor) -> Tensor:
        h, w = x_size
        b, _, c = x.shape
        ws, ows, heads, d = self.window_size, self.overlap_win_size, self.num_heads, c // self.num_heads
        shortcut = x
        qkv = self.qkv(self.norm1(x)).view(b, h, w, 3 * c)
        q = window_partition(qkv[..., :c], ws)  # (b * windows, ws^2, c)
        kv = F.unfold(qkv[..., c:].permute(0, 3, 1, 2), ows, padding=(ows - ws) // 2, stride=ws)
        k, v = kv.view(b, 2, c, ows * ows, -1).permute(1, 0, 4, 3, 2).reshape(2, -1, ows * ows, c)
        q, k, v = (t.view(t.shape[0], t.shape[1], heads, d).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.attention_bias(rpi).to(q.dtype),
                                             scale=self.scale)
        out = window_reverse(out.transpose(1, 2).reshape(-1, ws * ws, c), ws, h, w).view(b, h * w, c)
        x = self.proj(out) + shortcut
        return x + self.mlp(self.norm2(x))


class AttenBlocks(nn.Module):
    """The blocks of one RHAG: ``depth`` HABs (every other one shifted by half a window), then an OCAB."""

    def __init__(self, dim: int, input_resolution: tuple[int, int], depth: int, num_heads: int, window_size: int,
                 compress_ratio: int, squeeze_factor: int, conv_scale: float, overlap_ratio: float,
                 mlp_ratio: float, qkv_bias: bool, qk_scale: float | None, drop: float, attn_drop: float,
                 drop_path: list[float], norm_layer: Callable[[int], nn.Module], use_checkpoint: bool) -> None:
        super().__init__()
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(
            HAB(dim, input_resolution, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2,
                compress_ratio, squeeze_factor, conv_scale, mlp_ratio, qkv_bias, qk_scale, drop, attn_drop,
                drop_path[i], norm_layer) for i in range(depth))
        self.overlap_attn = OCAB(dim, input_resolution, window_size, overlap_ratio, num_heads, qkv_bias, qk_scale,
                                 mlp_ratio, norm_layer)

    def forward(self, x: Tensor, x_size: tuple[int, int], rpi_sa: Tensor, rpi_oca: Tensor,
                attn_mask: Tensor | None) -> Tensor:
        for blk in self.blocks:
            if self.use_checkpoint and self.training and torch.is_grad_enabled():
                x = checkpoint(blk, x, x_size, rpi_sa, attn_mask, use_reentrant=False)
            else:
                x = blk(x, x_size, rpi_sa, attn_mask)
        return self.overlap_attn(x, x_size, rpi_oca)


class RHAG(nn.Module):
    """Residual hybrid attention group: the attention blocks, a conv on the image layout, a skip."""

    def __init__(self, dim: int, resi_connection: str, **blocks: Any) -> None:
        super().__init__()
        self.residual_group = AttenBlocks(dim=dim, **blocks)
        self.conv: nn.Module = nn.Conv2d(dim, dim, 3, 1, 1) if resi_connection == '1conv' else nn.Identity()

    def forward(self, x: Tensor, x_size: tuple[int, int], rpi_sa: Tensor, rpi_oca: Tensor,
                attn_mask: Tensor | None) -> Tensor:
        out = self.residual_group(x, x_size, rpi_sa, rpi_oca, attn_mask)
        return to_tokens(self.conv(to_image(out, x_size))) + x


@ARCH_REGISTRY.register(meta=replace(HAT_SPEC, example_args={'upsampler': 'pixelshuffle', **HAT_SIZE},
                                     params={2: 20624795, 3: 20809435, 4: 20772507}))
class HAT(nn.Module):
    """The authors' ``HAT``: their arguments and defaults, and the IGConv authors' upsamplers.

    ``upsampler``: ``pixelshuffle`` (classical SR at ``upscale``; ``forward(x)``), ``igconv`` or
    ``igconv+igsample`` (any integer scale; ``forward(x, scale)``; ``upscale`` unused, as in their code).
    The paper's HAT is this class with the arguments of the authors' HAT_SRx{2,3,4}.yml (the spec's
    example_args); HAT_S and HAT_L are its other published sizes. ``use_checkpoint`` recomputes each block
    in the backward pass (the authors' code accepts it and ignores it; the output is the same).
    """

    mean: Tensor
    relative_position_index_SA: Tensor
    relative_position_index_OCA: Tensor

    def __init__(self, img_size: int | tuple[int, int] | list[int] = 64, patch_size: int = 1, in_chans: int = 3,
                 embed_dim: int = 96, depths: tuple[int, ...] | list[int] = (6, 6, 6, 6),
                 num_heads: tuple[int, ...] | list[int] = (6, 6, 6, 6), window_size: int = 7,
                 compress_ratio: int = 3, squeeze_factor: int = 30, conv_scale: float = 0.01,
                 overlap_ratio: float = 0.5, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 qk_scale: float | None = None, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.1, norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
                 ape: bool = False, patch_norm: bool = True, use_checkpoint: bool = False, upscale: int = 2,
                 img_range: float = 1.0, upsampler: Upsampler = '',
                 resi_connection: Literal['1conv', 'identity'] = '1conv', sk_kernel_size: int = 3,
                 implicit_dim: int = 256, latent_layers: int = 4, geo_ensemble: bool = True,
                 return_skip: bool = True) -> None:
        super().__init__()
        sizes = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        require_positive(patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim, window_size=window_size,
                         compress_ratio=compress_ratio, squeeze_factor=squeeze_factor, upscale=upscale,
                         sk_kernel_size=sk_kernel_size, implicit_dim=implicit_dim, latent_layers=latent_layers,
                         **{f'img_size[{i}]': s for i, s in enumerate(sizes)},
                         **{f'depths[{i}]': v for i, v in enumerate(depths)},
                         **{f'num_heads[{i}]': v for i, v in enumerate(num_heads)})
        resolution = (sizes[0] // patch_size, sizes[1] // patch_size)
        _check_sizes(embed_dim, depths, num_heads, window_size, compress_ratio, squeeze_factor, resolution,
                     upsampler, upscale, in_chans)
        self.window_size, self.shift_size, self.overlap_ratio = window_size, window_size // 2, overlap_ratio
        self.img_range, self.upscale, self.upsampler, self.embed_dim = img_range, upscale, upsampler, embed_dim
        self.scale_in_forward = upsampler in IG_UPSAMPLERS
        self.shifts = min(resolution) > window_size  # else HAB drops the shift (the authors' rule)
        mean = DIV2K_RGB_MEAN if in_chans == 3 else (0.0,)
        self.register_buffer('mean', torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        overlap = int(window_size * overlap_ratio) + window_size
        self.register_buffer('relative_position_index_SA', relative_index_sa(window_size))
        self.register_buffer('relative_position_index_OCA', relative_index_oca(window_size, overlap))
        self._masks = ShiftMaskCache(MASK_CACHE_SIZE)

        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(embed_dim, norm_layer if patch_norm else None)
        if ape:
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, resolution[0] * resolution[1], embed_dim))
            nn.init.trunc_normal_(self.absolute_pos_embed, std=0.02)
        self.ape = ape
        self.pos_drop = nn.Dropout(drop_rate)
        rates = torch.linspace(0, drop_path_rate, sum(depths), device='cpu').tolist()
        starts = [sum(depths[:i]) for i in range(len(depths) + 1)]
        self.layers = nn.ModuleList(
            RHAG(embed_dim, resi_connection, input_resolution=resolution, depth=depth, num_heads=heads,
                 window_size=window_size, compress_ratio=compress_ratio, squeeze_factor=squeeze_factor,
                 conv_scale=conv_scale, overlap_ratio=overlap_ratio, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                 qk_scale=qk_scale, drop=drop_rate, attn_drop=attn_drop_rate,
                 drop_path=rates[starts[i]:starts[i + 1]], norm_layer=norm_layer, use_checkpoint=use_checkpoint)
            for i, (depth, heads) in enumerate(zip(depths, num_heads)))
        self.norm = norm_layer(embed_dim)
        self.conv_after_body: nn.Module = (nn.Conv2d(embed_dim, embed_dim, 3, 1, 1) if resi_connection == '1conv'
                                           else nn.Identity())
        self.apply(init_weights)  # before the tail: the IG modules keep their own initialisation

        if upsampler == 'pixelshuffle':
            num_feat = 64
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, num_feat, 3, 1, 1),
                                                      nn.LeakyReLU(inplace=True))
            self.upsample: nn.Module = Upsample(upscale, num_feat)
            self.conv_last = nn.Conv2d(num_feat, in_chans, 3, 1, 1)
        else:
            self.upsample = IGConv(embed_dim, sk_kernel_size, implicit_dim, latent_layers, geo_ensemble)
            if upsampler == 'igconv+igsample':
                self.skip = IGSample(embed_dim, sk_kernel_size, implicit_dim // 2, latent_layers // 2, geo_ensemble)
                self.return_skip = return_skip

    def _shift_mask(self, h: int, w: int, device: torch.device) -> Tensor | None:
        """The shifted-window mask for an h x w input, computed once per size (the last few are kept)."""
        if not self.shifts:
            return None
        return self._masks.fetch((h, w, device),
                                 lambda: shift_window_mask(h, w, self.window_size, self.shift_size).to(device))

    def forward_features(self, x: Tensor) -> Tensor:
        """The deep features: RHAGs over the tokens, then the final norm (image layout in and out)."""
        x_size = (x.shape[2], x.shape[3])
        mask = self._shift_mask(*x_size, x.device)
        x = self.patch_embed(x)
        if self.ape:
            x = x + self.absolute_pos_embed
        x = self.pos_drop(x)
        for layer in self.layers:
            x = layer(x, x_size, self.relative_position_index_SA, self.relative_position_index_OCA, mask)
        return to_image(self.norm(x), x_size)

    def forward(self, x: Tensor, scale: int | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """``net(x)`` (pixelshuffle) or ``net(x, scale)`` (IGConv forms); any input size (padded, cropped).
        IGConv+ in training with ``return_skip`` returns ``(image, skip)`` as the authors' code does."""
        h, w = x.shape[-2:]
        if self.scale_in_forward:
            if scale is None:
                raise ValueError(f'HAT with upsampler {self.upsampler!r} needs the scale: net(x, scale).')
        elif scale not in (None, self.upscale):
            raise ValueError(f'This HAT upsamples x{self.upscale}, not x{scale}.')
        lr = pad_to_window(x, self.window_size)
        feat = self.conv_first((lr - self.mean) * self.img_range)
        feat = self.conv_after_body(self.forward_features(feat)) + feat
        if self.scale_in_forward:
            out = self.upsample(feat, scale)
        else:
            out = self.conv_last(self.upsample(self.conv_before_upsample(feat)))
        out = crop_to_scale(out / self.img_range + self.mean, lr, (h, w))
        if self.upsampler != 'igconv+igsample':
            return out
        return add_skip(out, crop_to_scale(self.skip(lr, feat, scale), lr, (h, w)), self.training, self.return_skip)


def _check_sizes(embed_dim: int, depths: tuple[int, ...] | list[int], num_heads: tuple[int, ...] | list[int],
                 window_size: int, compress_ratio: int, squeeze_factor: int, resolution: tuple[int, int],
                 upsampler: str, upscale: int, in_chans: int) -> None:
    """Refuse what the authors' code would build and then fail on (or silently not super-resolve)."""
    if upsampler == '':
        raise ValueError("upsampler '' (the authors' default) returns the input unchanged; choose 'pixelshuffle', "
                         "'igconv' or 'igconv+igsample'")
    if upsampler == 'pixelshuffle' and upscale & (upscale - 1) and upscale != 3:
        raise ValueError(f'upscale {upscale}: the pixelshuffle upsampler supports 2^n and 3')
    if upsampler in IG_UPSAMPLERS and in_chans != 3:
        raise ValueError(f'in_chans {in_chans}: the IGConv upsamplers output RGB, so in_chans must be 3')
    if not depths or len(depths) != len(num_heads):
        raise ValueError(f'depths {list(depths)} and num_heads {list(num_heads)} must be non-empty and as long')
    if any(embed_dim % heads for heads in num_heads):
        raise ValueError(f'embed_dim {embed_dim} must be a multiple of every num_heads {list(num_heads)}')
    if embed_dim < compress_ratio or embed_dim < squeeze_factor:
        raise ValueError(f'embed_dim {embed_dim} must be at least compress_ratio ({compress_ratio}) and '
                         f'squeeze_factor ({squeeze_factor})')
    if min(resolution) < window_size:
        raise ValueError(f'img_size // patch_size {resolution} is smaller than window_size {window_size}')


@ARCH_REGISTRY.register(meta=replace(HAT_SPEC, scales=(2, 3, 4), params={2: 9473471, 3: 9658111, 4: 9621183}))
def HAT_S(upscale: int = 4) -> HAT:
    """HAT-S (9.6 M parameters at x4): the authors' HAT-S_SRx{2,3,4}.yml."""
    return HAT(upscale=upscale, upsampler='pixelshuffle', **HAT_S_SIZE)


@ARCH_REGISTRY.register(meta=replace(HAT_SPEC, scales=(2, 3, 4), params={2: 40698863, 3: 40883503, 4: 40846575}))
def HAT_L(upscale: int = 4) -> HAT:
    """HAT-L (40.8 M parameters at x4, 12 groups): the authors' HAT-L_SRx{2,3,4}_ImageNet-pretrain.yml."""
    return HAT(upscale=upscale, upsampler='pixelshuffle', **HAT_L_SIZE)


@ARCH_REGISTRY.register(meta=replace(HAT_IG_SPEC, params={s: 21465243 for s in (2, 3, 4)}))
def HAT_IGConv() -> HAT:
    """HAT with IGConv (no geometric ensemble, no IGSample): ``net(x, scale)`` for any integer scale."""
    return HAT(upsampler='igconv', geo_ensemble=False, **HAT_SIZE)


@ARCH_REGISTRY.register(meta=replace(HAT_IG_SPEC, params={s: 22362523 for s in (2, 3, 4)}))
def HAT_IGConvPlus(return_skip: bool = False) -> HAT:
    """HAT with IGConv+ as the IGConv authors' HAT_IGPlus option files build it (return_skip false there)."""
    return HAT(upsampler='igconv+igsample', geo_ensemble=True, return_skip=return_skip,
               **HAT_SIZE)
