"""PSNR and SSIM as the SR literature computes them (BasicSR's MATLAB-matching definitions).

Two implementations of one definition:

* ``psnr_reference`` / ``ssim_reference``: plain float64 numpy on one HWC (or HW) image, written to be
  read against Wang et al.'s MATLAB ``ssim.m``; the yardstick in tests.
* ``calculate_psnr`` / ``calculate_ssim``: the batched torch versions srkit evaluates with, registered in
  METRIC_REGISTRY under BasicSR's names. They agree with the reference within 1e-4 dB / 1e-6.

Shared definition: values in [0, 255]; ``crop_border`` pixels shaved from every side; with
``test_y_channel`` an RGB image is scored on MATLAB's Y (BT.601, 16..235, unrounded) and a grayscale one
as the gray image repeated to RGB, as the benchmark protocol evaluates Set14's ``bridge``. SSIM: 11x11
Gaussian window (sigma 1.5), 'valid' filtering, K1 = 0.01, K2 = 0.03, L = 255, averaged over the map and
then over channels.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from srkit.core.registry import METRIC_REGISTRY
from srkit.metrics.color import rgb_to_y

__all__ = ['psnr_reference', 'ssim_reference', 'calculate_psnr', 'calculate_ssim', 'cropped_pair']

_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2
_Y_GAIN = (65.481 + 128.553 + 24.966) / 255  # Y of a gray pixel v is 16 + _Y_GAIN * v


def _gaussian_window() -> np.ndarray:
    """The 1-D factor of MATLAB's ``fspecial('gaussian', 11, 1.5)`` (that window is its outer product)."""
    taps = np.exp(-(np.arange(11) - 5.0) ** 2 / (2 * 1.5 ** 2))
    return taps / taps.sum()


_WINDOW = _gaussian_window()
_CPU_STRIP_ROWS = 32


# ---------------------------------------------------------------- float64 numpy reference

def _prepare_reference(img: np.ndarray, img2: np.ndarray, crop_border: int,
                       test_y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    if img.shape != img2.shape:
        raise ValueError(f'images to compare differ in shape: {img.shape} and {img2.shape}')
    out = []
    for im in (img, img2):
        im = np.asarray(im, dtype=np.float64)
        im = im[..., None] if im.ndim == 2 else im
        if crop_border:
            im = im[crop_border:-crop_border, crop_border:-crop_border]
        if test_y_channel:
            im = (rgb_to_y(im) if im.shape[2] == 3 else 16.0 + _Y_GAIN * im[..., 0])[..., None]
        out.append(im)
    return out[0], out[1]


def psnr_reference(img: np.ndarray, img2: np.ndarray, crop_border: int,
                   test_y_channel: bool = False) -> float:
    """PSNR in dB of two HWC/HW images in [0, 255] (uint8 or float), in float64; inf when identical."""
    a, b = _prepare_reference(img, img2, crop_border, test_y_channel)
    mse = np.mean((a - b) ** 2)
    return math.inf if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


def _filter_valid(x: np.ndarray) -> np.ndarray:
    """MATLAB ``filter2(window, x, 'valid')``, as two 1-D passes (the Gaussian window is separable)."""
    h, w = x.shape[0] - 10, x.shape[1] - 10
    rows = sum(_WINDOW[k] * x[k:k + h] for k in range(11))
    return sum(_WINDOW[k] * rows[:, k:k + w] for k in range(11))


def _ssim_channel(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = _filter_valid(a), _filter_valid(b)
    var_a = _filter_valid(a * a) - mu_a ** 2
    var_b = _filter_valid(b * b) - mu_b ** 2
    cov = _filter_valid(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + _C1) * (2 * cov + _C2)) / ((mu_a ** 2 + mu_b ** 2 + _C1) * (var_a + var_b + _C2))
    return float(ssim_map.mean())


def ssim_reference(img: np.ndarray, img2: np.ndarray, crop_border: int,
                   test_y_channel: bool = False) -> float:
    """SSIM (Wang et al.) of two HWC/HW images in [0, 255], in float64; channels averaged."""
    a, b = _prepare_reference(img, img2, crop_border, test_y_channel)
    if min(a.shape[:2]) < 11:
        raise ValueError(f'SSIM needs at least 11x11 pixels after cropping, got {a.shape[:2]}')
    return float(np.mean([_ssim_channel(a[..., c], b[..., c]) for c in range(a.shape[2])]))


# ---------------------------------------------------------------- batched torch (what srkit uses)

def cropped_pair(sr: torch.Tensor, gt: torch.Tensor, crop_border: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated float64 copies of two NCHW batches with ``crop_border`` pixels cut from every side: what every
    full-reference metric starts from (a ValueError says what does not fit)."""
    if sr.shape != gt.shape:
        raise ValueError(f'sr and gt differ in shape: sr {tuple(sr.shape)} and gt {tuple(gt.shape)}')
    if sr.dim() != 4:
        raise ValueError(f'sr and gt must be NCHW tensors, got shape {tuple(sr.shape)}')
    if crop_border < 0 or 2 * crop_border >= min(sr.shape[-2:]):
        raise ValueError(f'crop_border {crop_border} leaves nothing of images of shape {tuple(sr.shape)}')
    if crop_border:
        sr, gt = (im[..., crop_border:-crop_border, crop_border:-crop_border] for im in (sr, gt))
    return sr.to(torch.float64), gt.to(torch.float64)


def _prepare(sr: torch.Tensor, gt: torch.Tensor, crop_border: int, test_y_channel: bool) -> tuple[torch.Tensor,
                                                                                                 torch.Tensor]:
    """Validated, cropped float64 NCHW copies (Y only with ``test_y_channel``)."""
    a, b = cropped_pair(sr, gt, crop_border)
    if test_y_channel:
        a, b = (rgb_to_y(im) if im.shape[1] == 3 else 16.0 + _Y_GAIN * im for im in (a, b))
    return a, b


@METRIC_REGISTRY.register(aliases=('psnr',))
def calculate_psnr(sr: torch.Tensor, gt: torch.Tensor, crop_border: int = 0,
                   test_y_channel: bool = False) -> torch.Tensor:
    """PSNR in dB of each image of two NCHW batches in [0, 255]: float64 tensor (N,), inf if identical."""
    a, b = _prepare(sr, gt, crop_border, test_y_channel)
    mse = (a - b).square().mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(255.0 ** 2 / mse)  # mse == 0 gives inf


def _filter_valid_torch(x: torch.Tensor) -> torch.Tensor:
    """MATLAB ``filter2(window, x, 'valid')`` on the last two dims of a float64 tensor, in two 1-D passes."""
    h, w = x.shape[-2] - 10, x.shape[-1] - 10
    rows = x[..., 0:h, :] * _WINDOW[0]
    for k in range(1, 11):
        rows.add_(x[..., k:k + h, :], alpha=float(_WINDOW[k]))
    out = rows[..., 0:w] * _WINDOW[0]
    for k in range(1, 11):
        out.add_(rows[..., k:k + w], alpha=float(_WINDOW[k]))
    return out


def _ssim_map_sum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Sum over the SSIM map of NCHW float64 planes (all rows of the 'valid' map they give): (N, C)."""
    mu_a, mu_b, e_aa, e_bb, e_ab = _filter_valid_torch(torch.stack((a, b, a * a, b * b, a * b)))
    mu_ab = mu_a * mu_b
    mu_sq = mu_a.square_().add_(mu_b.square_())
    numerator = (2 * mu_ab + _C1).mul_(e_ab.sub_(mu_ab).mul_(2).add_(_C2))
    denominator = (mu_sq + _C1).mul_(e_aa.add_(e_bb).sub_(mu_sq).add_(_C2))
    return numerator.div_(denominator).sum(dim=(-2, -1))


@METRIC_REGISTRY.register(aliases=('ssim',))
def calculate_ssim(sr: torch.Tensor, gt: torch.Tensor, crop_border: int = 0,
                   test_y_channel: bool = False) -> torch.Tensor:
    """SSIM of each image of two NCHW batches in [0, 255]: float64 tensor (N,).

    Everything is float64: in float32 (even on mean-centred values) E[x^2] - E[x]^2 cancels badly enough
    to move the mean SSIM of real images by ~5e-6, over the 1e-6 this must agree within. Speed comes from
    separable filtering and, on CPU, from working through strips of 32 map rows that stay in cache
    (about 2x faster than whole planes, and several times faster than float64 ``conv2d``).
    """
    a, b = _prepare(sr, gt, crop_border, test_y_channel)
    h, w = a.shape[-2] - 10, a.shape[-1] - 10
    if min(h, w) < 1:
        raise ValueError(f'SSIM needs at least 11x11 pixels after cropping, got {tuple(a.shape[-2:])}')
    step = _CPU_STRIP_ROWS if a.device.type == 'cpu' else h
    strips = (_ssim_map_sum(a[..., top:top + step + 10, :], b[..., top:top + step + 10, :])
              for top in range(0, h, step))
    total = functools.reduce(torch.add, strips)  # h >= 1, so there is at least one strip
    return (total / (h * w)).mean(dim=1)
