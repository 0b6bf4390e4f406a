"""Run folders: experiments/<name>/ for training, results/<name>/ for testing.

Nothing a user made is deleted or overwritten: an existing folder that is not being resumed is renamed to
``<name>_archived_<time>`` (as BasicSR does) before a new run starts.
"""
from __future__ import annotations

import logging
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch

__all__ = ['archive_existing', 'prepare_folder', 'seed_everything', 'rng_state', 'restore_rng_state', 'timestamp']

logger = logging.getLogger('srkit')


def timestamp() -> str:
    return time.strftime('%Y%m%d_%H%M%S')


def archive_existing(folder: Path) -> Path | None:
    """Rename ``folder`` out of the way if it exists; returns the new name."""
    if not folder.exists():
        return None
    target = folder.with_name(f'{folder.name}_archived_{timestamp()}')
    suffix = 1
    while target.exists():
        target = folder.with_name(f'{folder.name}_archived_{timestamp()}_{suffix}')
        suffix += 1
    shutil.move(str(folder), str(target))
    return target


def prepare_folder(folder: Path, subfolders: tuple[str, ...] = ()) -> None:
    for sub in ('', *subfolders):
        (folder / sub).mkdir(parents=True, exist_ok=True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Python, numpy, torch and CUDA RNG states in a form ``torch.load(weights_only=True)`` accepts."""
    numpy_state = np.random.get_state()
    assert isinstance(numpy_state, tuple)  # the legacy form, which the global MT19937 generator always has
    kind, keys, pos, has_gauss, cached = numpy_state
    state = {
        'python': random.getstate(),
        'numpy': [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available() and len(state['cuda']) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state['cuda'])
