"""Checkpoint files: atomic writes, safe reads, pretrained loading and resume-state discovery.

Network files keep BasicSR's ``{'params': ..., 'params_ema': ...}`` layout. A training state is one
self-contained file (network, EMA, optimizer, scheduler, scaler, RNG states, sampler position), written
atomically, so the newest state is either complete or absent: a kill at any moment cannot leave a
half-written checkpoint behind. Every read uses ``torch.load(..., weights_only=True)``.
"""
from __future__ import annotations

import io
import logging
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from srkit.utils.atomic import TEMP_SUFFIX, atomic_file
from srkit.utils.errors import CheckpointError

__all__ = ['atomic_save', 'load_checkpoint_file', 'extract_state_dict', 'load_pretrained', 'find_resume_state',
           'training_state_path', 'network_path', 'remove_stale_temporaries']

logger = logging.getLogger('srkit')
_STATE_NAME = re.compile(r'^(\d+)\.state$')
WRAPPER_KEYS = ('params_ema', 'params', 'state_dict', 'model', 'net', 'network', 'net_g')


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` through a temporary file + rename: the target is the old file or the new, never half.

    A failure (disk full, permissions) removes the temporary file, leaves any previous file untouched and
    raises CheckpointError naming the path.
    """
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    try:
        with atomic_file(path, durable=True) as handle:
            handle.write(buffer.getbuffer())
    except OSError as exc:
        reason = 'the disk is full' if exc.errno == 28 else exc.strerror or str(exc)
        raise CheckpointError(f'Could not write checkpoint {path}: {reason}. '
                              'The previous checkpoint files are intact.') from None


def load_checkpoint_file(path: str | Path) -> Any:
    """Read a checkpoint with ``weights_only=True``; every failure is a CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'Checkpoint {path} does not exist.')
    if path.stat().st_size == 0:
        raise CheckpointError(f'Checkpoint {path} is empty (0 bytes).')
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


def load_pretrained(net: torch.nn.Module, path: str | Path, *, param_key: str | None = 'params', strict: bool = True,
                    arch_type: str | None = None) -> dict[str, list[str]]:
    """Load weights into ``net``, adapting official layouts (``module.``/``model.`` prefixes, key maps).

    Returns the report ``{'missing': [...], 'unexpected': [...], 'mismatched': [...]}``. With ``strict``,
    any difference is a CheckpointError naming the first mismatched key and both shapes.
    """
    from srkit.archs.official_weights import adapt_official_state_dict, strip_prefix
    state = extract_state_dict(load_checkpoint_file(path), param_key, str(path))
    if arch_type:
        state = adapt_official_state_dict(arch_type, state)
    else:
        for prefix in ('module.', 'model.'):
            state = strip_prefix(state, prefix)
    own = net.state_dict()
    report = {
        'missing': [k for k in own if k not in state],
        'unexpected': [k for k in state if k not in own],
        'mismatched': [f'{k}: checkpoint {tuple(state[k].shape)} vs network {tuple(own[k].shape)}'
                       for k in own if k in state and state[k].shape != own[k].shape],
    }
    if report['mismatched'] and strict:
        raise CheckpointError(f'Checkpoint {path} does not fit {arch_type or type(net).__name__}: '
                              f'{report["mismatched"][0]} ({len(report["mismatched"])} mis-shaped keys; '
                              'a checkpoint for another variant or scale?).')
    if strict and (report['missing'] or report['unexpected']):
        parts = [f'{len(report[k])} {k} keys, first "{report[k][0]}"' for k in ('missing', 'unexpected') if report[k]]
        raise CheckpointError(f'Checkpoint {path} does not fit {arch_type or type(net).__name__}: '
                              f'{"; ".join(parts)} (a checkpoint for another variant or scale?). '
                              'Set path.strict_load_g: false to load the matching keys only.')
    loadable = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    net.load_state_dict(loadable, strict=False)
    for kind, keys in report.items():
        if keys:
            logger.warning('Loading %s: %d %s keys, e.g. %s', path, len(keys), kind, keys[0])
    return report


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


def network_path(root: str | Path, label: str, iteration: int | str) -> Path:
    return Path(root) / 'models' / f'{label}_{iteration}.pth'


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
