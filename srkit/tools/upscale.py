"""Super-resolving image files: precision checks, grey and alpha policy, and the arrays to save.

Policy (why: a user's file should come back in the kind it went in):
- RGB: the network's output.
- Grey (L, 1-bit, 16-bit grey with ``allow_16bit``): the grey is repeated into RGB for the network (as
  the data pipeline reads it), and the output is turned back into grey with ITU-R 601 luma (Pillow's
  ``convert('L')``); the output file is grey.
- With alpha (RGBA, LA, PA, palette with transparency): the colour goes through the network, the alpha is
  upscaled with MATLAB bicubic and re-attached; the output file keeps its alpha (RGBA, or LA for grey).
  Colours under fully transparent pixels are whatever the file stores: they are super-resolved too.
- Anything else follows ``read_image``'s policy (16-bit refused unless allowed, corrupt files refused).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from srkit.core.errors import DataError, OptionError
from srkit.data.image_io import img_to_tensor, read_image, tensor_to_img
from srkit.models.inference import predict, warn_if_tiling_inexact
from srkit.ops.imresize import imresize
from srkit.tools.models import LoadedModel

__all__ = ['SourceImage', 'amp_dtype', 'read_source', 'super_resolve', 'upscale_source']

_GREY_MODES = {'L', '1', 'LA', 'La'}
_ALPHA_MODES = {'RGBA', 'LA', 'PA', 'La', 'RGBa'}


@dataclass
class SourceImage:
    rgb: np.ndarray            # HWC uint8, what the network sees
    grey: bool                 # save the result as grey
    alpha: np.ndarray | None   # HW uint8, re-attached after upscaling


def amp_dtype(precision: str, model: LoadedModel) -> torch.dtype | None:
    """The autocast dtype for 'fp32' / 'fp16' / 'bf16', refusing fp16 where it is wrong or unsupported."""
    if precision == 'fp32':
        return None
    if precision == 'fp16':
        if not model.spec.fp16_safe:
            raise OptionError(f'--fp16: {model.arch} is not fp16-safe (its spec says fp16_safe=False); use --bf16.')
        if model.device.type != 'cuda':
            raise OptionError('--fp16 needs a CUDA device (CPU autocast fp16 is slow and inexact); '
                              'use --bf16 on a CPU.')
        return torch.float16
    if precision == 'bf16':
        return torch.bfloat16
    raise OptionError(f'Unknown precision {precision!r}: fp32, fp16 or bf16.')


def _peek_mode(path: Path) -> tuple[str, bool]:
    """The file's mode and whether a palette marks a transparent colour ('' when Pillow cannot open it)."""
    try:
        with Image.open(path) as img:
            return img.mode, 'transparency' in img.info
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return '', False  # read_image gives the precise message


def read_source(path: str | Path, *, allow_16bit: bool = False) -> SourceImage:
    """Decode a file into what the network needs plus how to save the result (module policy)."""
    path = Path(path)
    mode, transparent = _peek_mode(path)
    if mode in _ALPHA_MODES or (mode == 'P' and transparent):
        try:
            with Image.open(path) as img:
                rgba = np.array(img.convert('RGBA'))
        except (OSError, ValueError, SyntaxError) as exc:
            raise DataError(f'{path}: the image data is truncated or corrupt ({exc}).') from None
        return SourceImage(np.ascontiguousarray(rgba[..., :3]), mode in _GREY_MODES, rgba[..., 3])
    grey = mode in _GREY_MODES or mode.startswith('I')
    return SourceImage(read_image(path, allow_16bit=allow_16bit, hint='pass --allow_16bit'), grey, None)


@torch.no_grad()
def super_resolve(model: LoadedModel, rgb: np.ndarray, *, tile: int = 0, overlap: int = 16, ensemble: bool = False,
                  dtype: torch.dtype | None = None) -> np.ndarray:
    """HWC uint8 RGB in, HWC uint8 RGB out: padded to the arch's multiple, optionally tiled and ensembled."""
    warn_if_tiling_inexact(model.net, model.spec.tiling_exact, model.arch, tile)
    lq = img_to_tensor(rgb).unsqueeze(0).to(model.device)
    autocast = torch.autocast(model.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with autocast:
        out = predict(model.net, lq, model.out_scale, multiple=model.spec.pad_multiple, min_size=model.spec.min_size,
                      tile=tile, overlap=overlap, ensemble=ensemble)
    return tensor_to_img(out.float().cpu())


def _upscale_alpha(alpha: np.ndarray, scale: int) -> np.ndarray:
    if scale == 1:
        return alpha
    up = imresize(alpha.astype(np.float64) / 255.0, scale)
    return np.clip(np.round(up * 255.0), 0, 255).astype(np.uint8)


def upscale_source(model: LoadedModel, source: SourceImage, **kwargs) -> np.ndarray:
    """The array to save: HW (grey), HWC RGB, HWx2 (grey + alpha) or HWx4 (RGBA)."""
    out = super_resolve(model, source.rgb, **kwargs)
    if source.grey:
        out = np.asarray(Image.fromarray(out).convert('L'))
    if source.alpha is None:
        return out
    alpha = _upscale_alpha(source.alpha, model.out_scale)
    colour = out[..., None] if out.ndim == 2 else out
    return np.concatenate([colour, alpha[..., None]], axis=2)


