"""The training sampler: keys ``(index, sample_seed)`` that fix every random choice of a sample.

An epoch is a list of global positions ``0 .. total_size-1``. Position ``p`` holds dataset index
``perm[p % (dataset_size * enlarge_ratio)] % dataset_size``, where ``perm`` is a permutation drawn from
``(seed, epoch)``, and the seed ``SeedSequence([seed, epoch, 1, p])``. Rank ``r`` of ``R`` takes positions
``r, r + R, ...`` (positions past the enlarged size wrap around, DistributedSampler's padding). A sample
thus depends on (seed, epoch, position) only: the number of workers, the world size and resuming cannot
change it, and the union of all ranks' keys of an epoch is the single-process epoch (plus padding).
"""
from __future__ import annotations

import logging
import math
from typing import Any, Iterator

import numpy as np
from torch.utils.data import Dataset, Sampler

from srkit.core.errors import DataError

__all__ = ['EnlargedSampler', 'KeyedDataset', 'sample_seed', 'resolve_key']

logger = logging.getLogger('srkit')

_PERMUTATION, _SAMPLE = 0, 1  # stream tags, so permutation and per-sample seeds never share a stream


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """The 63-bit seed of the sample at global ``position`` of ``epoch``."""
    state = np.random.SeedSequence([seed, epoch, _SAMPLE, position]).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


def resolve_key(key: int | tuple[int, int]) -> tuple[int, np.random.Generator | None]:
    """A dataset key -> (index, generator); a plain int (validation, test) means no randomness."""
    if isinstance(key, (tuple, list)):
        index, seed = key
        return int(index), np.random.default_rng(int(seed))
    return int(key), None


class EnlargedSampler(Sampler):
    """Deterministic, resumable, sharded sampler over ``dataset_size * enlarge_ratio`` positions per epoch.

    ``len()`` is the number of keys the next iteration yields (``num_samples - start``);
    ``num_samples`` is this rank's share of a whole epoch.
    """

    def __init__(self, dataset_size: int, seed: int, shuffle: bool = True, enlarge_ratio: int = 1,
                 num_replicas: int = 1, rank: int = 0) -> None:
        if dataset_size < 1:
            raise ValueError(f'EnlargedSampler: dataset_size must be positive, got {dataset_size}')
        if seed < 0:
            raise ValueError(f'EnlargedSampler: seed must be non-negative, got {seed}')
        if enlarge_ratio < 1:
            raise ValueError(f'EnlargedSampler: enlarge_ratio must be >= 1, got {enlarge_ratio}')
        if not 0 <= rank < num_replicas:
            raise ValueError(f'EnlargedSampler: rank {rank} is outside 0..{num_replicas - 1}')
        self.dataset_size = dataset_size
        self.seed = seed
        self.shuffle = shuffle
        self.enlarge_ratio = enlarge_ratio
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch_size = dataset_size * enlarge_ratio
        self.num_samples = math.ceil(self.epoch_size / num_replicas)
        self.total_size = self.num_samples * num_replicas
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select ``epoch``; ``start`` = samples of this rank already consumed in it (mid-epoch resume)."""
        if not 0 <= start <= self.num_samples:
            raise ValueError(f'EnlargedSampler: start {start} is outside 0..{self.num_samples}')
        self.epoch = epoch
        self.start = start

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.epoch_size)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, _PERMUTATION]))
        return rng.permutation(self.epoch_size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = self._order()
        first = self.rank + self.start * self.num_replicas
        for position in range(first, self.total_size, self.num_replicas):
            index = int(order[position % self.epoch_size]) % self.dataset_size
            yield index, sample_seed(self.seed, self.epoch, position)

    def __len__(self) -> int:
        return self.num_samples - self.start


class KeyedDataset(Dataset):
    """The dataset half of the key protocol: resolves keys and, if asked, skips unusable images.

    Subclasses implement ``__len__`` and ``_sample(index, rng)``. With
    ``skip_bad_images``, a training key whose image raises ``DataError`` (corrupt, too small, mismatched)
    is served by the next index with the same seed, and the skip is logged and kept in ``skipped``; the
    sample's ``skipped`` entry carries the messages to the training loop, which reports them at the end.
    Validation and test keys always raise: a substitute image would bias the metrics.
    """

    def __init__(self, name: str, skip_bad_images: bool = False) -> None:
        self.name = name
        self.skip_bad_images = skip_bad_images
        self.skipped: list[str] = []

    def __len__(self) -> int:
        raise NotImplementedError

    def _sample(self, index: int, rng: np.random.Generator | None) -> dict[str, Any]:
        raise NotImplementedError

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, rng = resolve_key(key)
        size = len(self)
        if not 0 <= index < size:
            raise IndexError(f'{self.name}: index {index} is outside 0..{size - 1}')
        if rng is None or not self.skip_bad_images:
            return self._sample(index, rng)
        assert isinstance(key, (tuple, list))  # resolve_key gives a generator only for an (index, seed) key
        seed = int(key[1])
        skipped_here: list[str] = []
        for offset in range(size):
            candidate = (index + offset) % size
            try:
                sample = self._sample(candidate, np.random.default_rng(seed))
                # travels with the batch, so the main process learns of skips made in DataLoader workers
                sample['skipped'] = '\n'.join(skipped_here)
                return sample
            except DataError as exc:
                skipped_here.append(str(exc))
                if str(exc) not in self.skipped:
                    self.skipped.append(str(exc))
                    logger.warning('%s: skipping an unusable image (skip_bad_images): %s', self.name, exc)
        raise DataError(f'{self.name}: no usable image left; every image was skipped (first: {self.skipped[0]}).')
