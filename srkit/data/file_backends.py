"""Where image bytes come from: a folder on disk or a BasicSR-layout LMDB.

A backend maps string keys to encoded image bytes. Disk keys are file names (``baby.png``); LMDB keys are
the names BasicSR's ``create_lmdb`` stores, the file name without its extension (``baby``). The LMDB
layout is BasicSR's: ``<root>.lmdb/{data.mdb, lock.mdb, meta_info.txt}`` with one meta line per image,
``baby.png (512,512,3) 1`` (name, shape, PNG compression level). ``lmdb`` is imported only when an LMDB
backend opens its environment, so ``import srkit`` and folder datasets never need the package.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping, Protocol

import numpy as np

from srkit.core.errors import DataError, OptionError
from srkit.data.image_io import IMAGE_EXTENSIONS, decode_image

__all__ = ['FileBackend', 'DiskBackend', 'LmdbBackend', 'open_backend', 'read_meta_info', 'load_image',
           'strip_image_extension']

_META_LINE = re.compile(r'^(?P<name>.+?)\s+\((?P<h>\d+),\s*(?P<w>\d+),\s*(?P<c>\d+)\)(?:\s+\S+)?\s*$')


class FileBackend(Protocol):
    root: Path
    decoded_cache: dict[str, np.ndarray] | None  # key -> decoded image, when open_backend caches them
    allow_16bit: bool  # decode 16-bit images as their high byte instead of refusing them

    def keys(self) -> list[str]:
        """Every key, sorted."""

    def get(self, key: str) -> bytes:
        """The encoded image stored under ``key``; a missing key is a DataError naming it."""

    def describe(self, key: str) -> str:
        """How messages and samples (``lq_path``/``gt_path``) name ``key``."""

    def key_for_name(self, name: str) -> str:
        """The key of a file name as a meta_info file lists it."""

    def missing(self, keys: list[str]) -> list[str]:
        """Those of ``keys`` the backend does not hold, sorted."""

    def paired_key(self, key: str, filename_tmpl: str) -> str:
        """The key of the partner image, given a template such as ``'{}x4'`` applied to the name stem."""


def strip_image_extension(name: str) -> str:
    """``baby.png`` -> ``baby``; a name without an image extension is returned unchanged."""
    stem, dot, ext = name.rpartition('.')
    return stem if dot and f'.{ext.lower()}' in IMAGE_EXTENSIONS else name


def read_meta_info(path: str | Path) -> list[str]:
    """Image names listed in a meta_info file: the first field of ``name (h,w,c) level`` lines, or whole lines.

    Blank lines and lines starting with ``#`` are skipped.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding='utf-8').splitlines()
    except FileNotFoundError:
        raise DataError(f'{path}: meta_info file not found.') from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f'{path}: cannot read the meta_info file ({exc}).') from None
    names = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        match = _META_LINE.match(line)
        names.append(match.group('name') if match else line)
    if not names:
        raise DataError(f'{path}: the meta_info file lists no images.')
    return names


class DiskBackend:
    """Images in one folder (not recursive); keys are file names with their extension."""

    decoded_cache: dict[str, np.ndarray] | None = None
    allow_16bit: bool = False

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            what = 'is not a folder' if self.root.exists() else 'does not exist'
            raise DataError(f'{self.root}: image folder {what}.')

    def keys(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir()
                      if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith('.') and p.is_file())

    def get(self, key: str) -> bytes:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            raise DataError(f'{self.root / key}: image file not found.') from None
        except OSError as exc:
            raise DataError(f'{self.root / key}: cannot read the file ({exc.strerror or exc}).') from None

    def describe(self, key: str) -> str:
        return str(self.root / key)

    def key_for_name(self, name: str) -> str:
        return name

    def missing(self, keys: list[str]) -> list[str]:
        """Checked as files, so a meta_info file may list images in sub-folders (Real-ESRGAN's lists do)."""
        return sorted(k for k in set(keys) if not (self.root / k).is_file())

    def paired_key(self, key: str, filename_tmpl: str) -> str:
        stem, dot, ext = key.rpartition('.')
        return f'{filename_tmpl.format(stem)}.{ext}' if dot else filename_tmpl.format(key)


_ENVIRONMENTS: dict[tuple[int, str], Any] = {}


class LmdbBackend:
    """A BasicSR LMDB; the environment opens lazily, once per process (DataLoader workers included)."""

    decoded_cache: dict[str, np.ndarray] | None = None
    allow_16bit: bool = False

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            what = 'is not a folder' if self.root.exists() else 'does not exist'
            raise DataError(f'{self.root}: LMDB folder {what}.')
        if not (self.root / 'data.mdb').is_file():
            raise DataError(f'{self.root}: not an LMDB folder (no data.mdb); make one with '
                            'scripts/data/create_lmdb.py.')
        meta = self.root / 'meta_info.txt'
        if not meta.is_file():
            raise DataError(f'{meta}: missing; a BasicSR-layout LMDB lists its images in meta_info.txt.')
        self._path = str(self.root.resolve())
        self._keys: list[str] = []
        for number, line in enumerate(meta.read_text(encoding='utf-8').splitlines(), 1):
            if not line.strip():
                continue
            match = _META_LINE.match(line.strip())
            if match is None:
                raise DataError(f'{meta}, line {number}: expected "name.png (h,w,c) level", got {line!r}.')
            self._keys.append(strip_image_extension(match.group('name')))

    def _open(self) -> Any:
        """This process's environment for the root, cached per pid.

        py-lmdb opens a file once per process, and an environment inherited through a fork (DataLoader
        workers) must not be used in the child; py-lmdb still counts it as open there, so the child closes
        its copy (read-only, lock=False: no locks are shared) before opening its own.
        """
        key = (os.getpid(), self._path)
        env = _ENVIRONMENTS.get(key)
        if env is None:
            import lmdb
            for inherited in [k for k in _ENVIRONMENTS if k[1] == self._path]:
                _ENVIRONMENTS.pop(inherited).close()
            try:
                env = lmdb.open(key[1], readonly=True, lock=False, readahead=False, meminit=False)
            except lmdb.Error as exc:
                raise DataError(f'{self.root}: cannot open the LMDB ({exc}).') from None
            _ENVIRONMENTS[key] = env
        return env

    def keys(self) -> list[str]:
        return sorted(set(self._keys))

    def get(self, key: str) -> bytes:
        with self._open().begin(write=False) as txn:
            value = txn.get(key.encode('utf-8'))
        if value is None:
            raise DataError(f'{self.root}: no key "{key}" in the LMDB.')
        return bytes(value)

    def describe(self, key: str) -> str:
        return f'{self.root}/{key}'

    def key_for_name(self, name: str) -> str:
        return strip_image_extension(name)

    def missing(self, keys: list[str]) -> list[str]:
        return sorted(set(keys) - set(self.keys()))

    def paired_key(self, key: str, filename_tmpl: str) -> str:
        return filename_tmpl.format(key)


def open_backend(io_backend: Mapping[str, Any], root: str | Path) -> FileBackend:
    """The backend ``io_backend`` (``{'type': 'disk'}`` or ``{'type': 'lmdb'}``) opened on ``root``.

    ``cache_images: true`` keeps every decoded image in memory after its first read: for small training
    sets (T91, BSD200, the demo), where PNG decoding would otherwise dominate a CPU training step.
    ``allow_16bit: true`` reads 16-bit images as their high byte instead of refusing them.
    """
    if not isinstance(io_backend, Mapping) or 'type' not in io_backend:
        raise OptionError(f'Option "io_backend" must be a mapping with a "type" key (disk or lmdb), got '
                          f'{io_backend!r}.')
    extra = sorted(set(io_backend) - {'type', 'cache_images', 'allow_16bit'})
    if extra:
        raise OptionError(f'Unknown option "io_backend.{extra[0]}": io_backend takes "type", "cache_images" and '
                          '"allow_16bit".')
    flags = {key: io_backend.get(key, False) for key in ('cache_images', 'allow_16bit')}
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise OptionError(f'Option "io_backend.{key}" must be true or false, got {value!r}.')
    kind = io_backend['type']
    if kind == 'disk':
        backend: DiskBackend | LmdbBackend = DiskBackend(root)
    elif kind == 'lmdb':
        backend = LmdbBackend(root)
    else:
        raise OptionError(f'Option "io_backend.type" must be "disk" or "lmdb", got {kind!r}.')
    backend.decoded_cache = {} if flags['cache_images'] else None
    backend.allow_16bit = flags['allow_16bit']
    return backend


def load_image(backend: FileBackend, key: str) -> np.ndarray:
    """Read and decode one image (HWC uint8 RGB, 16-bit ones only if the backend allows them); errors name
    ``backend.describe(key)``.

    Cached images are returned read-only, so a transform that writes in place fails loudly instead of
    corrupting the cache.
    """
    cache = backend.decoded_cache
    if cache is not None and key in cache:
        return cache[key]
    img = decode_image(backend.get(key), backend.describe(key), allow_16bit=backend.allow_16bit,
                       hint='set io_backend: {allow_16bit: true} in this dataset\'s options')
    if cache is not None:
        img.setflags(write=False)
        cache[key] = img
    return img
