"""Datasets and DataLoaders built from checked options.

The sampler decides what a sample is (its keys carry the seeds), so the loader only batches: training
uses the sampler's keys in order with ``drop_last``, validation and test go one image at a time in order.
Workers are seeded from the run's seed and their rank/id, for libraries that draw from global state;
srkit's own datasets never do. A user error raised in a worker (a corrupt image) reaches the main process
as the same exception object, attributes included, not as the text of a worker traceback.
"""
from __future__ import annotations

import functools
import random
import signal
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler
from torch.utils.data.dataloader import default_collate

from srkit.config.options import DatasetOptions, LoaderOptions
from srkit.config.typed_options import construct
from srkit.core.errors import OptionError, SrkitError
from srkit.core.registry import DATASET_REGISTRY

__all__ = ['build_dataset', 'build_dataloader', 'seed_worker']


def build_dataset(entry: DatasetOptions) -> Any:
    """The dataset of one ``datasets.<key>`` entry; an empty one is refused, naming the key."""
    path = f'datasets.{entry.key}'
    dataset = construct(path, DATASET_REGISTRY.get(entry.type), **entry.args)
    if len(dataset) == 0:
        raise OptionError(f'Option "{path}": dataset {entry.name} is empty.', key=path)
    return dataset


def seed_worker(worker_id: int, seed: int, rank: int) -> None:
    """Seed python, numpy and torch in a DataLoader worker from (run seed, rank, worker id); ignore Ctrl-C, which
    the terminal sends to workers too: the main process decides when to stop (srkit.engine.preemption)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    state = np.random.SeedSequence([seed, rank, worker_id]).generate_state(2)
    random.seed(int(state[0]))
    np.random.seed(int(state[0]))
    torch.manual_seed(int(state[0]) << 32 | int(state[1]))


@dataclass
class _Failure:
    """A user error caught in a worker, travelling to the main process in place of a sample."""

    error: SrkitError


class _CatchUserErrors(Dataset):
    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: Any) -> Any:
        try:
            return self.dataset[key]
        except SrkitError as exc:
            return _Failure(exc)


def _collate(items: list[Any]) -> Any:
    failures = [item for item in items if isinstance(item, _Failure)]
    return failures[0] if failures else default_collate(items)


class _UserErrorLoader(DataLoader):
    """Re-raises, in the main process, the user error a worker caught instead of torch's wrapped copy."""

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        for batch in super().__iter__():
            if isinstance(batch, _Failure):
                raise batch.error
            yield batch


def build_dataloader(dataset: Dataset, options: LoaderOptions, sampler: Sampler | Iterable[int] | None, phase: str,
                     seed: int) -> DataLoader:
    """A DataLoader for ``phase`` ('train', 'val' or 'test').

    train: batches of ``batch_size_per_gpu`` keys from ``sampler`` (required, e.g. EnlargedSampler built
    with ``use_shuffle`` and ``dataset_enlarge_ratio``), incomplete last batch dropped. val/test: batch 1,
    in order (``sampler``, a Sampler or a list of indices, may shard them across ranks).
    """
    options.check()
    workers = options.num_worker_per_gpu
    common: dict[str, Any] = {
        'num_workers': workers,
        'pin_memory': options.pin_memory,
        'worker_init_fn': functools.partial(seed_worker, seed=seed, rank=getattr(sampler, 'rank', 0)),
        'persistent_workers': options.persistent_workers and workers > 0,
    }
    if workers > 0:
        dataset, common['collate_fn'] = _CatchUserErrors(dataset), _collate
    if phase == 'train':
        if sampler is None:
            raise ValueError('build_dataloader: a training loader needs a sampler (EnlargedSampler)')
        batches = BatchSampler(sampler, options.batch_size_per_gpu, drop_last=True)
        return _UserErrorLoader(dataset, batch_sampler=batches, **common)
    if phase in ('val', 'test'):
        return _UserErrorLoader(dataset, batch_size=1, shuffle=False, sampler=sampler, **common)
    raise ValueError(f"build_dataloader: phase must be 'train', 'val' or 'test', got {phase!r}")
