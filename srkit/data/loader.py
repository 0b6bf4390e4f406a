"""DataLoader construction: the option keys that belong to the loader, not to the dataset.

The sampler decides what a sample is (its keys carry the seeds), so the loader only batches: training
uses the sampler's keys in order with ``drop_last``, validation and test go one image at a time in order.
Workers are seeded from the run's seed and their rank/id, for libraries that draw from global state;
srkit's own datasets never do.
"""
from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from srkit.utils.errors import OptionError
from srkit.utils.typed_options import option

__all__ = ['LoaderOptions', 'build_dataloader', 'seed_worker']


@dataclass
class LoaderOptions:
    """Loader keys of a ``datasets.<phase>`` block (BasicSR's names)."""

    batch_size_per_gpu: int = option(16, 'Batch size of each process (global batch = this x world size).')
    num_worker_per_gpu: int = option(0, 'DataLoader worker processes per process.')
    use_shuffle: bool = option(True, 'Shuffle the training set every epoch (deterministic from manual_seed).')
    dataset_enlarge_ratio: int = option(1, 'Repeat the training set this many times per epoch.')
    prefetch_mode: Literal['cpu', 'cuda'] | None = option(None, 'cuda: copy batches to the GPU ahead on a '
                                                                'side stream (needs pin_memory).')
    pin_memory: bool = option(False, 'Pinned host memory for batches.')
    persistent_workers: bool = option(False, 'Keep worker processes alive between epochs.')

    def check(self, path: str = '') -> None:
        prefix = f'{path}.' if path else ''
        for key, low in (('batch_size_per_gpu', 1), ('num_worker_per_gpu', 0), ('dataset_enlarge_ratio', 1)):
            if getattr(self, key) < low:
                raise OptionError(f'Option "{prefix}{key}" must be >= {low}, got {getattr(self, key)}.')
        if self.prefetch_mode == 'cuda' and not self.pin_memory:
            raise OptionError(f'Option "{prefix}prefetch_mode" is "cuda", which needs "{prefix}pin_memory: true" '
                              '(non-blocking copies need pinned memory).')


def seed_worker(worker_id: int, seed: int, rank: int) -> None:
    """Seed python, numpy and torch in a DataLoader worker from (run seed, rank, worker id)."""
    state = np.random.SeedSequence([seed, rank, worker_id]).generate_state(2)
    random.seed(int(state[0]))
    np.random.seed(int(state[0]))
    torch.manual_seed(int(state[0]) << 32 | int(state[1]))


def build_dataloader(dataset: Dataset, options: LoaderOptions, sampler: Sampler | None, phase: str,
                     seed: int) -> DataLoader:
    """A DataLoader for ``phase`` ('train', 'val' or 'test').

    train: batches of ``batch_size_per_gpu`` keys from ``sampler`` (required, e.g. EnlargedSampler built
    with ``use_shuffle`` and ``dataset_enlarge_ratio``), incomplete last batch dropped. val/test: batch 1,
    in order (``sampler`` may shard the indices across ranks).
    """
    options.check()
    workers = options.num_worker_per_gpu
    common: dict[str, Any] = {
        'num_workers': workers,
        'pin_memory': options.pin_memory,
        'worker_init_fn': functools.partial(seed_worker, seed=seed, rank=getattr(sampler, 'rank', 0)),
        'persistent_workers': options.persistent_workers and workers > 0,
    }
    if phase == 'train':
        if sampler is None:
            raise ValueError('build_dataloader: a training loader needs a sampler (EnlargedSampler)')
        batches = BatchSampler(sampler, options.batch_size_per_gpu, drop_last=True)
        return DataLoader(dataset, batch_sampler=batches, **common)
    if phase in ('val', 'test'):
        return DataLoader(dataset, batch_size=1, shuffle=False, sampler=sampler, **common)
    raise ValueError(f"build_dataloader: phase must be 'train', 'val' or 'test', got {phase!r}")
