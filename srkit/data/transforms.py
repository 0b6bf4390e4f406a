"""Pair checks, paired random crops and augmentations on HWC numpy images.

Every random choice comes from the ``numpy.random.Generator`` passed in (built by the dataset from the
sampler's per-sample seed), never from global state, so a sample is a pure function of its key.

Pair sizes: the HR image must be ``scale`` times the LR image. An HR image larger than that by fewer than
``scale`` pixels in height or width (an original next to an LR made from its modcrop by ``scale``, e.g.
EDSR-style ``HR`` next to ``LR_bicubic/X3``) is cropped at its bottom/right edge, which is exactly that
modcrop. Anything else is a ``DataError`` naming both files and both sizes; in particular the BasicSR
``LRbicx{s}`` sets pair with ``GTmod12``, not with the originals (which are up to 11 pixels larger).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from srkit.core.errors import DataError

__all__ = ['match_pair', 'paired_random_crop', 'random_crop', 'augment', 'channel_shuffle']


def _hw(img: np.ndarray) -> str:
    return f'{img.shape[0]}x{img.shape[1]} (HxW)'


def match_pair(lq: np.ndarray, gt: np.ndarray, scale: int, lq_path: str = '<lq>', gt_path: str = '<gt>'
               ) -> np.ndarray:
    """``gt`` cropped to ``scale`` x the LR size (only ever by < ``scale`` pixels); a mismatch is a DataError."""
    h, w = lq.shape[0] * scale, lq.shape[1] * scale
    gh, gw = gt.shape[:2]
    if not (h <= gh < h + scale and w <= gw < w + scale):
        raise DataError(f'LR/HR pair does not match at scale {scale}: HR {gt_path} is {_hw(gt)} but LR '
                        f'{lq_path} is {_hw(lq)}, so HR should be {h}x{w} (or larger by fewer than {scale} '
                        'pixels, then cropped at the bottom/right edge).')
    return gt[:h, :w]


def paired_random_crop(lq: np.ndarray, gt: np.ndarray, scale: int, rng: np.random.Generator, *,
                       gt_size: int | None = None, lq_size: int | None = None, lq_path: str = '<lq>',
                       gt_path: str = '<gt>') -> tuple[np.ndarray, np.ndarray]:
    """Aligned patches: ``lq_size`` (or ``gt_size // scale``) LR pixels and ``scale`` times that in HR.

    Exactly one of ``gt_size`` (a multiple of ``scale``) and ``lq_size`` is given. The pair must already
    match (see ``match_pair``). Draws the top row, then the left column, from ``rng``.
    """
    if (gt_size is None) == (lq_size is None):
        raise ValueError('paired_random_crop needs exactly one of gt_size and lq_size')
    if gt_size is not None:
        if gt_size % scale:
            raise DataError(f'gt_size {gt_size} is not a multiple of scale {scale}.')
        lq_size = gt_size // scale
    assert lq_size is not None  # exactly one of the two is given
    if lq.shape[0] * scale != gt.shape[0] or lq.shape[1] * scale != gt.shape[1]:
        raise DataError(f'LR/HR pair does not match at scale {scale}: HR {gt_path} is {_hw(gt)}, LR {lq_path} '
                        f'is {_hw(lq)}.')
    if lq.shape[0] < lq_size or lq.shape[1] < lq_size:
        raise DataError(f'LR {lq_path} is {_hw(lq)}, smaller than the {lq_size}x{lq_size} training patch '
                        f'(HR {gt_path}: {_hw(gt)}, patch {lq_size * scale}). Use a smaller gt_size/lq_size '
                        'or remove the image.')
    top = int(rng.integers(0, lq.shape[0] - lq_size + 1))
    left = int(rng.integers(0, lq.shape[1] - lq_size + 1))
    lq_patch = lq[top:top + lq_size, left:left + lq_size]
    gt_patch = gt[top * scale:(top + lq_size) * scale, left * scale:(left + lq_size) * scale]
    return lq_patch, gt_patch


def random_crop(img: np.ndarray, size: int, rng: np.random.Generator, path: str = '<image>') -> np.ndarray:
    """A ``size`` x ``size`` patch at a position drawn from ``rng`` (top, then left)."""
    if img.shape[0] < size or img.shape[1] < size:
        raise DataError(f'{path} is {_hw(img)}, smaller than the {size}x{size} training patch. Use a smaller '
                        'gt_size or remove the image.')
    top = int(rng.integers(0, img.shape[0] - size + 1))
    left = int(rng.integers(0, img.shape[1] - size + 1))
    return img[top:top + size, left:left + size]


def augment(imgs: Sequence[np.ndarray], rng: np.random.Generator, *, hflip: bool = True,
            rotation: bool = True) -> list[np.ndarray]:
    """The same random flips for every image: horizontal flip (``hflip``), and with ``rotation`` a vertical
    flip and a transpose (BasicSR's "rot90"); together they reach all 8 rotations/reflections.

    Three coin flips are drawn whatever the flags, so the draws after this one do not depend on them.
    """
    do_h, do_v, do_t = (rng.random(3) < 0.5).tolist()
    out = []
    for img in imgs:
        if hflip and do_h:
            img = img[:, ::-1]
        if rotation and do_v:
            img = img[::-1]
        if rotation and do_t:
            img = img.transpose(1, 0, 2)
        out.append(np.ascontiguousarray(img))
    return out


def channel_shuffle(imgs: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The same random permutation of the RGB channels for every image."""
    order = rng.permutation(3)
    return [np.ascontiguousarray(img[..., order]) for img in imgs]
