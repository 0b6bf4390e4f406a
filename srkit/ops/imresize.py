"""MATLAB-faithful bicubic ``imresize`` for numpy images and torch batches.

The benchmark LR images of the SR literature were made with MATLAB ``imresize(img, 1/s, 'bicubic')``;
a resize that differs by one grey level on a few pixels moves PSNR by hundredths of a dB, so this module
reproduces MATLAB's arithmetic: the cubic kernel with a = -0.5, the kernel widened by 1/scale when
shrinking (antialiasing), MATLAB's 1-based index map with symmetric padding at the borders, and the
dimension with the smaller scale resized first (height first on a tie). uint8 images follow MATLAB's
uint8 path (double arithmetic, rounded to uint8 after each pass); float images are never rounded.
"""
from __future__ import annotations

import functools
import math
from typing import Sequence, TypeVar

import numpy as np
import torch

__all__ = ['imresize', 'modcrop', 'bicubic_downscale', 'bicubic_degrade']

Image = TypeVar('Image', np.ndarray, torch.Tensor)


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5, written as MATLAB's ``cubic``."""
    absx = np.abs(x)
    absx2 = absx * absx
    absx3 = absx2 * absx
    near = (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1)
    far = (-0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2) * ((absx > 1) & (absx <= 2))
    return near + far


@functools.lru_cache(maxsize=256)
def _contributions(in_len: int, out_len: int, scale: float, antialias: bool) -> tuple[np.ndarray, np.ndarray]:
    """Source indices (0-based) and weights of every output pixel, as MATLAB's ``contributions``.

    Cached: training resizes thousands of patches of the same few sizes.
    """
    kernel_width = 4.0
    if scale < 1 and antialias:
        kernel_width /= scale

        def kernel(x: np.ndarray) -> np.ndarray:
            return scale * _cubic(scale * x)
    else:
        kernel = _cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)
    weights = kernel(u[:, None] - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # MATLAB's symmetric padding: index k outside 1..in_len mirrors, edge pixel repeated.
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    indices = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_len)]
    keep = np.any(weights != 0, axis=0)
    weights, indices = weights[:, keep], indices[:, keep]
    weights.flags.writeable = False
    indices.flags.writeable = False
    return indices, weights


@functools.lru_cache(maxsize=256)
def _torch_matrix(in_len: int, out_len: int, scale: float, antialias: bool, device: torch.device,
                  dtype: torch.dtype) -> torch.Tensor:
    """The tables as a dense (out_len, in_len) matrix on the batch's device, built in float64.

    A dense matmul beats gathering the taps on CPU and GPU alike for training-patch sizes, and takes any
    number of leading batch dimensions.
    """
    indices, weights = _contributions(in_len, out_len, scale, antialias)
    matrix = np.zeros((out_len, in_len))
    rows = np.repeat(np.arange(out_len), indices.shape[1])
    np.add.at(matrix, (rows, indices.ravel()), weights.ravel())  # mirrored taps may hit one pixel twice
    return torch.from_numpy(matrix).to(device=device, dtype=dtype)


def _round_uint8(x: np.ndarray) -> np.ndarray:
    """Round halves away from zero and saturate to 0..255, as MATLAB's double -> uint8 conversion."""
    whole = np.trunc(x)
    whole += np.sign(x) * (np.abs(x - whole) >= 0.5)
    return np.clip(whole, 0, 255)


def _resize_axis_numpy(img: np.ndarray, axis: int, table: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    indices, weights = table
    shape = [1] * img.ndim
    shape[axis] = -1

    def term(tap: int) -> np.ndarray:
        return np.take(img, indices[:, tap], axis=axis) * weights[:, tap].reshape(shape)

    out = term(0)  # at least one tap is kept: every row of weights sums to 1
    for tap in range(1, indices.shape[1]):  # taps in MATLAB's order, so float64 sums match it
        out = out + term(tap)
    return out


def _plan(in_hw: tuple[int, int], scale: float | Sequence[float] | None,
          output_shape: Sequence[int] | None) -> tuple[tuple[int, int], tuple[float, float]]:
    """Output size and per-dimension scale, as MATLAB derives them from either argument."""
    if (scale is None) == (output_shape is None):
        raise ValueError('imresize needs exactly one of scale and output_shape')
    if output_shape is not None:
        out_hw = (int(output_shape[0]), int(output_shape[1]))
        if min(out_hw) < 1:
            raise ValueError(f'imresize: output_shape must be positive, got {tuple(output_shape)}')
        return out_hw, (out_hw[0] / in_hw[0], out_hw[1] / in_hw[1])
    assert scale is not None  # exactly one of scale and output_shape is given
    if isinstance(scale, (int, float, np.number)):
        scales = (float(scale), float(scale))
    else:
        scales = (float(scale[0]), float(scale[1]))
    if min(scales) <= 0:
        raise ValueError(f'imresize: scale must be positive, got {scale}')
    # MATLAB's ceil(scale * size); the 1e-9 slack absorbs float noise such as 0.1 * 30 = 3.0000000000000004.
    h, w = (max(1, math.ceil(n * s - 1e-9)) for n, s in zip(in_hw, scales))
    return (h, w), scales


def _passes(in_hw: tuple[int, int], scale: float | Sequence[float] | None, output_shape: Sequence[int] | None,
            antialias: bool) -> list[tuple[int, tuple[int, int, float, bool]]]:
    """The two 1-D resizes, smaller scale first (height first on a tie): (dimension, table key) each."""
    out_hw, scales = _plan(in_hw, scale, output_shape)
    order = sorted(range(2), key=lambda k: scales[k])  # stable: height first on a tie
    return [(k, (in_hw[k], out_hw[k], scales[k], antialias)) for k in order]


def imresize(img: Image, scale: float | Sequence[float] | None = None, output_shape: Sequence[int] | None = None,
             antialias: bool = True) -> Image:
    """MATLAB ``imresize(img, scale or output_shape, 'bicubic')``.

    numpy: HWC or HW; uint8 follows MATLAB's uint8 path (bit-exact with MATLAB), floats are computed in
    float64 and returned as float64 without rounding. torch: CHW or NCHW, any float dtype, kept.
    """
    if isinstance(img, torch.Tensor):
        if img.dim() not in (3, 4) or not img.is_floating_point():
            raise TypeError(f'imresize: torch input must be a float CHW or NCHW tensor, got '
                            f'{img.dtype} {tuple(img.shape)}')
        out = img
        for k, key in _passes((img.shape[-2], img.shape[-1]), scale, output_shape, antialias):
            matrix = _torch_matrix(*key, out.device, out.dtype)
            out = torch.matmul(matrix, out) if k == 0 else torch.matmul(out, matrix.T)
        return out
    if img.ndim not in (2, 3) or not (img.dtype == np.uint8 or np.issubdtype(img.dtype, np.floating)):
        raise TypeError(f'imresize: numpy input must be a uint8 or float HW/HWC array, got '
                        f'{img.dtype} {img.shape}')
    is_uint8 = img.dtype == np.uint8
    out = img.astype(np.float64)
    for k, key in _passes((img.shape[0], img.shape[1]), scale, output_shape, antialias):
        out = _resize_axis_numpy(out, k, _contributions(*key))
        if is_uint8:
            out = _round_uint8(out)
    return out.astype(np.uint8) if is_uint8 else out


def modcrop(img: Image, multiple: int) -> Image:
    """Crop height and width to multiples of ``multiple`` from the top-left (numpy HW[C], torch [N]CHW)."""
    if isinstance(img, torch.Tensor):
        h, w = img.shape[-2:]
        return img[..., :h - h % multiple, :w - w % multiple]
    h, w = img.shape[:2]
    return img[:h - h % multiple, :w - w % multiple, ...]


def bicubic_downscale(hr: Image, scale: int) -> Image:
    """The LR of an HR image whose sides are multiples of ``scale``: MATLAB's
    ``im2uint8(imresize(im2double(hr), 1/scale, 'bicubic'))``, float arithmetic rounded to 8 bits once.

    This is BasicSR's benchmark protocol (the LRbicx{s} sets) and srkit's one "bicubic, then round": numpy
    uint8 HWC in, uint8 out (data preparation, datasets); torch float NCHW/CHW in [0, 1] in, the same dtype
    on the 1/255 grid out (batches made on the fly).
    """
    h, w = hr.shape[-3:-1] if isinstance(hr, np.ndarray) else hr.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f'bicubic_downscale: HR size {(h, w)} is not a multiple of scale {scale}')
    if isinstance(hr, torch.Tensor):
        lr = imresize(hr.double(), 1 / scale) * 255.0
        return (torch.floor(lr + 0.5).clamp_(0, 255) / 255).to(hr.dtype)  # halves up, as MATLAB for x >= 0
    if hr.dtype != np.uint8:
        raise TypeError(f'bicubic_downscale expects a uint8 image, got {hr.dtype}')
    return _round_uint8(imresize(hr / 255.0, 1 / scale) * 255.0).astype(np.uint8)


def bicubic_degrade(hr_uint8: np.ndarray, scale: int, style: str = 'basicsr') -> np.ndarray:
    """The uint8 LR image of a benchmark protocol, made from the original HR image.

    ``basicsr``: HR cropped to a multiple of 12 (GTmod12), then ``bicubic_downscale`` (the LRbicx{s} sets;
    values within float noise of a .5 tie round either way, so the shipped files differ by one grey level
    in a few values: 31 of Set5 x2, 1 at x4, none at x3; docs/DATASETS.md has the table). ``edsr``: HR
    cropped to a multiple of ``scale``, MATLAB's uint8 imresize, which rounds between its passes (the
    LR_bicubic/X{s} sets).
    """
    if hr_uint8.dtype != np.uint8:
        raise TypeError(f'bicubic_degrade expects a uint8 image, got {hr_uint8.dtype}')
    if style == 'edsr':
        return imresize(modcrop(hr_uint8, scale), 1 / scale)
    if style == 'basicsr':
        return bicubic_downscale(modcrop(hr_uint8, 12), scale)
    raise ValueError(f"bicubic_degrade: style must be 'basicsr' or 'edsr', got {style!r}")
