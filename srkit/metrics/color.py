"""MATLAB ``rgb2ycbcr`` / ``ycbcr2rgb`` (ITU-R BT.601, Y in 16..235) on values in [0, 255].

SR papers score the Y channel of MATLAB's conversion; unlike MATLAB on uint8 images, the result is not
rounded (BasicSR's convention, which the reference numbers use). numpy images are HWC, tensors NCHW.
"""
from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

__all__ = ['rgb_to_y', 'rgb2ycbcr', 'ycbcr2rgb']

Image = TypeVar('Image', np.ndarray, torch.Tensor)

# MATLAB's rgb2ycbcr for double images in [0, 1], rescaled here to inputs in [0, 255].
_MATRIX = np.array([[65.481, 128.553, 24.966],
                    [-37.797, -74.203, 112.0],
                    [112.0, -93.786, -18.214]]) / 255.0
_OFFSET = np.array([16.0, 128.0, 128.0])
_INVERSE = np.linalg.inv(_MATRIX)


def _apply(img: Image, matrix: np.ndarray, before: np.ndarray, after: np.ndarray) -> Image:
    """``matrix @ (pixel - before) + after`` on the channel axis (last for numpy, dim 1 for torch)."""
    if isinstance(img, torch.Tensor):
        if img.dim() != 4 or img.shape[1] != 3:
            raise ValueError(f'expected an NCHW tensor with 3 channels, got shape {tuple(img.shape)}')
        m = torch.as_tensor(matrix, dtype=img.dtype, device=img.device)
        b = torch.as_tensor(before, dtype=img.dtype, device=img.device).view(1, 3, 1, 1)
        a = torch.as_tensor(after, dtype=img.dtype, device=img.device).view(1, 3, 1, 1)
        return torch.einsum('oc,nchw->nohw', m, img - b) + a
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f'expected an HWC array with 3 channels, got shape {img.shape}')
    return (np.asarray(img, dtype=np.float64) - before) @ matrix.T + after


def rgb2ycbcr(img: Image) -> Image:
    """RGB -> YCbCr (Y in 16..235, Cb/Cr in 16..240) for values in [0, 255]; numpy out is float64."""
    return _apply(img, _MATRIX, np.zeros(3), _OFFSET)


def ycbcr2rgb(img: Image) -> Image:
    """The exact inverse of :func:`rgb2ycbcr` (MATLAB's ``ycbcr2rgb``), without clipping."""
    return _apply(img, _INVERSE, _OFFSET, np.zeros(3))


def rgb_to_y(img: Image) -> Image:
    """The Y channel only: numpy HWC -> HW float64, torch NCHW -> N1HW in the input dtype."""
    if isinstance(img, torch.Tensor):
        if img.dim() != 4 or img.shape[1] != 3:
            raise ValueError(f'expected an NCHW tensor with 3 channels, got shape {tuple(img.shape)}')
        r, g, b = img.split(1, dim=1)
        return (r * float(_MATRIX[0, 0])).add_(g, alpha=float(_MATRIX[0, 1])).add_(
            b, alpha=float(_MATRIX[0, 2])).add_(16.0)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f'expected an HWC array with 3 channels, got shape {img.shape}')
    return np.asarray(img, dtype=np.float64) @ _MATRIX[0] + 16.0
