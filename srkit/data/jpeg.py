"""Differentiable JPEG in torch: Real-ESRGAN's compression artefacts made on the training batch, one quality per image.

The steps are baseline JPEG's (what libjpeg, hence Pillow and OpenCV, do): RGB -> YCbCr (JFIF matrix), 4:2:0
chroma (2x2 means), level shift and 8x8 DCT, quantisation by the standard tables of the JPEG specification
(Annex K) scaled by libjpeg's quality rule, then dequantisation, inverse DCT, chroma upsampling and YCbCr ->
RGB. Rounding of the quantised coefficients is a straight-through estimator: the forward pass is the true
rounding, the gradient is the identity, so gradients reach the image through the compression.

Where this differs from BasicSR's DiffJPEG (each time towards what a real encoder does, which the tests
check against Pillow): its tables are transposed and used unrounded (libjpeg rounds ``base * scale / 100``
and keeps it in 1..255, which also makes quality 100 valid), it pads with zeros where encoders repeat the
edge pixels, it upsamples chroma by repetition where libjpeg's decoder interpolates (``fancy upsampling``),
and its rounding is a cubic approximation (BasicSR's Real-ESRGAN model uses true rounding, as here).
Sizes that are not multiples of 16 are padded to them and cropped back, as in BasicSR.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ['diff_jpeg', 'quality_to_scale', 'LUMA_TABLE', 'CHROMA_TABLE']

# Annex K of ITU-T T.81, in natural order: row = vertical frequency, column = horizontal frequency.
LUMA_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
CHROMA_TABLE = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    *((99,) * 8 for _ in range(4)),
)

_RGB_TO_YCBCR = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))
_YCBCR_TO_RGB = ((1.0, 0.0, 1.402), (1.0, -0.344136, -0.714136), (1.0, 1.772, 0.0))


def quality_to_scale(quality: torch.Tensor) -> torch.Tensor:
    """libjpeg's percentage applied to the base tables: ``floor(5000 / q)`` below 50, ``200 - 2 q`` from 50 on."""
    return torch.where(quality < 50, torch.floor(5000.0 / quality), 200.0 - 2.0 * quality)


def _tables(quality: torch.Tensor, base: tuple[tuple[int, ...], ...]) -> torch.Tensor:
    """(N, 1, 1, 8, 8) tables, libjpeg's ``clamp(floor((base * scale + 50) / 100), 1, 255)`` per image."""
    table = torch.tensor(base, dtype=quality.dtype, device=quality.device)
    scale = quality_to_scale(quality).view(-1, 1, 1, 1, 1)
    return torch.floor((table * scale + 50) / 100).clamp(1, 255)


def _dct_matrix(device: torch.device) -> torch.Tensor:
    """The orthonormal 8-point DCT-II, ``D[u, x]``; a block's coefficients are ``D @ block @ D.T``."""
    u = torch.arange(8, dtype=torch.float64).view(8, 1)
    x = torch.arange(8, dtype=torch.float64).view(1, 8)
    matrix = torch.cos((2 * x + 1) * u * math.pi / 16) * math.sqrt(2 / 8)
    matrix[0] /= math.sqrt(2)
    return matrix.to(device=device, dtype=torch.float32)


def _round(x: torch.Tensor) -> torch.Tensor:
    """True rounding forward, identity gradient backward (straight-through)."""
    return x + (torch.round(x) - x).detach()


def _compress_plane(plane: torch.Tensor, tables: torch.Tensor, dct: torch.Tensor) -> torch.Tensor:
    """Quantise and dequantise one (N, H, W) plane in 8x8 blocks; returns the decoded plane."""
    n, h, w = plane.shape
    blocks = (plane - 128).view(n, h // 8, 8, w // 8, 8).transpose(2, 3)  # (N, H/8, W/8, 8, 8)
    coefficients = dct @ blocks @ dct.T
    coefficients = _round(coefficients / tables) * tables
    decoded = dct.T @ coefficients @ dct + 128
    return decoded.transpose(2, 3).reshape(n, h, w)


def diff_jpeg(img: torch.Tensor, quality: float | torch.Tensor) -> torch.Tensor:
    """``img`` (N, 3, H, W) RGB in [0, 1] after JPEG at ``quality`` (a number or one per image, 1..100).

    Returns float values in [0, 1] (not rounded to 8 bits); works on any device and any H, W.
    """
    if img.dim() != 4 or img.shape[1] != 3:
        raise ValueError(f'diff_jpeg expects an (N, 3, H, W) RGB batch, got shape {tuple(img.shape)}')
    n, _, h, w = img.shape
    quality = torch.as_tensor(quality, dtype=torch.float32, device=img.device).flatten()
    if quality.numel() == 1:
        quality = quality.expand(n)
    if quality.numel() != n:
        raise ValueError(f'diff_jpeg: {quality.numel()} qualities for a batch of {n} images')
    if bool(((quality < 1) | (quality > 100)).any()):
        raise ValueError(f'diff_jpeg: quality must be in 1..100, got {quality.tolist()}')
    pad_h, pad_w = -h % 16, -w % 16
    x = F.pad(img, (0, pad_w, 0, pad_h), mode='replicate') if pad_h or pad_w else img
    to_ycbcr = torch.tensor(_RGB_TO_YCBCR, dtype=img.dtype, device=img.device)
    ycbcr = torch.einsum('ij,njhw->nihw', to_ycbcr, x * 255)
    luma = ycbcr[:, 0]
    chroma = F.avg_pool2d(ycbcr[:, 1:], 2) + 128
    dct = _dct_matrix(img.device)
    luma = _compress_plane(luma, _tables(quality, LUMA_TABLE), dct)
    chroma_tables = _tables(quality, CHROMA_TABLE)
    cb = _compress_plane(chroma[:, 0], chroma_tables, dct)
    cr = _compress_plane(chroma[:, 1], chroma_tables, dct)
    chroma = F.interpolate(torch.stack([cb, cr], 1) - 128, scale_factor=2, mode='bilinear', align_corners=False)
    to_rgb = torch.tensor(_YCBCR_TO_RGB, dtype=img.dtype, device=img.device)
    rgb = torch.einsum('ij,njhw->nihw', to_rgb, torch.cat([luma.unsqueeze(1), chroma], 1))
    return (rgb[:, :, :h, :w] / 255).clamp(0, 1)
