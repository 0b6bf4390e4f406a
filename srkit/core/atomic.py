"""Atomic file writes: a temporary file beside the target, renamed over it once complete.

A reader (or a run resumed after a kill) sees the old file or the new one, never half of one. The file
gets the permissions a plain ``open`` would give (``0o666`` less the umask), not mkstemp's private ``0o600``.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

__all__ = ['atomic_file', 'TEMP_SUFFIX']

TEMP_SUFFIX = '.tmp'


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, durable: bool = False) -> Iterator[BinaryIO]:
    """Open a temporary file for writing; on success it replaces ``path``, on any failure it is removed.

    ``durable``: fsync the file and its folder, so the new content survives a power cut (checkpoints).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, 'wb') as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
