"""Reading and writing 8-bit RGB images, with one explicit policy for every other kind of file.

Why a policy and not ``Image.convert('RGB')``: a silent conversion hides data bugs. Pillow would drop an
alpha channel that carries content, squash 16-bit PNGs to their high byte, and decode a truncated file as
grey padding. Here each case is either a documented, lossless-in-spirit conversion or a ``DataError`` that
names the file and the reason:

- RGB: as is. Grayscale (L, 1-bit) and palette images: converted to RGB (grey repeated in 3 channels).
- CMYK (JPEG/TIFF), YCbCr, LAB, HSV, RGBX: converted to RGB by Pillow (embedded ICC profiles are ignored).
- Alpha (RGBA, LA, PA, palette with transparency): the alpha is dropped when it is fully opaque
  (255 everywhere); otherwise refused, since SR on a transparent image has no single right background.
- More than 8 bits per sample (16-bit PNG/TIFF, 32-bit integer or float modes): refused unless
  ``allow_16bit=True``, which keeps the high byte (``v >> 8``), the reduction Pillow's decoders apply to
  16-bit colour. It can differ from ``round(v / 257)`` by one grey level. Float images are always refused.
- Zero-byte, not an image, truncated or corrupt: refused.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from srkit.core.atomic import atomic_file
from srkit.core.errors import DataError

__all__ = ['IMAGE_EXTENSIONS', 'read_image', 'decode_image', 'write_image', 'encode_png', 'img_to_tensor',
           'tensor_to_img']

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.ppm', '.pgm', '.tif', '.tiff', '.webp')

PathOrBytes = Union[str, os.PathLike, bytes]

_TO_RGB = {'RGB', 'CMYK', 'YCbCr', 'LAB', 'HSV', 'RGBX', 'P', 'L', '1'}
_ALPHA = {'RGBA', 'LA', 'PA', 'La', 'RGBa'}


_HINT_16BIT = 'pass allow_16bit=True'


def read_image(source: PathOrBytes, *, name: str | None = None, allow_16bit: bool = False,
               hint: str = _HINT_16BIT) -> np.ndarray:
    """Decode a file (path) or encoded bytes into an HWC uint8 RGB array, following the module's policy.

    ``name`` labels bytes in error messages (e.g. the LMDB key they came from); ``hint``: see decode_image.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_image(bytes(source), name or '<bytes>', allow_16bit=allow_16bit, hint=hint)
    path = Path(source)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f'{path}: image file not found.') from None
    except OSError as exc:
        raise DataError(f'{path}: cannot read the file ({exc.strerror or exc}).') from None
    return decode_image(data, name or str(path), allow_16bit=allow_16bit, hint=hint)


def decode_image(data: bytes, name: str, *, allow_16bit: bool = False, hint: str = _HINT_16BIT) -> np.ndarray:
    """``read_image`` on bytes already in memory; ``name`` is what error messages call them, ``hint`` how the
    caller's user allows 16-bit images where they are (an option, a flag)."""
    if not data:
        raise DataError(f'{name}: the file is empty (0 bytes), not an image.')
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise DataError(f'{name}: not an image Pillow can read (unknown or corrupt format).') from None
    except Image.DecompressionBombError as exc:
        raise DataError(f'{name}: refused as a possible decompression bomb ({exc}).') from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f'{name}: corrupt image header ({exc}).') from None
    with img:
        high_depth = _high_bit_depth(img)
        if high_depth and not allow_16bit:
            raise DataError(f'{name}: {high_depth} image; srkit reads 8-bit images. Convert it to 8 bit, or '
                            f'{hint} to keep the high byte of each sample.')
        try:
            img.load()
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise DataError(f'{name}: the image data is truncated or corrupt ({exc}).') from None
        return _to_rgb(img, name)


def _high_bit_depth(img: Image.Image) -> str:
    """A description when samples have more than 8 bits ('' otherwise), read before decoding."""
    if img.mode == 'F':
        return 'floating-point'
    if img.mode.startswith('I'):
        return f'{img.mode} (more than 8 bits per sample)'
    for tile in getattr(img, 'tile', None) or ():
        args = tile[3] if len(tile) > 3 else ''
        rawmode = args if isinstance(args, str) else (args[0] if args else '')
        if isinstance(rawmode, str) and (';16' in rawmode or ';32' in rawmode):
            return f'{rawmode} (more than 8 bits per sample)'
    return ''


def _to_rgb(img: Image.Image, name: str) -> np.ndarray:
    mode = img.mode
    if mode == 'F':
        raise DataError(f'{name}: floating-point images are not supported; save it as an 8-bit image.')
    if mode.startswith('I'):  # allowed 16/32-bit integer grey: keep the high byte of the 16-bit value
        grey = np.asarray(img).astype(np.int64)
        if grey.max(initial=0) > 65535 or grey.min(initial=0) < 0:
            raise DataError(f'{name}: {mode} values outside 0..65535 cannot be reduced to 8 bits.')
        return np.repeat((grey >> 8).astype(np.uint8)[..., None], 3, axis=2)
    if mode == 'P' and 'transparency' in img.info:
        img = img.convert('RGBA')
        mode = 'RGBA'
    if mode in _ALPHA:
        rgba = img.convert('RGBA')
        alpha = np.asarray(rgba)[..., 3]
        if alpha.min() < 255:
            transparent = int((alpha < 255).sum())
            raise DataError(f'{name}: {mode} image with transparency ({transparent} pixels not fully opaque); '
                            'srkit will not guess a background. Flatten it onto a background and save it as RGB.')
        return np.array(np.asarray(rgba)[..., :3])
    if mode not in _TO_RGB:
        raise DataError(f'{name}: unsupported image mode {mode!r}; save it as an 8-bit RGB or grey image.')
    return np.array(img if mode == 'RGB' else img.convert('RGB'))  # a writable copy, not Pillow's buffer


def _check_uint8_image(img: np.ndarray, what: str) -> None:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim not in (2, 3) \
            or (img.ndim == 3 and img.shape[2] not in (1, 2, 3, 4)):
        shape = getattr(img, 'shape', None)
        raise TypeError(f'{what}: expected a uint8 HW or HWC (1 to 4 channels) array, got '
                        f'{getattr(img, "dtype", type(img).__name__)} {shape}')


def encode_png(img: np.ndarray, compress_level: int = 1) -> bytes:
    """PNG bytes of an HWC uint8 RGB (or HW grey) array; level 1 is BasicSR's LMDB default (fast)."""
    _check_uint8_image(img, 'encode_png')
    out = io.BytesIO()
    Image.fromarray(img[..., 0] if img.ndim == 3 and img.shape[2] == 1 else img).save(
        out, format='PNG', compress_level=compress_level)
    return out.getvalue()


def write_image(path: str | os.PathLike, img: np.ndarray) -> None:
    """Save an HW grey or HWC uint8 array (grey, grey + alpha, RGB, RGBA); the format follows the suffix.

    Atomic: written to a temporary file beside the target, then renamed over it, so an interrupted run
    never leaves a half-written image that a later run would read as corrupt.
    """
    _check_uint8_image(img, f'write_image({path})')
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise DataError(f'{path}: unknown image extension {path.suffix!r}; use one of {", ".join(IMAGE_EXTENSIONS)}.')
    with atomic_file(path) as handle:
        Image.fromarray(img[..., 0] if img.ndim == 3 and img.shape[2] == 1 else img).save(handle, format=fmt)


def img_to_tensor(img: np.ndarray) -> torch.Tensor:
    """HWC image (uint8, or float in [0, 1]) -> CHW float32 tensor in [0, 1]."""
    if img.ndim == 2:
        img = img[..., None]
    array = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def tensor_to_img(tensor: torch.Tensor) -> np.ndarray:
    """CHW (or 1CHW) float tensor -> HWC uint8, as a user would save it: clamp to [0, 1], *255, round."""
    if tensor.dim() == 4:
        if tensor.shape[0] != 1:
            raise ValueError(f'tensor_to_img: expected one image, got a batch of {tensor.shape[0]}')
        tensor = tensor[0]
    if tensor.dim() != 3:
        raise ValueError(f'tensor_to_img: expected a CHW tensor, got shape {tuple(tensor.shape)}')
    array = tensor.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
    return np.ascontiguousarray(array.transpose(1, 2, 0))
