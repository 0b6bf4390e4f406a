"""Batch prefetchers: the same ``next()``/``reset()`` interface whether batches stay on the CPU or are
copied to the GPU ahead of time on a side stream (``prefetch_mode: cuda``)."""
from __future__ import annotations

from typing import Any, Iterable, Iterator

import torch

__all__ = ['CPUPrefetcher', 'CUDAPrefetcher', 'build_prefetcher']


class CPUPrefetcher:
    """Iterates a loader; ``next()`` returns None at the end of an epoch, ``reset()`` starts the next one.

    Iterating (``for batch in prefetcher``) yields the rest of the current epoch; call ``reset()`` between.
    """

    def __init__(self, loader: Iterable[Any]) -> None:
        self.loader = loader
        self._iter = iter(loader)

    def next(self) -> Any:
        return next(self._iter, None)

    def reset(self) -> None:
        self._iter = iter(self.loader)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.next, None)


class CUDAPrefetcher:
    """Copies the next batch's tensors to ``device`` on a side stream while the current one is used.

    Needs pinned memory (``pin_memory: true``) for the copies to be asynchronous.
    """

    def __init__(self, loader: Iterable[Any], device: torch.device | str = 'cuda') -> None:
        if not torch.cuda.is_available():
            raise RuntimeError('CUDAPrefetcher needs CUDA; use prefetch_mode cpu (or none) on this machine.')
        self.loader = loader
        self.device = torch.device(device)
        self.stream = torch.cuda.Stream(device=self.device)
        self._iter = iter(loader)
        self._batch: Any = None
        self._preload()

    def _preload(self) -> None:
        batch = next(self._iter, None)
        if batch is not None:
            with torch.cuda.stream(self.stream):
                batch = {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                         for k, v in batch.items()}
        self._batch = batch

    def next(self) -> Any:
        torch.cuda.current_stream(self.device).wait_stream(self.stream)
        batch = self._batch
        if batch is not None:
            for value in batch.values():  # tell the caching allocator these tensors are used on this stream
                if isinstance(value, torch.Tensor):
                    value.record_stream(torch.cuda.current_stream(self.device))
            self._preload()
        return batch

    def reset(self) -> None:
        self._iter = iter(self.loader)
        self._preload()

    def __iter__(self) -> Iterator[Any]:
        return iter(self.next, None)


def build_prefetcher(loader: Iterable[Any], prefetch_mode: str | None,
                     device: torch.device | str = 'cpu') -> CPUPrefetcher | CUDAPrefetcher:
    """``cuda`` -> CUDAPrefetcher on ``device``; ``cpu`` or None -> CPUPrefetcher (plain iteration)."""
    if prefetch_mode == 'cuda':
        return CUDAPrefetcher(loader, device)
    return CPUPrefetcher(loader)
