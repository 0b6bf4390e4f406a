"""LR/HR image pairs from two folders or two LMDBs (BasicSR's PairedImageDataset, same option keys).

Pairs are matched by name: the LR partner of HR ``baby.png`` is ``filename_tmpl.format('baby') + '.png'``
(``'{}x4'`` -> ``babyx4.png``); in LMDBs the template applies to the key (``baby`` -> ``babyx4``). The HR
names come from the HR folder, from ``meta_info_file`` (one name per line, BasicSR's ``name (h,w,c) ...``
lines accepted) or from the LMDB's meta_info.txt. Every HR image must have its partner, and without a
meta_info file every LR image must be used, so a wrong ``filename_tmpl`` or folder fails at construction.

Keys ``(index, seed)`` (training) give a random aligned crop (``gt_size`` or ``lq_size``) plus the
enabled augmentations, all drawn from ``default_rng(seed)``; an int key gives the whole pair, untouched.
"""
from __future__ import annotations

from typing import Any, Literal

import numpy as np

from srkit.core.errors import DataError, OptionError
from srkit.core.registry import DATASET_REGISTRY
from srkit.data.file_backends import FileBackend, load_image, open_backend, read_meta_info
from srkit.data.image_io import img_to_tensor
from srkit.data.samplers import KeyedDataset
from srkit.data.transforms import augment, channel_shuffle, match_pair, paired_random_crop

__all__ = ['PairedImageDataset', 'check_training_options', 'list_keys']


def check_training_options(phase: str, scale: int, gt_size: int | None, lq_size: int | None,
                           augmentations: dict[str, bool]) -> None:
    """Crop and augmentation options make sense only for training: refuse them elsewhere, require a crop there."""
    if scale < 1:
        raise OptionError(f'Option "scale" must be a positive integer, got {scale}.')
    if phase != 'train':
        used = [k for k, v in {'gt_size': gt_size, 'lq_size': lq_size, **augmentations}.items() if v]
        if used:
            raise OptionError(f'Option "{used[0]}" applies to training datasets only (this one is {phase}).')
        return
    if (gt_size is None) == (lq_size is None):
        raise OptionError('A training dataset needs exactly one of "gt_size" and "lq_size" (the patch size).')
    for key, size in (('gt_size', gt_size), ('lq_size', lq_size)):
        if size is not None and size < 1:
            raise OptionError(f'Option "{key}" must be a positive integer, got {size}.')
    if gt_size is not None and gt_size % scale:
        raise OptionError(f'Option "gt_size" ({gt_size}) must be a multiple of scale ({scale}).')


def list_keys(backend: FileBackend, meta_info_file: str | None, what: str) -> list[str]:
    """The keys of ``backend`` in order, or those ``meta_info_file`` names (each checked to exist)."""
    if meta_info_file is None:
        available = backend.keys()
        if not available:
            raise DataError(f'{backend.root}: no {what} images found (extensions: png, jpg, bmp, tif, webp...).')
        return available
    keys = [backend.key_for_name(name) for name in read_meta_info(meta_info_file)]
    missing = backend.missing(keys)
    if missing:
        raise DataError(f'{meta_info_file}: {len(missing)} listed image(s) are not in {backend.root}, e.g. '
                        f'{backend.describe(missing[0])}.')
    return keys


@DATASET_REGISTRY.register()
class PairedImageDataset(KeyedDataset):
    """Paired LR/HR images (folders or LMDBs); samples ``{'lq', 'gt', 'lq_path', 'gt_path'}``."""

    def __init__(self, dataroot_gt: str, dataroot_lq: str, scale: int, io_backend: dict[str, Any] | None = None,
                 meta_info_file: str | None = None, filename_tmpl: str = '{}', gt_size: int | None = None,
                 lq_size: int | None = None, use_hflip: bool = False, use_rot: bool = False,
                 use_channel_shuffle: bool = False, phase: Literal['train', 'val', 'test'] = 'train',
                 name: str = 'PairedImageDataset', skip_bad_images: bool = False) -> None:
        super().__init__(name, skip_bad_images)
        check_training_options(phase, scale, gt_size, lq_size, {
            'use_hflip': use_hflip, 'use_rot': use_rot, 'use_channel_shuffle': use_channel_shuffle})
        if '{}' not in filename_tmpl:
            raise OptionError(f'Option "filename_tmpl" must contain "{{}}" (the HR name), got {filename_tmpl!r}.')
        io_backend = io_backend or {'type': 'disk'}
        self.gt_backend = open_backend(io_backend, dataroot_gt)
        self.lq_backend = open_backend(io_backend, dataroot_lq)
        self.scale, self.phase = scale, phase
        self.gt_size, self.lq_size = gt_size, lq_size
        self.use_hflip, self.use_rot, self.use_channel_shuffle = use_hflip, use_rot, use_channel_shuffle
        self.gt_keys, self.lq_keys = self._pair_keys(meta_info_file, filename_tmpl)

    def _pair_keys(self, meta_info_file: str | None, filename_tmpl: str) -> tuple[list[str], list[str]]:
        """(HR keys, LR keys): the HR images (all, or those meta_info_file names) and their partners by name."""
        gt_keys = list_keys(self.gt_backend, meta_info_file, 'HR')
        lq_keys = [self.lq_backend.paired_key(k, filename_tmpl) for k in gt_keys]
        self._check_partners(gt_keys, lq_keys, meta_info_file is None, filename_tmpl)
        return gt_keys, lq_keys

    def _check_partners(self, gt_keys: list[str], lq_keys: list[str], all_lq_used: bool, filename_tmpl: str) -> None:
        available = set(self.lq_backend.keys())
        missing = [(g, q) for g, q in zip(gt_keys, lq_keys) if q not in available]
        if missing:
            gt_key, lq_key = missing[0]
            raise DataError(f'{self.name}: {len(missing)} HR image(s) have no LR partner with filename_tmpl '
                            f'{filename_tmpl!r}: e.g. {self.gt_backend.describe(gt_key)} needs '
                            f'{self.lq_backend.describe(lq_key)}.')
        unused = sorted(available - set(lq_keys))
        if all_lq_used and unused:
            raise DataError(f'{self.name}: {len(unused)} LR image(s) have no HR partner in {self.gt_backend.root} '
                            f'with filename_tmpl {filename_tmpl!r}: e.g. {self.lq_backend.describe(unused[0])}.')

    def __len__(self) -> int:
        return len(self.gt_keys)

    def _sample(self, index: int, rng: np.random.Generator | None) -> dict[str, Any]:
        gt_key, lq_key = self.gt_keys[index], self.lq_keys[index]
        gt_path, lq_path = self.gt_backend.describe(gt_key), self.lq_backend.describe(lq_key)
        lq = load_image(self.lq_backend, lq_key)
        gt = match_pair(lq, load_image(self.gt_backend, gt_key), self.scale, lq_path, gt_path)
        if rng is not None:
            if self.gt_size is not None or self.lq_size is not None:
                lq, gt = paired_random_crop(lq, gt, self.scale, rng, gt_size=self.gt_size, lq_size=self.lq_size,
                                            lq_path=lq_path, gt_path=gt_path)
            lq, gt = augment([lq, gt], rng, hflip=self.use_hflip, rotation=self.use_rot)
            if self.use_channel_shuffle:
                lq, gt = channel_shuffle([lq, gt], rng)
        return {'lq': img_to_tensor(lq), 'gt': img_to_tensor(gt), 'lq_path': lq_path, 'gt_path': gt_path}
