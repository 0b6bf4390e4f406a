"""Export a super-resolution network to ONNX and check the file against PyTorch in onnxruntime.

onnx and onnxruntime are optional: they are imported only inside these functions, and a missing one is
named in the error. Export uses the TorchScript-based exporter (``dynamo=False``): the torch.export one
needs the separate ``onnxscript`` package, and conv/ReLU/PixelShuffle networks need nothing it adds.

``fp16=True`` stores weights and computes in float16 but keeps float32 inputs and outputs
(onnxruntime's float16 converter with ``keep_io_types``), so a float16 file is a drop-in replacement for
the float32 one; it is verified against PyTorch in float32 with ``FP16_ATOL``.
"""
from __future__ import annotations

import importlib
import io
import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from srkit.core.atomic import atomic_file
from srkit.core.errors import SrkitError

__all__ = ['export_onnx', 'verify_onnx', 'require_package', 'FP16_ATOL']

INPUT_NAME = 'input'
OUTPUT_NAME = 'output'
# float16 rounds to 2**-11 relative (4.9e-4 of a [0, 1] pixel) at every op; on a noise image the released
# ETDS, ABPN and ECBSR files differ from float32 by 0.8e-3 to 2.7e-3 (benchmarks/bench_int8.py). 5e-3 is 1.3
# grey levels: margin for deeper nets, while a wrong graph or a weight lost in conversion fails by far more.
# ECBSR(_ET)_M4C16_x2 exceed it on noise only (activations reach 140 there, where float16 steps are 1/8):
# a caller exporting those passes a larger atol.
FP16_ATOL = 5e-3


def require_package(package: str) -> ModuleType:
    """Import an optional package (onnx, onnxruntime, ...) or raise an SrkitError saying what to install."""
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise SrkitError(f'ONNX export needs the package "{package}", which failed to import ({exc}). '
                         f'Install it: pip install {package.split(".")[0]}') from exc


def export_onnx(net: nn.Module, path: str | os.PathLike, input_shape: Sequence[int], opset: int = 17,
                dynamic_hw: bool = True, fp16: bool = False) -> Path:
    """Write ``net`` (eval mode, one NCHW input and one output) to ``path`` atomically; returns the path.

    ``input_shape`` is the (N, C, H, W) example traced; with ``dynamic_hw`` the file accepts any H and W;
    ``fp16``: float16 inside, float32 at the input and output (see the module's docstring).
    An existing file is replaced (callers decide whether that is allowed).
    """
    onnx = require_package('onnx')
    path = Path(path)
    param = next(net.parameters(), None)
    example = torch.rand(*input_shape, generator=torch.Generator().manual_seed(0))  # global RNG untouched
    example = example.to(param.device if param is not None else 'cpu')
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            if not isinstance(net(example), torch.Tensor):
                raise SrkitError(f'{type(net).__name__} returns more than one tensor; export its inference form '
                                 '(for ETDS: convert it with scripts/convert_etds.py first).')
        axes = {INPUT_NAME: {2: 'height', 3: 'width'}, OUTPUT_NAME: {2: 'out_height', 3: 'out_width'}}
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', DeprecationWarning)  # the TorchScript exporter's notice
            # the TorchScript exporter writes to a file object; torch annotates ``f`` as a path only
            torch.onnx.export(net, (example,), buffer, dynamo=False, opset_version=opset,  # type: ignore[arg-type]
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes=axes if dynamic_hw else None)
        model = onnx.load_from_string(buffer.getvalue())
        if fp16:
            model = _to_float16(model)
        onnx.checker.check_model(model)
        with atomic_file(path) as handle:
            handle.write(model.SerializeToString())
    finally:
        net.train(was_training)
    return path


def _to_float16(model: Any) -> Any:
    """The model with float16 weights and arithmetic behind float32 inputs and outputs.

    The converter appends its input casts after the nodes that read them; onnxruntime accepts that, the
    ONNX checker (and other runtimes) do not, hence the topological sort.
    """
    float16 = require_package('onnxruntime.transformers.float16')
    onnx_model = require_package('onnxruntime.transformers.onnx_model')
    converted = onnx_model.OnnxModel(float16.convert_float_to_float16(model, keep_io_types=True))
    converted.topological_sort()
    return converted.model


def verify_onnx(net: nn.Module, path: str | os.PathLike, inputs: torch.Tensor | Sequence[torch.Tensor],
                atol: float = 1e-4, name: str | None = None) -> float:
    """Largest |onnxruntime - PyTorch| over ``inputs`` (each run separately); raises above ``atol``.

    ``name``: how error messages call the file (default ``path``), for a caller that verifies a temporary
    file before it becomes the one the user asked for.
    """
    ort = require_package('onnxruntime')
    name = name or str(path)
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    batches = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs)
    param = next(net.parameters(), None)
    device = param.device if param is not None else torch.device('cpu')
    was_training = net.training
    net.eval()
    diffs = []
    try:
        with torch.no_grad():
            for batch in batches:
                expected = net(batch.to(device)).float().cpu().numpy()
                try:
                    got = session.run([OUTPUT_NAME], {INPUT_NAME: batch.float().cpu().numpy()})[0]
                except ort.capi.onnxruntime_pybind11_state.InvalidArgument as exc:  # e.g. a static file
                    raise SrkitError(f'{name} does not accept an input of shape {tuple(batch.shape)}: '
                                     f'{exc}') from exc
                if got.shape != expected.shape:
                    raise SrkitError(f'{name}: ONNX output shape {got.shape} differs from PyTorch\'s '
                                     f'{expected.shape} for input {tuple(batch.shape)}.')
                diffs.append(np.abs(got - expected).max())
    finally:
        net.train(was_training)
    worst = float(np.max(diffs))  # a NaN anywhere makes it NaN, which fails the check below
    if not worst <= atol:
        raise SrkitError(f'{name}: ONNX output differs from PyTorch by {worst:.3g} (allowed {atol:g}).')
    return worst
