"""Helpers shared by the Swin-family hosts (SwinIR, SRFormer, HAT, ATD, HiT-SRF, MambaIR).

One copy of what those networks' authors wrote identically: window partition and its inverse, the
relative-position index, the shifted-window mask and its per-size cache, padding to a window multiple, the
token / image layouts, the authors' initialisation, and the IGConv tail's ending (crop, IGSample skip). The
variants that differ (SRFormer's permuted-window mask, HiT-SRF's hierarchical windows, ATD's mirror padding)
stay in their own modules.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ['BiasTable', 'IG_UPSAMPLERS', 'MASK_CACHE_SIZE', 'MASKED', 'Mlp', 'PatchEmbed', 'ShiftMaskCache', 'add_skip',
           'crop_to_scale', 'init_weights', 'pad_to_window', 'relative_position_index', 'resi_conv',
           'shifted_window_mask', 'to_image', 'to_tokens', 'trunc_normal_', 'window_coords', 'window_partition',
           'window_reverse']

IG_UPSAMPLERS = ('igconv', 'igconv+igsample')
MASKED = -100.0  # the authors' additive mask between regions that a cyclic shift made neighbours
MASK_CACHE_SIZE = 4  # input sizes whose shift mask a network keeps (validation images come in many sizes)

Size = tuple[int, int]
MaskKey = tuple[int, int, torch.device]


def window_coords(size: int) -> Tensor:
    """(2, size * size): row then column of every position of a size x size window, row-major."""
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing='ij')
    return torch.stack([rows.flatten(), cols.flatten()])


def relative_position_index(window: int) -> Tensor:
    """(N, N) index into the (2w-1)^2 bias table for every pair of the N = w*w positions of a window (Swin's)."""
    coords = window_coords(window)
    offsets = coords[:, :, None] - coords[:, None, :] + (window - 1)  # (2, N, N), each in [0, 2w-2]
    return offsets[0] * (2 * window - 1) + offsets[1]


def window_partition(x: Tensor, window: int) -> Tensor:
    """(B, H, W, C) -> (B * nW, window * window, C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c).transpose(2, 3)
    return x.reshape(-1, window * window, c)


def window_reverse(windows: Tensor, window: int, h: int, w: int) -> Tensor:
    """The inverse of ``window_partition``: (B * nW, window * window, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window, w // window, window, window, c).transpose(2, 3)
    return x.reshape(-1, h, w, c)


def shifted_window_mask(h: int, w: int, window: int, shift: int, device: torch.device | None = None) -> Tensor:
    """(nW, N, N) additive mask of a shifted-window layer on an h x w map (multiples of ``window``): after the
    cyclic shift, a window on the last row or column holds pixels from up to four image regions that must not
    attend to each other (-100), as the authors' ``calculate_mask``."""
    def bands(n: int) -> Tensor:  # 0 before the last window, 1 in it before the shift, 2 in the shift
        index = torch.arange(n, device=device)
        return (index >= n - window).long() + (index >= n - shift).long()

    regions = bands(h)[:, None] * 3 + bands(w)[None, :]
    regions = window_partition(regions[None, :, :, None], window).squeeze(-1)  # (nW, N)
    differ = regions[:, None, :] != regions[:, :, None]
    return torch.zeros(differ.shape, device=device).masked_fill_(differ, MASKED)


class ShiftMaskCache(OrderedDict[MaskKey, Tensor]):
    """Shift masks by (h, w, device): the mask depends on the input size alone, so all shifted blocks of a
    network share one per size, built once; the ``max_size`` sizes used last are kept."""

    def __init__(self, max_size: int = MASK_CACHE_SIZE) -> None:
        super().__init__()
        self.max_size = max_size

    def fetch(self, key: MaskKey, build: Callable[[], Tensor]) -> Tensor:
        """The mask for ``key``, from ``build()`` the first time (``build`` is looked up by the caller, so a
        test can count its calls). Under torch.compile the mask is built inside the graph instead: filling the
        cache there would change what the graph was traced against, and dynamo would compile the network again."""
        if torch.compiler.is_compiling():
            return build()
        mask = self.get(key)
        if mask is None:
            mask = self[key] = build()
            while len(self) > self.max_size:
                self.popitem(last=False)
        else:
            self.move_to_end(key)
        return mask


def pad_to_window(x: Tensor, window: int) -> Tensor:
    """Pad bottom/right to multiples of the window: reflect as the authors' forward or test code does (replicate
    where the image is too small to reflect, where theirs fails)."""
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % window, -w % window
    if not (pad_h or pad_w):
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode='reflect' if pad_h < h and pad_w < w else 'replicate')


def to_tokens(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, H*W, C)."""
    return x.flatten(2).transpose(1, 2)


def to_image(x: Tensor, x_size: Size) -> Tensor:
    """(B, H*W, C) -> (B, C, H, W)."""
    return x.transpose(1, 2).reshape(x.shape[0], -1, *x_size)


class PatchEmbed(nn.Module):
    """Image to tokens (patch size 1: every pixel a token), normalised when ``patch_norm``: holds the authors'
    ``patch_embed.norm``."""

    def __init__(self, embed_dim: int, norm_layer: Callable[[int], nn.Module] | None) -> None:
        super().__init__()
        self.norm = norm_layer(embed_dim) if norm_layer is not None else None

    def forward(self, x: Tensor) -> Tensor:
        x = to_tokens(x)
        return self.norm(x) if self.norm is not None else x


class Mlp(nn.Module):
    """fc1 - GELU - dropout - fc2 - dropout (the authors' ``Mlp``)."""

    def __init__(self, in_features: int, hidden_features: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def trunc_normal_(tensor: Tensor, std: float = 0.02, bound: float = 2.0) -> Tensor:
    """Normal(0, std) truncated to [-bound, bound], drawn as timm and BasicSR draw it (uniform, then the inverse
    normal CDF), so a seed gives the authors' initial weights; torch's trunc_normal_ samples differently."""
    def cdf(value: float) -> float:
        return (1 + math.erf(value / std / math.sqrt(2))) / 2

    with torch.no_grad():
        tensor.uniform_(2 * cdf(-bound) - 1, 2 * cdf(bound) - 1).erfinv_()
        return tensor.mul_(std * math.sqrt(2)).clamp_(-bound, bound)


def init_weights(module: nn.Module, trunc_normal: Callable[..., Tensor] | None = None) -> None:
    """The authors' initialisation (``net.apply``): truncated-normal (std 0.02) linear weights, zero biases,
    unit LayerNorms; convs keep PyTorch's. ``trunc_normal`` defaults to torch's, looked up per call."""
    if isinstance(module, nn.Linear):
        (trunc_normal or nn.init.trunc_normal_)(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def resi_conv(dim: int, resi_connection: str) -> nn.Module:
    """The conv closing a residual group (and the body): '1conv' one 3x3, '3conv' a 3x3-1x1-3x3 bottleneck of
    width dim/4 (LeakyReLU 0.2 between), the authors' parameter-saving option."""
    if resi_connection == '1conv':
        return nn.Conv2d(dim, dim, 3, 1, 1)
    if resi_connection == '3conv':
        return nn.Sequential(nn.Conv2d(dim, dim // 4, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True),
                             nn.Conv2d(dim // 4, dim // 4, 1), nn.LeakyReLU(0.2, inplace=True),
                             nn.Conv2d(dim // 4, dim, 3, 1, 1))
    raise ValueError(f"resi_connection must be '1conv' or '3conv', got {resi_connection!r}")


def crop_to_scale(out: Tensor, padded: Tensor, size: Sequence[int]) -> Tensor:
    """``out``, made from the window-padded ``padded``, cropped to ``size`` times the scale it was made at (the
    padding's share removed; the scale read from the shapes also fits a tail that IGConvSR swapped in)."""
    s = out.shape[-2] // padded.shape[-2]
    return out[..., :size[0] * s, :size[1] * s]


def add_skip(out: Tensor, skip: Tensor, training: bool, return_skip: bool) -> Tensor | tuple[Tensor, Tensor]:
    """IGConv+'s ending: the IGSample skip added to the image; in training with ``return_skip``, ``(image,
    skip)`` as the IGConv authors' networks return it."""
    out = out + skip
    return (out, skip) if training and return_skip else out


class BiasTable(nn.Module):
    """Holds ``relative_position_bias_table`` and turns it into the (heads, queries, keys) attention bias.

    Without autograd the gathered bias is kept until the table or the index changes (their version
    counters and storage), so inference gathers it once; with autograd it is gathered every call.
    """

    relative_position_bias_table: nn.Parameter

    def _init_table(self, entries: int, num_heads: int, draw: bool = True) -> None:
        """Register the table; ``draw`` False leaves its truncated-normal draw to the caller, for an authors'
        order of random draws (ATD creates its projection between the two)."""
        self.relative_position_bias_table = nn.Parameter(torch.zeros(entries, num_heads))
        if draw:
            nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self._bias_key: tuple[object, ...] | None = None
        self._bias: Tensor | None = None

    def attention_bias(self, index: Tensor) -> Tensor:
        table = self.relative_position_bias_table
        if torch.is_grad_enabled() and table.requires_grad:
            return self._gather(table, index)
        key = (table.data_ptr(), table._version, index.data_ptr(), index._version, table.device, table.dtype)
        if self._bias is None or key != self._bias_key:
            self._bias, self._bias_key = self._gather(table, index), key
        return self._bias

    @staticmethod
    def _gather(table: Tensor, index: Tensor) -> Tensor:
        return table[index.reshape(-1)].view(*index.shape, -1).permute(2, 0, 1).contiguous()
