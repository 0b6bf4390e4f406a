"""HR training patches without LR: the multi-scale model makes the LR itself, at the batch's scale.

A dataset sample cannot know its scale: the scale is drawn per batch (the same for every sample and
rank), so LR images are made in the model with the batched torch MATLAB bicubic. ``gt_size`` must be a
multiple of every training scale (MultiScaleModel checks it against ``train.scales``). Keys ``(index,
seed)`` draw crop and augmentations from ``default_rng(seed)``, as every srkit training dataset does.
"""
from __future__ import annotations

from typing import Any, Literal

import numpy as np

from srkit.core.errors import OptionError
from srkit.core.registry import DATASET_REGISTRY
from srkit.data.file_backends import load_image, open_backend
from srkit.data.image_io import img_to_tensor
from srkit.data.paired_image_dataset import list_keys
from srkit.data.samplers import KeyedDataset
from srkit.data.transforms import augment, channel_shuffle, random_crop

__all__ = ['HRPatchDataset']


@DATASET_REGISTRY.register()
class HRPatchDataset(KeyedDataset):
    """HR folder or LMDB -> ``{'gt', 'gt_path'}`` random patches, for training only."""

    def __init__(self, dataroot_gt: str, gt_size: int, io_backend: dict[str, Any] | None = None,
                 meta_info_file: str | None = None, use_hflip: bool = False, use_rot: bool = False,
                 use_channel_shuffle: bool = False, phase: Literal['train', 'val', 'test'] = 'train',
                 name: str = 'HRPatchDataset', skip_bad_images: bool = False) -> None:
        super().__init__(name, skip_bad_images)
        if phase != 'train':
            raise OptionError(f'{name}: HRPatchDataset has no LR images, so it serves training only; evaluate '
                              'with HRBicubicDataset (LR made at that entry\'s scale).')
        if gt_size < 1:
            raise OptionError(f'Option "gt_size" must be a positive integer, got {gt_size}.')
        self.backend = open_backend(io_backend or {'type': 'disk'}, dataroot_gt)
        self.keys = list_keys(self.backend, meta_info_file, 'HR')
        self.gt_size = gt_size
        self.use_hflip, self.use_rot, self.use_channel_shuffle = use_hflip, use_rot, use_channel_shuffle

    def __len__(self) -> int:
        return len(self.keys)

    def _sample(self, index: int, rng: np.random.Generator | None) -> dict[str, Any]:
        if rng is None:
            raise TypeError(f'{self.name} serves training keys (index, seed) only.')
        key = self.keys[index]
        path = self.backend.describe(key)
        gt = random_crop(load_image(self.backend, key), self.gt_size, rng, path)
        gt = augment([gt], rng, hflip=self.use_hflip, rotation=self.use_rot)[0]
        if self.use_channel_shuffle:
            gt = channel_shuffle([gt], rng)[0]
        return {'gt': img_to_tensor(gt), 'gt_path': path}
