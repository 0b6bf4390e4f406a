"""Checkpoint files: atomic writes, safe reads, the tensors inside a wrapper, resume-state discovery.

Network files keep BasicSR's ``{'params': ..., 'params_ema': ...}`` layout, as torch files (``.pth``, the
default) or ``.safetensors`` files (srkit.core.safetensors_file); the suffix of a path decides, for writing
and reading alike. A training state is one self-contained torch file (network, EMA, optimizer, scheduler,
scaler, RNG states, sampler position), written atomically, so the newest state is either complete or absent:
a kill at any moment cannot leave a half-written checkpoint behind. Every torch read uses
``torch.load(..., weights_only=True)``.
"""
from __future__ import annotations

import io
import logging
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from srkit.core import safetensors_file
from srkit.core.atomic import TEMP_SUFFIX, atomic_file
from srkit.core.errors import CheckpointError
from srkit.core.faults import fault_point

__all__ = ['WRAPPER_KEYS', 'atomic_save', 'load_checkpoint_file', 'extract_state_dict', 'find_resume_state',
           'training_state_path', 'network_path', 'remove_stale_temporaries']

logger = logging.getLogger('srkit')
_STATE_NAME = re.compile(r'^(\d+)\.state$')
# Where releases keep their tensors, in order of preference (EMA weights first: those are what papers report).
WRAPPER_KEYS = ('params_ema', 'params', 'state_dict', 'model', 'net', 'network', 'net_g')


def atomic_save(obj: Any, path: str | Path) -> None:
    """Save ``obj`` through a temporary file + rename: the target is the old file or the new, never half.

    A ``.safetensors`` path gets a safetensors file (``obj`` a state dict or a mapping of them), any other
    path ``torch.save``'s format. A failure (disk full, permissions) removes the temporary file, leaves any
    previous file untouched and raises CheckpointError naming the path.
    """
    path = Path(path)
    data: bytes | memoryview
    if safetensors_file.is_safetensors(path):
        data = safetensors_file.to_bytes(obj, path)
    else:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        data = buffer.getbuffer()
    try:
        with atomic_file(path, durable=True) as handle:
            handle.write(data[:len(data) // 2])
            handle.flush()
            fault_point('checkpoint_write')  # a kill here leaves half a temporary file, never half a checkpoint
            handle.write(data[len(data) // 2:])
    except OSError as exc:
        reason = 'the disk is full' if exc.errno == 28 else exc.strerror or str(exc)
        raise CheckpointError(f'Could not write checkpoint {path}: {reason}. '
                              'The previous checkpoint files are intact.') from None


def load_checkpoint_file(path: str | Path) -> Any:
    """Read a checkpoint (a torch file with ``weights_only=True``, or a ``.safetensors`` file, by suffix);
    every failure is a CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'Checkpoint {path} does not exist.')
    if path.stat().st_size == 0:
        raise CheckpointError(f'Checkpoint {path} is empty (0 bytes).')
    if safetensors_file.is_safetensors(path):
        return safetensors_file.read(path)
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as exc:
        if 'weights only' in str(exc).lower() or 'weights_only' in str(exc):
            raise CheckpointError(
                f'Checkpoint {path} was refused: it contains pickled objects other than tensors and plain '
                'containers, which could run code when loaded. srkit only loads weights '
                '(torch.load weights_only=True).') from None
        raise CheckpointError(f'Checkpoint {path} is corrupt: {exc}.') from None
    except Exception as exc:  # noqa: BLE001 - the unpickler fails in many ways on damaged files; all mean corrupt
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f'Checkpoint {path} is corrupt or truncated ({detail}).') from None


def extract_state_dict(data: Any, param_key: str | None, source: str) -> dict[str, torch.Tensor]:
    """The tensor mapping inside a checkpoint: ``data[param_key]`` or a known wrapper, else ``data`` itself."""
    if not isinstance(data, Mapping):
        raise CheckpointError(f'Checkpoint {source} holds a {type(data).__name__}, not a state dict.')
    if param_key and param_key in data and isinstance(data[param_key], Mapping):
        data = data[param_key]
    elif not _is_tensor_mapping(data):
        for key in WRAPPER_KEYS:
            if isinstance(data.get(key), Mapping):
                if param_key:
                    logger.warning('Checkpoint %s has no "%s"; using "%s" instead.', source, param_key, key)
                data = data[key]
                break
        else:
            raise CheckpointError(f'Checkpoint {source} has no "{param_key}" entry; it has: '
                                  f'{", ".join(map(str, data.keys()))}.')
    return {str(k): v for k, v in data.items() if isinstance(v, torch.Tensor)}


def _is_tensor_mapping(data: Mapping) -> bool:
    return bool(data) and all(isinstance(v, torch.Tensor) for v in data.values())


def remove_stale_temporaries(root: str | Path) -> list[Path]:
    """Delete the temporary files of checkpoint writes that a killed run never finished.

    Only names ``atomic_save`` makes (``.<target>.<random>.tmp``) in ``models/`` and ``training_states/``
    are touched: they are incomplete by construction, and the checkpoint they were replacing is intact.
    """
    removed = []
    for folder in (Path(root) / 'models', Path(root) / 'training_states'):
        if folder.is_dir():
            for path in folder.glob(f'.*{TEMP_SUFFIX}'):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def training_state_path(root: str | Path, iteration: int) -> Path:
    return Path(root) / 'training_states' / f'{iteration}.state'


def network_path(root: str | Path, label: str, iteration: int | str, network_format: str = 'pth') -> Path:
    """``models/<label>_<iteration>.<network_format>`` (``logger.network_format``: pth or safetensors)."""
    return Path(root) / 'models' / f'{label}_{iteration}.{network_format}'


def find_resume_state(root: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest training state under ``root/training_states`` that reads completely.

    Corrupt or truncated newer states are skipped with a warning that names them; None when there is none.
    """
    folder = Path(root) / 'training_states'
    if not folder.is_dir():
        return None
    candidates = sorted(((int(m.group(1)), p) for p in folder.iterdir() if (m := _STATE_NAME.match(p.name))),
                        reverse=True)
    for _, path in candidates:
        try:
            state = load_checkpoint_file(path)
            if not isinstance(state, dict) or 'iter' not in state or 'network' not in state:
                raise CheckpointError(f'Training state {path} is incomplete (no iteration or network).')
        except CheckpointError as exc:
            logger.warning('%s Falling back to an older training state.', exc)
            continue
        return path, state
    return None
