"""Export a super-resolution network to ONNX and check the file against PyTorch in onnxruntime.

onnx and onnxruntime are optional: they are imported only inside these functions, and a missing one is
named in the error. Export uses the TorchScript-based exporter (``dynamo=False``): the torch.export one
needs the separate ``onnxscript`` package, and conv/ReLU/PixelShuffle networks need nothing it adds.
"""
from __future__ import annotations

import importlib
import io
import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import Sequence

import numpy as np
import torch
from torch import nn

from srkit.core.atomic import atomic_file
from srkit.core.errors import SrkitError

__all__ = ['export_onnx', 'verify_onnx']

INPUT_NAME = 'input'
OUTPUT_NAME = 'output'


def _require(package: str) -> ModuleType:
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise SrkitError(f'ONNX export needs the package "{package}", which failed to import ({exc}). '
                         f'Install it: pip install {package}') from exc


def export_onnx(net: nn.Module, path: str | os.PathLike, input_shape: Sequence[int], opset: int = 17,
                dynamic_hw: bool = True) -> Path:
    """Write ``net`` (eval mode, one NCHW input and one output) to ``path`` atomically; returns the path.

    ``input_shape`` is the (N, C, H, W) example traced; with ``dynamic_hw`` the file accepts any H and W.
    An existing file is replaced (callers decide whether that is allowed).
    """
    onnx = _require('onnx')
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
        onnx.checker.check_model(onnx.load_from_string(buffer.getvalue()))
        with atomic_file(path) as handle:
            handle.write(buffer.getvalue())
    finally:
        net.train(was_training)
    return path


def verify_onnx(net: nn.Module, path: str | os.PathLike, inputs: torch.Tensor | Sequence[torch.Tensor],
                atol: float = 1e-4) -> float:
    """Largest |onnxruntime - PyTorch| over ``inputs`` (each run separately); raises above ``atol``."""
    ort = _require('onnxruntime')
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
                    raise SrkitError(f'{path} does not accept an input of shape {tuple(batch.shape)}: '
                                     f'{exc}') from exc
                if got.shape != expected.shape:
                    raise SrkitError(f'{path}: ONNX output shape {got.shape} differs from PyTorch\'s '
                                     f'{expected.shape} for input {tuple(batch.shape)}.')
                diffs.append(np.abs(got - expected).max())
    finally:
        net.train(was_training)
    worst = float(np.max(diffs))  # a NaN anywhere makes it NaN, which fails the check below
    if not worst <= atol:
        raise SrkitError(f'{path}: ONNX output differs from PyTorch by {worst:.3g} (allowed {atol:g}).')
    return worst
