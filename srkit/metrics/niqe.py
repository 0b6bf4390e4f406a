"""NIQE (Mittal et al., "Making a 'Completely Blind' Image Quality Analyzer", 2013), as MATLAB computes it.

A no-reference score, lower is better: the distance between a multivariate Gaussian fitted to natural-scene
statistics of the image's 96x96 blocks and the one fitted to pristine photographs. It registers as
lower-is-better (``val.metrics.niqe: {type: niqe}`` keeps the lowest as the best).

The pristine model is MATLAB's: ``niqe_pris_params.npz`` beside this module is BasicSR's copy
(XPixelGroup/BasicSR ``basicsr/metrics/niqe_pris_params.npz``, added in commit a19aac6 and unchanged up to
8d56e3a045f9fb3e1d8872f92ee4a4f07f886b0a) of ``modelparameters.mat`` from the authors' niqe_release.zip
(``mu_prisparam``, ``cov_prisparam``), plus MATLAB's ``fspecial('gaussian', 7, 7/6)`` window.

The steps follow the authors' ``computequality.m``, as BasicSR does to match MATLAB (5.7296 for BasicSR's
tests/data/baboon.png, which is Set14's GTmod12 baboon): the image's Y (MATLAB ``rgb2ycbcr`` on uint8,
hence rounded; ``rgb2gray``, also rounded, without ``test_y_channel``) cropped to whole 96x96 blocks;
at two scales (the second a MATLAB bicubic ``imresize(im, 0.5)``) the locally normalised image
(7x7 Gaussian, replicated borders) gives 18 features per block from asymmetric generalised Gaussian
fits; the shape parameter is the nearest point of MATLAB's grid 0.2:0.001:10. Blocks whose fit is
undefined (a flat block) are left out as MATLAB's ``nanmean`` / ``nancov`` leave them out.
Batched over images and blocks (no scipy, no loop over blocks), in float64 except the local normalisation
(see ``_normalise``).
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from srkit.core.registry import METRIC_REGISTRY
from srkit.metrics.color import rgb_to_y
from srkit.ops.imresize import imresize

__all__ = ['calculate_niqe', 'BLOCK_SIZE']

BLOCK_SIZE = 96
_PARAMS_FILE = Path(__file__).with_name('niqe_pris_params.npz')
# MATLAB's rgb2gray: the first row of the inverse of the NTSC (YIQ) matrix.
_GRAY = np.linalg.inv(np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]]))[0]
# Products of each coefficient with its neighbour along these (row, column) circular shifts of the block.
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))


@functools.cache
def _pristine_model() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean (36,), covariance (36, 36), 1-D factor (7,) of the 7x7 Gaussian window) of MATLAB's model.

    The window is ``outer(g, g)`` with ``sum(g) == 1``, so its row sums are ``g``.
    """
    with np.load(_PARAMS_FILE) as params:
        return params['mu_pris_param'][0], params['cov_pris_param'], params['gaussian_window'].sum(axis=1)


@functools.cache
def _shape_grid(device: torch.device) -> tuple[Tensor, Tensor]:
    """MATLAB's shape grid 0.2:0.001:10 and rho(a) = G(2/a)^2 / (G(1/a) G(3/a)), which increases with a."""
    shapes = torch.arange(200, 10001, dtype=torch.float64, device=device) / 1000
    return shapes, (2 * torch.lgamma(2 / shapes) - torch.lgamma(1 / shapes) - torch.lgamma(3 / shapes)).exp()


def _fit_aggd(samples: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Moment fit of an asymmetric generalised Gaussian to each row: (shape, left scale, right scale).

    A row without negative or positive values has no fit (NaN scales, and the grid's first shape, as
    MATLAB's ``min`` over NaNs returns index 1).
    """
    square = samples.square()
    negative, positive = samples < 0, samples > 0
    left_std = (torch.where(negative, square, 0).sum(-1) / negative.sum(-1)).sqrt()
    right_std = (torch.where(positive, square, 0).sum(-1) / positive.sum(-1)).sqrt()
    ratio = left_std / right_std
    rho = samples.abs().mean(-1).square() / square.mean(-1)
    rho_norm = rho * (ratio ** 3 + 1) * (ratio + 1) / (ratio.square() + 1).square()
    shapes, grid = _shape_grid(samples.device)
    upper = torch.searchsorted(grid, rho_norm.contiguous()).clamp(1, len(grid) - 1)
    lower = upper - 1
    nearest = torch.where((grid[upper] - rho_norm).abs() < (grid[lower] - rho_norm).abs(), upper, lower)
    shape = shapes[torch.where(rho_norm.isnan(), 0, nearest)]
    scale = (0.5 * (torch.lgamma(1 / shape) - torch.lgamma(3 / shape))).exp()
    return shape, left_std * scale, right_std * scale


def _block_features(normalised: Tensor, block: int) -> Tensor:
    """The 18 features of each ``block`` square of N1HW normalised images: (N, blocks, 18), row-major blocks."""
    n, _, h, w = normalised.shape
    blocks = normalised.reshape(n, h // block, block, w // block, block).transpose(2, 3)
    blocks = blocks.reshape(n, -1, block, block)
    shape, left, right = _fit_aggd(blocks.flatten(2))
    features = [shape, (left + right) / 2]
    for shift in _SHIFTS:
        products = blocks * torch.roll(blocks, shift, dims=(-2, -1))
        shape, left, right = _fit_aggd(products.flatten(2))
        mean = (right - left) * (torch.lgamma(2 / shape) - torch.lgamma(1 / shape)).exp()
        features += [shape, mean, left, right]
    return torch.stack(features, dim=-1)


def _filter_valid(x: Tensor, taps: np.ndarray, dim: int) -> Tensor:
    """'valid' correlation of ``x`` with ``taps`` along ``dim``: the sum of its shifted slices."""
    length = x.shape[dim] - len(taps) + 1
    out = x.narrow(dim, 0, length) * float(taps[0])
    for shift in range(1, len(taps)):
        out.add_(x.narrow(dim, shift, length), alpha=float(taps[shift]))
    return out


def _normalise(img: Tensor, taps: np.ndarray) -> Tensor:
    """(img - mu) / (sigma + 1), local mean and deviation under the Gaussian window with borders replicated.

    The window is separable (``outer(taps, taps)``), so it is applied as two 1-D passes of shifted slices,
    several times faster than a float64 ``conv2d``. The filtered mean and mean square are then stored as
    float32 and sigma and the quotient formed in float32, as in BasicSR's float32 pipeline and, judging by
    its documented score, MATLAB's. A window of equal pixels then normalises to exactly 0; in float64 its
    mean may land an ulp off, and the sign of that 1e-14 residual counts, as the AGGD fit treats negative and
    positive values apart (a float64 ``conv2d`` moves baboon's score by 4e-4 that way; images with few
    blocks, whose covariance is nearly singular, amplify such differences: face, 2x2 blocks, by 0.27).
    This reproduces MATLAB R2021a's 5.72957338 for baboon to 2e-7 and BasicSR's Set14 scores within 1e-3.
    """
    pad = len(taps) // 2
    stacked = F.pad(torch.cat((img, img.square()), dim=1), (pad, pad, pad, pad), mode='replicate')
    mu, mean_sq = _filter_valid(_filter_valid(stacked, taps, -2), taps, -1).float().split(1, dim=1)
    sigma = (mean_sq - mu.square()).abs().sqrt()
    return ((img.float() - mu) / (sigma + 1)).double()


def _complete_rows_mvg(features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """MATLAB ``nanmean`` (per column) and ``nancov`` (rows without NaN) of (N, rows, 36) features, and the
    count of complete rows. One complete row gives a zero covariance, as MATLAB normalises by 1 there."""
    mean = features.nanmean(dim=1)
    complete = ~features.isnan().any(dim=-1, keepdim=True)
    count = complete.sum(dim=1, keepdim=True)
    complete_mean = torch.where(complete, features, 0).sum(dim=1, keepdim=True) / count.clamp_min(1)
    centred = torch.where(complete, features - complete_mean, 0)
    cov = centred.transpose(1, 2) @ centred / (count - 1).clamp_min(1)
    return mean, cov, count.flatten()


def _luma(img: Tensor, test_y_channel: bool) -> Tensor:
    """The N1HW plane NIQE scores, rounded as MATLAB's uint8 conversions round (halves away from zero)."""
    if img.shape[1] == 1:
        return img
    if test_y_channel:
        plane = rgb_to_y(img)
    else:
        plane = torch.einsum('c,nchw->nhw', torch.as_tensor(_GRAY, dtype=img.dtype, device=img.device),
                             img).unsqueeze(1)
    return torch.floor(plane + 0.5)


@METRIC_REGISTRY.register(aliases=('niqe',), meta={'better': 'lower', 'reference': False})
def calculate_niqe(sr: Tensor, gt: Tensor | None = None, crop_border: int = 0,
                   test_y_channel: bool = True) -> Tensor:
    """NIQE of each image of an NCHW batch in [0, 255] (RGB or gray): float64 tensor (N,), lower is better.

    ``gt`` is ignored (NIQE needs no reference; it is accepted so that NIQE is called like every metric).
    NaN for an image without a single textured block. Needs one 96x96 block after ``crop_border``.
    """
    if sr.dim() != 4 or sr.shape[1] not in (1, 3):
        raise ValueError(f'NIQE scores NCHW tensors with 1 or 3 channels, got shape {tuple(sr.shape)}')
    h, w = sr.shape[-2:]
    if crop_border < 0 or 2 * crop_border >= min(h, w):
        raise ValueError(f'crop_border {crop_border} leaves nothing of images of shape {tuple(sr.shape)}')
    if min(h, w) - 2 * crop_border < BLOCK_SIZE:
        raise ValueError(f'NIQE needs at least {BLOCK_SIZE}x{BLOCK_SIZE} pixels (one block) after crop_border '
                         f'{crop_border}; the images are {h}x{w}')
    img = sr.detach().to(torch.float64)
    if crop_border:
        img = img[..., crop_border:-crop_border, crop_border:-crop_border]
    img = _luma(img, test_y_channel)
    img = img[..., :img.shape[-2] // BLOCK_SIZE * BLOCK_SIZE, :img.shape[-1] // BLOCK_SIZE * BLOCK_SIZE]

    mu_pristine, cov_pristine, taps = _pristine_model()
    features = []
    for scale in (1, 2):
        features.append(_block_features(_normalise(img, taps), BLOCK_SIZE // scale))
        if scale == 1:
            img = imresize(img, 0.5)
    mu_distorted, cov_distorted, count = _complete_rows_mvg(torch.cat(features, dim=-1))
    difference = (torch.as_tensor(mu_pristine, device=img.device) - mu_distorted).unsqueeze(-1)
    inverse = torch.linalg.pinv((torch.as_tensor(cov_pristine, device=img.device) + cov_distorted) / 2)
    quality = (difference.transpose(-2, -1) @ inverse @ difference).flatten().sqrt()
    return torch.where(count > 0, quality, torch.nan)
