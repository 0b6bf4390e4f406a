"""Network files as ``.safetensors``: BasicSR's ``{'params': ..., 'params_ema': ...}`` in safetensors' flat layout.

Why offer it: reading a .safetensors file cannot run code (no pickle at all), and other tools read it without
torch. Why a layout of our own: the format holds one flat ``name -> tensor`` mapping plus text metadata,
while a network file has entries (``params``, ``params_ema``) that each hold a state dict. Each tensor is
stored as ``<entry>.<name>`` and the metadata entry ``srkit_entries`` lists the entries (``params,params_ema``),
so the reader splits the names back exactly and gives the same nested mapping a .pth file gives. A file
without that metadata (another tool's state dict) reads as the flat state dict it is.

safetensors is an optional package: it is imported only when such a file is read or written, and its
absence is a CheckpointError saying how to install it.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from srkit.core.errors import CheckpointError

__all__ = ['SUFFIX', 'ENTRIES_KEY', 'is_safetensors', 'to_bytes', 'read']

SUFFIX = '.safetensors'
ENTRIES_KEY = 'srkit_entries'


def is_safetensors(path: str | Path) -> bool:
    return Path(path).suffix.lower() == SUFFIX


def _package(action: str, path: Path) -> Any:
    try:
        import safetensors
        import safetensors.torch
    except ImportError:
        raise CheckpointError(f'{action} {path} needs the safetensors package: pip install safetensors.') from None
    return safetensors


def to_bytes(obj: Mapping[str, Any], path: Path) -> bytes:
    """``obj`` as the bytes of a .safetensors file: a state dict, or entries that each hold one (srkit's layout).

    ``path`` only names the file in errors. Tensors are written from contiguous CPU copies (a channels_last
    parameter is not contiguous, and safetensors stores dense row-major data only).
    """
    package = _package('Writing', path)
    if all(isinstance(value, torch.Tensor) for value in obj.values()):
        tensors, metadata = dict(obj), {}
    elif all(isinstance(value, Mapping) for value in obj.values()):
        if any('.' in entry or ',' in entry for entry in obj):
            raise ValueError(f'Entry names of a .safetensors network file cannot hold "." or ",": {list(obj)}.')
        tensors = {f'{entry}.{name}': tensor for entry, state in obj.items() for name, tensor in state.items()}
        metadata = {ENTRIES_KEY: ','.join(obj)}
    else:
        raise TypeError(f'{path}: a .safetensors file holds a state dict or a mapping of state dicts, not a mix.')
    cpu = {name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}
    return package.torch.save(cpu, metadata={'format': 'pt', **metadata})


def read(path: Path) -> dict[str, Any]:
    """The tensors of a .safetensors file, nested under their entries when srkit's metadata lists them."""
    package = _package('Reading', path)
    try:
        with package.safe_open(str(path), framework='pt', device='cpu') as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as exc:  # noqa: BLE001 - a damaged header or body fails in several ways; all mean corrupt
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f'Checkpoint {path} is corrupt or truncated ({detail}).') from None
    if ENTRIES_KEY not in metadata:
        return tensors
    nested: dict[str, dict[str, torch.Tensor]] = {entry: {} for entry in metadata[ENTRIES_KEY].split(',') if entry}
    for key, tensor in tensors.items():
        entry, _, name = key.partition('.')
        if entry not in nested or not name:
            raise CheckpointError(f'Checkpoint {path} is inconsistent: tensor "{key}" is in none of the entries its '
                                  f'metadata lists ({metadata[ENTRIES_KEY]}).')
        nested[entry][name] = tensor
    return nested
