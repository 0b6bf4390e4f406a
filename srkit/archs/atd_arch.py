"""ATD: Adaptive Token Dictionary (Zhang et al., "Transcending the Limit of Local Window: Advanced
Super-Resolution Transformer with Adaptive Token Dictionary", CVPR 2024), and its IGConv+ form (Lee et al.,
arXiv 2408.09674).

Constructor arguments (with their defaults), parameter and buffer names are those of the authors' ``ATD``
(LabShuHangGU/Adaptive-Token-Dictionary basicsr/archs/atd_arch.py), so their released files
(001..003_ATD_SRx{2,3,4}_finetune.pth, 101_ATD_light_SRx2_scratch.pth, 102/103_ATD_light_SRx{3,4}_finetune.pth)
load strictly; ``relative_position_index_SA`` is a persistent buffer there and here, the mean is not. The IGConv
authors' copy (dslisleedh/IGConv igconv/archs/atd_arch.py) adds ``upsampler: 'igconv'`` / ``'igconv+igsample'``
with ``sk_kernel_size``, ``implicit_dim``, ``latent_layers``, ``geo_ensemble``, ``max_s`` and ``return_skip``;
this class takes those too and is then called as ``net(x, scale)``.

Each transformer layer sums three attentions over the normalised tokens: window self-attention (shifted every
other layer), cross-attention to a learnt token dictionary (ATD-CA), and self-attention within categories of
tokens (AC-MSA): every token is assigned the dictionary entry it attends to most, the tokens are sorted by it
and cut into groups of ``category_size``. The dictionary is then refined from the image's tokens (all but the
last layer of a block). Both the categories and the refinement depend on the whole image, so tiled inference
is not exact.

Differences from the authors' code, none of which changes an output:

- window and category attention run through ``F.scaled_dot_product_attention`` (the relative-position bias
  plus the shift mask as ``attn_mask``; tests/test_atd.py checks it against the explicit softmax); ATD-CA
  stays explicit, its attention map is needed for the categories;
- the shifted-window mask is computed once per input size and kept; the relative-position bias once per
  weight version when no gradient is recorded (with autograd it is gathered each forward, for its gradient);
- padding to a multiple of ``window_size`` (bottom/right; the output is cropped back): the ATD authors'
  forward appends mirrored copies (edge pixel repeated), which this one does too (repeating the mirror where
  one copy is not enough, where theirs fails). The IGConv authors' test code reflect-pads before calling
  their network (edge pixel not repeated; their network then finds nothing to pad, and their training crops
  are multiples), so with an IGConv upsampler this forward reflect-pads: each pipeline's output on any size;
- ``use_checkpoint`` uses torch's activation checkpointing for the first four blocks (the authors' fairscale
  ``checkpoint_wrapper``): memory, not values;
- with ``upsampler: 'igconv'`` the output is cropped to ``scale`` times the input, where the IGConv
  authors' crops to ``upscale`` times (wrong for any other scale; no option file of theirs uses 'igconv');
- ``upsampler: ''`` (the authors' default, whose forward fails) is refused: name one.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from srkit.archs.edsr_arch import DIV2K_RGB_MEAN, Upsample
from srkit.archs.igconv_arch import IGConv, IGSample
from srkit.archs.spec import ArchSpec, require_positive
from srkit.archs.window_ops import (
    IG_UPSAMPLERS,
    MASK_CACHE_SIZE,
    BiasTable,
    PatchEmbed,
    ShiftMaskCache,
    add_skip,
    crop_to_scale,
    init_weights,
    relative_position_index,
    resi_conv,
    shifted_window_mask,
    to_image,
    to_tokens,
    window_partition,
    window_reverse,
)
from srkit.core.registry import ARCH_REGISTRY

__all__ = ['ATD', 'ATDB', 'ATDTransformerLayer', 'ATD_CA', 'ATD_IGConvPlus', 'ATD_light', 'AC_MSA', 'BasicBlock',
           'WindowAttention', 'reflect_pad', 'relative_position_index', 'shift_window_mask', 'symmetric_pad']

Upsampler = Literal['', 'pixelshuffle', 'pixelshuffledirect', 'nearest+conv', 'igconv', 'igconv+igsample']
NUM_FEAT = 64  # the authors' fixed width of the 'pixelshuffle' and 'nearest+conv' reconstruction convs
CHECKPOINTED_BLOCKS = 4  # the authors' idx_checkpoint: use_checkpoint covers the blocks before it

# The sizes of the authors' option files: options/test/00{1,2,3}_ATD_SRx{2,3,4}_finetune.yml,
# 10{1,2,3}_ATD_light_SRx{2,3,4}_*.yml, and IGConv's options/{train,test}/ATD/*.yaml (ATD's, IGConv+ tail).
ATD_SIZE: dict[str, Any] = {'img_size': 64, 'embed_dim': 210, 'depths': (6,) * 6, 'num_heads': (6,) * 6,
                            'window_size': 16, 'category_size': 256, 'num_tokens': 128, 'reducted_dim': 20,
                            'convffn_kernel_size': 5, 'img_range': 1.0, 'mlp_ratio': 2.0,
                            'upsampler': 'pixelshuffle', 'resi_connection': '1conv'}
ATD_LIGHT_SIZE: dict[str, Any] = {'img_size': 64, 'embed_dim': 48, 'depths': (6,) * 4, 'num_heads': (4,) * 4,
                                  'window_size': 16, 'category_size': 128, 'num_tokens': 64, 'reducted_dim': 8,
                                  'convffn_kernel_size': 7, 'img_range': 1.0, 'mlp_ratio': 1.0,
                                  'upsampler': 'pixelshuffledirect', 'resi_connection': '1conv'}

# Categories and the dictionary refinement see the whole image: tiling is not exact. pad_multiple 1: the
# network pads any input itself, as each authors' pipeline does (see ATD.forward), so srkit's predict gives
# their outputs on every size.
ATD_SPEC = ArchSpec(scales=(2, 3, 4, 8), scale_arg='upscale', tiling_exact=False,
                    subpixel_tail=('conv_before_upsample', 'upsample', 'conv_last'))
IG_SPEC = ArchSpec(scales=(), scale_arg=None, scale_in_forward=True, tiling_exact=False)

NormLayer = Callable[[int], nn.Module]
Size = tuple[int, int]


def symmetric_pad(x: Tensor, h: int, w: int) -> Tensor:
    """``x`` (..., H, W) extended bottom/right to (h, w) with mirrored copies, edge pixel included.

    One copy is the ATD authors' padding (``cat([x, flip(x)])[:h]``); a side shorter than half its target
    gets further copies (x, flip(x), x, ...) where the authors' code fails.
    """
    for dim, size in ((-2, h), (-1, w)):
        while x.shape[dim] < size:
            x = torch.cat([x, x.flip(dim)], dim)
        x = x.narrow(dim, 0, size)
    return x


def reflect_pad(x: Tensor, h: int, w: int) -> Tensor:
    """``x`` extended bottom/right to (h, w) by reflection, edge pixel not repeated (the IGConv authors' test
    code); symmetric copies where a side is too short to reflect, where theirs fails."""
    pad_h, pad_w = h - x.shape[-2], w - x.shape[-1]
    if pad_h >= x.shape[-2] or pad_w >= x.shape[-1]:
        return symmetric_pad(x, h, w)
    return F.pad(x, (0, pad_w, 0, pad_h), mode='reflect') if pad_h or pad_w else x


def shift_window_mask(h: int, w: int, window_size: int) -> Tensor:
    """(windows, n, n) additive mask of the windows shifted by half a window (ATD always shifts by half)."""
    return shifted_window_mask(h, w, window_size, window_size // 2)


class _DWConv(nn.Module):
    """Depthwise conv + GELU over the token grid (the authors' ``dwconv``)."""

    def __init__(self, hidden: int, kernel_size: int) -> None:
        super().__init__()
        self.depthwise_conv = nn.Sequential(
            nn.Conv2d(hidden, hidden, kernel_size, 1, (kernel_size - 1) // 2, groups=hidden), nn.GELU())

    def forward(self, x: Tensor, x_size: Size) -> Tensor:
        return to_tokens(self.depthwise_conv(to_image(x, x_size)))


class ConvFFN(nn.Module):
    """fc1 - GELU - (+ depthwise conv branch) - fc2: the MLP with a local spatial path."""

    def __init__(self, dim: int, hidden: int, kernel_size: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.dwconv = _DWConv(hidden, kernel_size)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, x_size: Size) -> Tensor:
        x = self.act(self.fc1(x))
        return self.fc2(x + self.dwconv(x, x_size))


class WindowAttention(BiasTable):
    """Multi-head self-attention inside each window, with a learnt relative-position bias (queries, keys and
    values come from the layer's shared ``wqkv``).

    Without autograd the gathered bias is kept until the table or the index changes (their storage and
    version counters), so inference gathers it once; with autograd it is gathered every call.
    """

    def __init__(self, dim: int, window_size: int, num_heads: int) -> None:
        super().__init__()
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        self.scale = (dim // num_heads) ** -0.5
        self._init_table((2 * window_size - 1) ** 2, num_heads, draw=False)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, qkv: Tensor, rpi: Tensor, mask: Tensor | None = None) -> Tensor:
        """qkv: (b * windows, n, 3c); mask: (windows, n, n) for shifted windows, None otherwise."""
        b_, n, c3 = qkv.shape
        heads, c = self.num_heads, c3 // 3
        q, k, v = qkv.view(b_, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4).unbind(0)  # (b_, heads, n, d)
        bias = self.attention_bias(rpi)
        if mask is not None:  # windows as a batch axis of their own, so that one mask serves every image
            windows = mask.shape[0]
            bias = bias.unsqueeze(0) + mask.unsqueeze(1)
            q, k, v = (t.unflatten(0, (b_ // windows, windows)) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=self.scale)
        return self.proj(out.reshape(b_, heads, n, -1).transpose(1, 2).reshape(b_, n, c))


class ATD_CA(nn.Module):
    """Token-dictionary cross-attention: every token attends to the ``num_tokens`` dictionary entries.

    Cosine similarity of reduced queries and keys, sharpened by ``1 + scale * log(num_tokens)`` with a learnt
    ``scale`` per entry (clamped to [0, 1]). Returns the output and the attention map, which AC-MSA uses to
    categorise the tokens and the layer to refine the dictionary.
    """

    def __init__(self, dim: int, num_tokens: int = 64, reducted_dim: int = 10, qkv_bias: bool = True) -> None:
        super().__init__()
        self.dim, self.num_tokens, self.rc = dim, num_tokens, reducted_dim
        self.wq = nn.Linear(dim, reducted_dim, bias=qkv_bias)
        self.wk = nn.Linear(dim, reducted_dim, bias=qkv_bias)
        self.wv = nn.Linear(dim, dim, bias=qkv_bias)
        self.scale = nn.Parameter(torch.ones(num_tokens) * 0.5)

    def forward(self, x: Tensor, td: Tensor) -> tuple[Tensor, Tensor]:
        """x: (b, n, c) tokens, td: (b, m, c) dictionary -> ((b, n, c), attention (b, n, m))."""
        q = F.normalize(self.wq(x), dim=-1)
        k = F.normalize(self.wk(td), dim=-1)
        attn = q @ k.transpose(-2, -1)
        attn = torch.softmax(attn * (1 + self.scale.clamp(0, 1) * math.log(self.num_tokens)), dim=-1)
        return attn @ self.wv(td), attn


class AC_MSA(nn.Module):
    """Adaptive category-based self-attention: tokens sorted by their dictionary category, cut into groups of
    ``category_size`` (the last one filled with mirrored tokens), attention within each group.

    The sort is the authors' (``torch.sort(..., stable=False)``): which of two equal categories' tokens fall
    into which group follows it, so the same call keeps their output.
    """

    def __init__(self, dim: int, num_heads: int = 4, category_size: int = 128, qkv_bias: bool = True) -> None:
        super().__init__()
        self.dim, self.num_heads, self.category_size = dim, num_heads, category_size
        self.proj = nn.Linear(dim, dim, bias=qkv_bias)
        self.logit_scale = nn.Parameter(torch.log(10 * torch.ones((1, 1))))

    def forward(self, qkv: Tensor, sim: Tensor) -> Tensor:
        """qkv: (b, n, 3c); sim: (b, n, m) the ATD-CA attention -> (b, n, c)."""
        b, n, c3 = qkv.shape
        c, heads = c3 // 3, self.num_heads
        size = min(n, self.category_size)
        groups = -(-n // size)
        pad = groups * size - n
        order = torch.sort(sim.argmax(dim=-1), dim=-1, stable=False).indices  # (b, n)
        inverse = torch.empty_like(order).scatter_(-1, order, torch.arange(n, device=order.device).expand(b, n))
        sorted_qkv = qkv.gather(1, order.unsqueeze(-1).expand(b, n, c3))
        sorted_qkv = torch.cat([sorted_qkv, sorted_qkv[:, n - pad:].flip(1)], dim=1)
        q, k, v = sorted_qkv.view(b, groups, size, 3, heads, c // heads).permute(3, 0, 1, 4, 2, 5).unbind(0)
        logit_scale = self.logit_scale.clamp(max=math.log(1.0 / 0.01)).exp()
        out = F.scaled_dot_product_attention(q * logit_scale, k, v, scale=1.0)  # (b, groups, heads, size, d)
        out = out.permute(0, 1, 3, 2, 4).reshape(b, groups * size, c)[:, :n]
        return self.proj(out.gather(1, inverse.unsqueeze(-1).expand(b, n, c)))


class ATDTransformerLayer(nn.Module):
    """x + W-MSA/SW-MSA + ATD-CA + AC-MSA (one shared qkv), then x + ConvFFN; returns the refined dictionary.

    The refinement (every layer but a block's last): each dictionary entry becomes a sigmoid(sigma)-weighted
    mix of itself and the tokens, weighted by a softmax over the image of its instance-normalised attention.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, shift_size: int, category_size: int,
                 num_tokens: int, reducted_dim: int, convffn_kernel_size: int, mlp_ratio: float, qkv_bias: bool = True,
                 norm_layer: NormLayer = nn.LayerNorm, is_last: bool = False) -> None:
        super().__init__()
        self.dim, self.window_size, self.shift_size, self.is_last = dim, window_size, shift_size, is_last
        self.norm1 = norm_layer(dim)
        self.norm2 = norm_layer(dim)
        if not is_last:
            self.norm3 = nn.InstanceNorm1d(num_tokens, affine=True)
            self.sigma = nn.Parameter(torch.zeros([num_tokens, 1]))
        self.wqkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_win = WindowAttention(dim, window_size, num_heads)
        self.attn_atd = ATD_CA(dim, num_tokens, reducted_dim, qkv_bias)
        self.attn_aca = AC_MSA(dim, num_heads, category_size, qkv_bias)
        self.convffn = ConvFFN(dim, int(dim * mlp_ratio), convffn_kernel_size)

    def forward(self, x: Tensor, td: Tensor, x_size: Size, rpi: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        h, w = x_size
        b, n, c = x.shape
        normed = self.norm1(x)
        qkv = self.wqkv(normed)
        x_atd, sim = self.attn_atd(normed, td)
        x_aca = self.attn_aca(qkv, sim)

        grid = qkv.view(b, h, w, 3 * c)
        shift = self.shift_size
        if shift:
            grid = torch.roll(grid, shifts=(-shift, -shift), dims=(1, 2))
        windows = self.attn_win(window_partition(grid, self.window_size), rpi, mask if shift else None)
        x_win = window_reverse(windows, self.window_size, h, w)
        if shift:
            x_win = torch.roll(x_win, shifts=(shift, shift), dims=(1, 2))
        x = x + x_win.reshape(b, n, c) + x_atd + x_aca
        x = x + self.convffn(self.norm2(x), x_size)

        if not self.is_last:
            weights = torch.softmax(self.norm3(sim.transpose(-1, -2)), dim=-1)  # (b, m, n)
            s = torch.sigmoid(self.sigma)
            td = s * td + (1 - s) * (weights @ x)
        return x, td


class BasicBlock(nn.Module):
    """``depth`` ATD layers (shifted every other one) sharing one learnt token dictionary ``td``."""

    def __init__(self, dim: int, idx: int, depth: int, num_heads: int, window_size: int, category_size: int,
                 num_tokens: int, convffn_kernel_size: int, reducted_dim: int, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, norm_layer: NormLayer = nn.LayerNorm, use_checkpoint: bool = False) -> None:
        super().__init__()
        self.idx, self.use_checkpoint = idx, use_checkpoint
        self.layers = nn.ModuleList(
            ATDTransformerLayer(dim, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2, category_size,
                                num_tokens, reducted_dim, convffn_kernel_size, mlp_ratio, qkv_bias, norm_layer,
                                is_last=i == depth - 1)
            for i in range(depth))
        self.td = nn.Parameter(torch.randn([num_tokens, dim]))

    def forward(self, x: Tensor, x_size: Size, rpi: Tensor, mask: Tensor) -> Tensor:
        td = self.td.expand(x.shape[0], -1, -1)
        recompute = self.use_checkpoint and self.idx < CHECKPOINTED_BLOCKS and torch.is_grad_enabled()
        for layer in self.layers:
            if recompute:
                x, td = checkpoint(layer, x, td, x_size, rpi, mask, use_reentrant=False)
            else:
                x, td = layer(x, td, x_size, rpi, mask)
        return x


class ATDB(nn.Module):
    """Residual adaptive token dictionary block: a BasicBlock, then a conv on the image, plus the input."""

    def __init__(self, dim: int, resi_connection: str, **block: Any) -> None:
        super().__init__()
        self.residual_group = BasicBlock(dim, **block)
        self.conv = resi_conv(dim, resi_connection)

    def forward(self, x: Tensor, x_size: Size, rpi: Tensor, mask: Tensor) -> Tensor:
        return to_tokens(self.conv(to_image(self.residual_group(x, x_size, rpi, mask), x_size))) + x


class UpsampleOneStep(nn.Sequential):
    """conv to 3 * s^2 channels + pixel shuffle: the lightweight 'pixelshuffledirect' tail."""

    def __init__(self, scale: int, num_feat: int, num_out_ch: int) -> None:
        super().__init__(nn.Conv2d(num_feat, scale ** 2 * num_out_ch, 3, 1, 1), nn.PixelShuffle(scale))


@ARCH_REGISTRY.register(meta=replace(ATD_SPEC, example_args=ATD_SIZE,
                                     params={2: 20113217, 3: 20297857, 4: 20260929}))
class ATD(nn.Module):
    """The authors' ``ATD``: their arguments and defaults, and the IGConv authors' upsamplers.

    ``upsampler``: ``pixelshuffle`` (classical SR), ``pixelshuffledirect`` (lightweight), ``nearest+conv``
    (x4 only) at ``upscale`` with ``forward(x)``; ``igconv`` or ``igconv+igsample`` at any integer scale
    with ``forward(x, scale)`` (``upscale`` unused, as in their code; with 'igconv' ``max_s`` must stay 4:
    their code builds that tail with the default whatever is given). The paper's ATD is this class with the
    arguments of the authors' 00{1,2,3}_ATD_SRx{2,3,4}_finetune.yml (``ATD_SIZE``, the spec's example_args);
    ``ATD_light`` and ``ATD_IGConvPlus`` are presets of the other option files. ``patch_size`` and
    ``img_size`` matter only through ``ape`` (the absolute position embedding, which fixes the padded input
    to ``img_size``), as in the authors' code.
    """

    mean: Tensor
    relative_position_index_SA: Tensor

    def __init__(self, img_size: int | tuple[int, int] | list[int] = 64, patch_size: int = 1, in_chans: int = 3,
                 embed_dim: int = 90, depths: tuple[int, ...] | list[int] = (6, 6, 6, 6),
                 num_heads: tuple[int, ...] | list[int] = (6, 6, 6, 6), window_size: int = 8,
                 category_size: int = 128, num_tokens: int = 64, reducted_dim: int = 4,
                 convffn_kernel_size: int = 5, mlp_ratio: float = 2.0, qkv_bias: bool = True,
                 norm_layer: NormLayer = nn.LayerNorm, ape: bool = False, patch_norm: bool = True,
                 use_checkpoint: bool = False, upscale: int = 2, img_range: float = 1.0, upsampler: Upsampler = '',
                 resi_connection: Literal['1conv', '3conv'] = '1conv', sk_kernel_size: int = 3,
                 implicit_dim: int = 256, latent_layers: int = 4, geo_ensemble: bool = True, max_s: int = 4,
                 return_skip: bool = False) -> None:
        super().__init__()
        sizes = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        require_positive(patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim, window_size=window_size,
                         category_size=category_size, num_tokens=num_tokens, reducted_dim=reducted_dim,
                         convffn_kernel_size=convffn_kernel_size, upscale=upscale, sk_kernel_size=sk_kernel_size,
                         implicit_dim=implicit_dim, latent_layers=latent_layers, max_s=max_s,
                         **{f'img_size[{i}]': s for i, s in enumerate(sizes)},
                         **{f'depths[{i}]': v for i, v in enumerate(depths)},
                         **{f'num_heads[{i}]': v for i, v in enumerate(num_heads)})
        _check_sizes(embed_dim, depths, num_heads, window_size, mlp_ratio, upsampler, upscale, in_chans,
                     resi_connection, len(sizes), max_s)
        resolution = (sizes[0] // patch_size, sizes[1] // patch_size)
        self.window_size, self.img_range, self.upscale, self.upsampler = window_size, img_range, upscale, upsampler
        self.embed_dim, self.ape = embed_dim, ape
        self.scale_in_forward = upsampler in IG_UPSAMPLERS
        mean = DIV2K_RGB_MEAN if in_chans == 3 else (0.0,)
        self.register_buffer('mean', torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self._masks = ShiftMaskCache(MASK_CACHE_SIZE)

        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(embed_dim, norm_layer if patch_norm else None)
        if ape:
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, resolution[0] * resolution[1], embed_dim))
            nn.init.trunc_normal_(self.absolute_pos_embed, std=0.02)
        self.register_buffer('relative_position_index_SA', relative_position_index(window_size))
        self.layers = nn.ModuleList(
            ATDB(embed_dim, resi_connection, idx=i, depth=depth, num_heads=heads,
                 window_size=window_size, category_size=category_size, num_tokens=num_tokens,
                 reducted_dim=reducted_dim, convffn_kernel_size=convffn_kernel_size, mlp_ratio=mlp_ratio,
                 qkv_bias=qkv_bias, norm_layer=norm_layer, use_checkpoint=use_checkpoint)
            for i, (depth, heads) in enumerate(zip(depths, num_heads)))
        self.norm = norm_layer(embed_dim)
        self.conv_after_body = resi_conv(embed_dim, resi_connection)

        # The authors initialise the linear layers and norms after the tail, the IGConv authors before it:
        # the same draws from the same seed in both cases.
        if self.scale_in_forward:
            self.apply(init_weights)
            self.upsample: nn.Module = IGConv(embed_dim, sk_kernel_size, implicit_dim, latent_layers, geo_ensemble,
                                              max_s)
            if upsampler == 'igconv+igsample':
                self.skip = IGSample(embed_dim, sk_kernel_size, implicit_dim // 2, latent_layers // 2,
                                     geo_ensemble, max_s)
            self.return_skip = return_skip
            return
        if upsampler == 'pixelshuffledirect':
            self.upsample = UpsampleOneStep(upscale, embed_dim, in_chans)
        else:
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, NUM_FEAT, 3, 1, 1),
                                                      nn.LeakyReLU(inplace=True))
            if upsampler == 'pixelshuffle':
                self.upsample = Upsample(upscale, NUM_FEAT)
            else:  # nearest+conv
                self.conv_up1 = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
                self.conv_up2 = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
                self.conv_hr = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
                self.lrelu = nn.LeakyReLU(0.2, inplace=True)
            self.conv_last = nn.Conv2d(NUM_FEAT, in_chans, 3, 1, 1)
        self.apply(init_weights)

    def _shift_mask(self, h: int, w: int, device: torch.device) -> Tensor:
        """The shifted-window mask for an h x w input, computed once per size (the last few are kept)."""
        return self._masks.fetch((h, w, device), lambda: shift_window_mask(h, w, self.window_size).to(device))

    def forward_features(self, x: Tensor) -> Tensor:
        """The deep features: ATD blocks over the tokens, then the final norm (image layout in and out)."""
        x_size = (x.shape[2], x.shape[3])
        mask = self._shift_mask(*x_size, x.device)
        x = self.patch_embed(x)
        if self.ape:
            x = x + self.absolute_pos_embed
        for layer in self.layers:
            x = layer(x, x_size, self.relative_position_index_SA, mask)
        return to_image(self.norm(x), x_size)

    def forward(self, x: Tensor, scale: int | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """``net(x)`` or, with an IGConv upsampler, ``net(x, scale)``; any input size, padded to the window
        and cropped back: mirrored as the ATD authors' forward does, reflected (with an IGConv upsampler) as
        the IGConv authors' test code does before calling theirs (same padding, so their outputs on every
        size). IGConv+ in training with ``return_skip`` returns ``(image, skip)`` as their code does."""
        h, w = x.shape[-2:]
        if self.scale_in_forward:
            if scale is None:
                raise ValueError(f'ATD with upsampler {self.upsampler!r} needs the scale: net(x, scale).')
        elif scale not in (None, self.upscale):
            raise ValueError(f'This ATD upsamples x{self.upscale}, not x{scale}.')
        m = self.window_size
        lr = (reflect_pad if self.scale_in_forward else symmetric_pad)(x, -(-h // m) * m, -(-w // m) * m)
        feat = self.conv_first((lr - self.mean) * self.img_range)
        feat = self.conv_after_body(self.forward_features(feat)) + feat
        if self.scale_in_forward:
            out = self.upsample(feat, scale)
        elif self.upsampler == 'pixelshuffledirect':
            out = self.upsample(feat)
        elif self.upsampler == 'pixelshuffle':
            out = self.conv_last(self.upsample(self.conv_before_upsample(feat)))
        else:
            out = self.conv_before_upsample(feat)
            out = self.lrelu(self.conv_up1(F.interpolate(out, scale_factor=2, mode='nearest')))
            out = self.lrelu(self.conv_up2(F.interpolate(out, scale_factor=2, mode='nearest')))
            out = self.conv_last(self.lrelu(self.conv_hr(out)))
        out = crop_to_scale(out / self.img_range + self.mean, lr, (h, w))
        if self.upsampler != 'igconv+igsample':
            return out
        return add_skip(out, crop_to_scale(self.skip(lr, feat, scale), lr, (h, w)), self.training, self.return_skip)


def _check_sizes(embed_dim: int, depths: tuple[int, ...] | list[int], num_heads: tuple[int, ...] | list[int],
                 window_size: int, mlp_ratio: float, upsampler: str, upscale: int, in_chans: int,
                 resi_connection: str, img_size_len: int, max_s: int) -> None:
    """Refuse what the authors' code would build and then fail on."""
    if upsampler not in ('pixelshuffle', 'pixelshuffledirect', 'nearest+conv', *IG_UPSAMPLERS):
        raise ValueError(f"upsampler {upsampler!r}: choose 'pixelshuffle', 'pixelshuffledirect', 'nearest+conv', "
                         "'igconv' or 'igconv+igsample' (the authors' default '' fails in their forward)")
    if upsampler == 'pixelshuffle' and upscale & (upscale - 1) and upscale != 3:
        raise ValueError(f'upscale {upscale}: the pixelshuffle upsampler supports 2^n and 3')
    if upsampler == 'nearest+conv' and upscale != 4:
        raise ValueError(f'upscale {upscale}: the nearest+conv upsampler is x4 only')
    if upsampler in IG_UPSAMPLERS and in_chans != 3:
        raise ValueError(f'in_chans {in_chans}: the IGConv upsamplers output RGB, so in_chans must be 3')
    if upsampler == 'igconv' and max_s != 4:
        raise ValueError(f"max_s {max_s}: the IGConv authors' 'igconv' tail ignores max_s (it keeps 4); "
                         "use 'igconv+igsample' for another")
    if resi_connection not in ('1conv', '3conv'):
        raise ValueError(f"resi_connection {resi_connection!r}: choose '1conv' or '3conv'")
    if img_size_len != 2:
        raise ValueError('img_size must be an integer or a pair of integers')
    if not depths or len(depths) != len(num_heads):
        raise ValueError(f'depths {list(depths)} and num_heads {list(num_heads)} must be non-empty and as long')
    if any(embed_dim % heads for heads in num_heads):
        raise ValueError(f'embed_dim {embed_dim} must be a multiple of every num_heads {list(num_heads)}')
    if window_size % 2:
        raise ValueError(f'window_size {window_size} must be even (the shifted windows move by half of it)')
    if int(embed_dim * mlp_ratio) < 1:
        raise ValueError(f'mlp_ratio {mlp_ratio} leaves the ConvFFN of embed_dim {embed_dim} no hidden channel')


@ARCH_REGISTRY.register(meta=replace(ATD_SPEC, scales=(2, 3, 4), subpixel_tail=('upsample',),
                                     params={2: 753204, 3: 759699, 4: 768792}))
def ATD_light(upscale: int = 4) -> ATD:
    """ATD-light (769 K parameters at x4): the authors' 10{1,2,3}_ATD_light_SRx{2,3,4}_*.yml."""
    return ATD(upscale=upscale, **ATD_LIGHT_SIZE)


@ARCH_REGISTRY.register(meta=replace(IG_SPEC, params={s: 22110145 for s in (2, 3, 4)}))
def ATD_IGConvPlus(return_skip: bool = False) -> ATD:
    """ATD with IGConv+ as the IGConv authors' ATD option files build it: ``net(x, scale)``, any scale."""
    return ATD(**{**ATD_SIZE, 'img_size': 96, 'upsampler': 'igconv+igsample'}, geo_ensemble=True,
               return_skip=return_skip)
