"""Static post-training INT8 quantization of an exported float32 ONNX super-resolution network.

onnxruntime's ``quantize_static`` in the QDQ format (QuantizeLinear/DequantizeLinear around float ops, the
format its CPU kernels fuse into integer convs), weights int8 per output channel, activations uint8 with
ranges measured by MinMax calibration. Calibration data are LR patches cut at random (seeded) from HR
training images and bicubic-downscaled as the training LR were, so the measured ranges are those the
network meets in use; a benchmark image would leak the test set into the model.

A quantized file appears only once it ran in onnxruntime and its output stayed within ``min_psnr`` of the
float32 model's on the calibration patches (written beside the target, verified, then renamed). onnx and
onnxruntime are optional packages, imported when used.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from srkit.core.errors import DataError, SrkitError
from srkit.data.image_io import IMAGE_EXTENSIONS, read_image
from srkit.ops.imresize import bicubic_downscale
from srkit.tools.onnx_export import require_package

__all__ = ['calibration_patches', 'model_scale', 'output_psnr', 'quantize_int8', 'DEFAULT_MIN_PSNR']

# The float32 and int8 outputs, as 8-bit images, must agree to this PSNR on the calibration patches. uint8
# activations cut each tensor's range in 256 steps, and the ET forms carry the image itself through channels
# whose range the features set (up to about 5-7), so steps of several grey levels are expected: with 8-bit
# weights the released ETDS files score 28.9-35.0 dB (0.9-3.9 dB lost on Set5), ABPN, ABPN_ET and ECBSR
# 31.1-42.8, ECBSR_ET 17.9-28.5 (benchmarks/bench_int8.py). Below 24 dB the model has gone badly wrong:
# ECBSR_ET_M6C40 (17.9-22.6 dB) loses 8-12 dB on Set5, and inputs outside the calibrated ranges (noise into
# a net calibrated on photographs) gave 19.6 dB on a small test network. A bound against broken models, not
# a quality bar: docs/ETDS.md has the PSNR per checkpoint.
DEFAULT_MIN_PSNR = 24.0


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f'{folder}: calibration folder not found; give a folder of training images.')
    files = sorted(p for p in folder.iterdir()
                   if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith('.') and p.is_file())
    if not files:
        raise DataError(f'{folder}: no images found; static quantization needs calibration images '
                        f'({", ".join(IMAGE_EXTENSIONS)}).')
    return files


def _size(path: Path) -> tuple[int, int]:
    """(height, width) read from the file's header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            return img.height, img.width
    except OSError as exc:  # includes Pillow's UnidentifiedImageError
        raise DataError(f'{path}: not a readable image ({exc}).') from None


def calibration_patches(folder: str | os.PathLike, scale: int, *, size: tuple[int, int] = (48, 48),
                        count: int = 32, seed: int = 0) -> list[np.ndarray]:
    """``count`` LR patches (1, 3, H, W) float32 in [0, 1], ``size`` = (H, W), from the HR images in ``folder``.

    Each patch: an image drawn at random, an HR crop of ``size * scale`` at a random place, MATLAB bicubic
    downscaling. Images smaller than the crop are never drawn. Everything comes from ``seed``. Only drawn
    images are decoded, one at a time (sizes come from the file headers): a folder of 2K photographs
    would not fit in memory.
    """
    height, width = size[0] * scale, size[1] * scale
    sizes = {path: _size(path) for path in _image_files(Path(folder))}
    large = [path for path, (h, w) in sizes.items() if h >= height and w >= width]
    if not large:
        raise DataError(f'{folder}: no image is at least {width}x{height} pixels (an LR patch of {size[1]}x{size[0]} '
                        f'at x{scale}); give larger images or a smaller patch.')
    rng = np.random.default_rng(seed)
    patches = []
    for _ in range(count):
        img = read_image(large[rng.integers(len(large))])
        top = rng.integers(img.shape[0] - height + 1)
        left = rng.integers(img.shape[1] - width + 1)
        lr = bicubic_downscale(np.ascontiguousarray(img[top:top + height, left:left + width]), scale)
        patches.append(np.ascontiguousarray(lr.transpose(2, 0, 1)[None], dtype=np.float32) / 255)
    return patches


def _session(path: str | os.PathLike) -> Any:
    """A CPU session; a file onnxruntime cannot load is the user's error, named with onnxruntime's reason."""
    ort = require_package('onnxruntime')
    state = ort.capi.onnxruntime_pybind11_state
    try:
        return ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    except (state.NoSuchFile, state.InvalidProtobuf, state.InvalidGraph, state.Fail) as exc:
        raise SrkitError(f'onnxruntime cannot load this model ({exc}).', file=str(path)) from exc


def model_scale(path: str | os.PathLike) -> tuple[int, tuple[int, int] | None]:
    """The upscaling factor of an ONNX SR model, found by running it, and its fixed input (H, W) if any.

    Running it, rather than asking the user, makes a scale that does not fit the file impossible.
    """
    session = _session(path)
    dims = session.get_inputs()[0].shape
    fixed = (dims[2], dims[3]) if all(isinstance(d, int) for d in dims[2:]) else None
    h, w = fixed or (16, 16)
    out = session.run(None, {session.get_inputs()[0].name: np.zeros((1, 3, h, w), np.float32)})[0]
    scale = out.shape[2] // h if out.ndim == 4 else 0
    if scale < 1 or out.shape[2:] != (scale * h, scale * w):
        raise SrkitError(f'output shape {out.shape} for input {(1, 3, h, w)} is not an upscaled image.',
                         file=str(path))
    return scale, fixed


def _outputs(session: Any, inputs: Sequence[np.ndarray]) -> np.ndarray:
    """The model's outputs as the 8-bit images a user would save, float64."""
    name = session.get_inputs()[0].name
    return np.stack([np.round(np.clip(session.run(None, {name: x})[0], 0, 1) * 255).astype(np.float64)
                     for x in inputs])


def output_psnr(reference: str | os.PathLike, candidate: str | os.PathLike, inputs: Sequence[np.ndarray]) -> float:
    """PSNR (dB, RGB, one MSE over all ``inputs``) of ``candidate``'s 8-bit outputs against ``reference``'s."""
    mse = np.mean((_outputs(_session(reference), inputs) - _outputs(_session(candidate), inputs)) ** 2)
    return float('inf') if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def _reader(patches: Sequence[np.ndarray], input_name: str) -> Any:
    """onnxruntime's calibration protocol over ``patches``: one input dict per call, then None."""
    quantization = require_package('onnxruntime.quantization')

    class PatchReader(quantization.CalibrationDataReader):  # type: ignore[name-defined]
        def __init__(self) -> None:
            self._feeds = iter({input_name: patch} for patch in patches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    return PatchReader()


def quantize_int8(model: str | os.PathLike, output: str | os.PathLike, patches: Sequence[np.ndarray], *,
                  per_channel: bool = True, reduce_range: bool = False,
                  min_psnr: float = DEFAULT_MIN_PSNR) -> float:
    """Write the INT8 QDQ form of the float32 ONNX ``model`` to ``output``; returns its PSNR against ``model``.

    ``patches``: calibration inputs (``calibration_patches``); none is an error. ``reduce_range``: 7-bit
    weights, onnxruntime's advice for x86 CPUs without VNNI, whose u8 x s8 multiply-adds can saturate.
    ``output`` appears only if the quantized model runs and scores at least ``min_psnr`` dB against
    ``model`` on the patches; an existing file is replaced (callers decide whether that is allowed).
    """
    if not patches:
        raise SrkitError('static INT8 quantization needs calibration images, and none were given.')
    quantization = require_package('onnxruntime.quantization')
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    unverified = output.with_name(f'.{output.name}.{os.getpid()}.unverified')
    try:
        with tempfile.TemporaryDirectory() as tmp:
            prepared = Path(tmp) / 'prepared.onnx'  # shape inference + graph optimisation, as ORT advises
            quantization.quant_pre_process(str(model), str(prepared), skip_symbolic_shape=True)
            input_name = _session(prepared).get_inputs()[0].name
            quantization.quantize_static(
                str(prepared), str(unverified), _reader(patches, input_name),
                quant_format=quantization.QuantFormat.QDQ, per_channel=per_channel, reduce_range=reduce_range,
                activation_type=quantization.QuantType.QUInt8, weight_type=quantization.QuantType.QInt8)
        psnr = output_psnr(model, unverified, patches)
        if not psnr >= min_psnr:  # NaN fails too
            raise SrkitError(f'{output}: the INT8 model scores {psnr:.2f} dB against the float32 model on the '
                             f'calibration patches, below the {min_psnr:g} dB required; nothing was written.')
        os.replace(unverified, output)
    finally:
        unverified.unlink(missing_ok=True)
    return psnr
