"""Running a network on whole images: padding to the architecture's multiple, tiling, self-ensemble.

Shared by validation, test.py and inference so that every path treats sizes the same way.
"""
from __future__ import annotations

import logging
import weakref
from typing import Callable

import torch
import torch.nn.functional as F

__all__ = ['pad_to_multiple', 'run_padded', 'run_tiled', 'self_ensemble', 'predict', 'warn_if_tiling_inexact']

Net = Callable[[torch.Tensor], torch.Tensor]

logger = logging.getLogger('srkit')
_warned_tiling: weakref.WeakSet[object] = weakref.WeakSet()


def pad_to_multiple(x: torch.Tensor, multiple: int, min_size: int = 1) -> tuple[torch.Tensor, int, int]:
    """Pad H and W (bottom/right) up to a multiple and a minimum; returns the padded tensor and the pads."""
    h, w = x.shape[-2:]
    target_h = max(-(-h // multiple) * multiple, -(-min_size // multiple) * multiple)
    target_w = max(-(-w // multiple) * multiple, -(-min_size // multiple) * multiple)
    pad_h, pad_w = target_h - h, target_w - w
    if pad_h or pad_w:
        mode = 'reflect' if pad_h < h and pad_w < w else 'replicate'
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return x, pad_h, pad_w


def run_padded(net: Net, x: torch.Tensor, out_scale: int, multiple: int = 1, min_size: int = 1) -> torch.Tensor:
    """``net(x)`` on an input padded to the network's requirements, cropped back to ``x``'s size * scale."""
    h, w = x.shape[-2:]
    padded, pad_h, pad_w = pad_to_multiple(x, multiple, min_size)
    out = net(padded)
    return out[..., :h * out_scale, :w * out_scale] if (pad_h or pad_w) else out


def run_tiled(net: Net, x: torch.Tensor, out_scale: int, tile: int, overlap: int, multiple: int = 1,
              min_size: int = 1) -> torch.Tensor:
    """Run ``net`` tile by tile; each tile sees ``overlap`` extra input pixels on every side.

    Only the centre of each tile's output is kept, so the result equals the untiled output (up to float
    rounding) whenever ``overlap`` covers the network's receptive-field radius.
    """
    h, w = x.shape[-2:]
    if tile <= 0 or (h <= tile and w <= tile):
        return run_padded(net, x, out_scale, multiple, min_size)
    out: torch.Tensor | None = None
    for top in range(0, h, tile):
        for left in range(0, w, tile):
            bottom, right = min(top + tile, h), min(left + tile, w)
            in_top, in_left = max(top - overlap, 0), max(left - overlap, 0)
            in_bottom, in_right = min(bottom + overlap, h), min(right + overlap, w)
            piece = run_padded(net, x[..., in_top:in_bottom, in_left:in_right], out_scale, multiple, min_size)
            if out is None:
                out = piece.new_zeros((*x.shape[:-3], piece.shape[-3], h * out_scale, w * out_scale))
            s = out_scale
            out[..., top * s:bottom * s, left * s:right * s] = piece[
                ..., (top - in_top) * s:(bottom - in_top) * s, (left - in_left) * s:(right - in_left) * s]
    assert out is not None
    return out


def warn_if_tiling_inexact(owner: object, tiling_exact: bool, arch_name: str, tile: int) -> None:
    """Warn that tiling changes the output of a network whose ArchSpec says ``tiling_exact=False``.

    Such a network pools or scans the whole image, so each tile sees other statistics than the whole image
    and no overlap makes tiling exact. ``owner`` (the model or network doing the tiling) is warned about
    once, not once per image.
    """
    if tile <= 0 or tiling_exact or owner in _warned_tiling:
        return
    _warned_tiling.add(owner)
    logger.warning('Tiled inference (tile size %d) changes the output of %s: it pools or scans the whole image, '
                   'so every tile sees different statistics. Use tile_size 0 for exact numbers.', tile, arch_name)


def self_ensemble(run: Net, x: torch.Tensor) -> torch.Tensor:
    """x8 geometric self-ensemble: average of the outputs for the 8 flips/transposes, each undone."""
    total = None
    for transpose in (False, True):
        for flip_h in (False, True):
            for flip_w in (False, True):
                y = x.transpose(-2, -1) if transpose else x
                dims = [d for d, on in ((-2, flip_h), (-1, flip_w)) if on]
                y = torch.flip(y, dims) if dims else y
                out = run(y)
                out = torch.flip(out, dims) if dims else out
                out = out.transpose(-2, -1) if transpose else out
                total = out if total is None else total + out
    assert total is not None
    return total / 8


def predict(net: Net, x: torch.Tensor, out_scale: int, *, multiple: int = 1, min_size: int = 1, tile: int = 0,
            overlap: int = 16, ensemble: bool = False) -> torch.Tensor:
    """Super-resolve a batch of whole images with padding, optional tiling and optional self-ensemble."""

    def run(inp: torch.Tensor) -> torch.Tensor:
        return run_tiled(net, inp, out_scale, tile, overlap, multiple, min_size)

    return self_ensemble(run, x) if ensemble else run(x)
