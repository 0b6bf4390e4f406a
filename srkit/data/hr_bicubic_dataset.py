"""HR images only; the LR image is made on the fly by MATLAB-faithful bicubic downscaling.

Training keys ``(index, seed)``: a random ``gt_size`` patch of the HR image (a multiple of ``scale``) is
downscaled, then both are augmented, every choice drawn from ``default_rng(seed)``. Int keys (val/test):
the HR image cropped to a multiple of ``lcm(12, scale)`` (BasicSR's GTmod12 for scales 2, 3, 4, 6, 12)
and its downscale. Downscaling is BasicSR's benchmark protocol, ``LR = round(imresize(float HR, 1/scale))``
with one rounding, so Set5/GTmod12 yields Set5/LRbicx{s} (up to the few .5 ties of docs/DATASETS.md).
"""
from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from srkit.core.errors import DataError
from srkit.core.registry import DATASET_REGISTRY
from srkit.data.file_backends import load_image, open_backend
from srkit.data.image_io import img_to_tensor
from srkit.data.paired_image_dataset import check_training_options, list_keys
from srkit.data.samplers import KeyedDataset
from srkit.data.transforms import augment, channel_shuffle, random_crop
from srkit.ops.imresize import bicubic_downscale, modcrop

__all__ = ['HRBicubicDataset']


@DATASET_REGISTRY.register()
class HRBicubicDataset(KeyedDataset):
    """HR folder or LMDB -> ``{'lq', 'gt', 'lq_path', 'gt_path'}`` with bicubic LR (``lq_path`` = ``gt_path``)."""

    def __init__(self, dataroot_gt: str, scale: int, io_backend: dict[str, Any] | None = None,
                 meta_info_file: str | None = None, gt_size: int | None = None, use_hflip: bool = False,
                 use_rot: bool = False, use_channel_shuffle: bool = False,
                 phase: Literal['train', 'val', 'test'] = 'train', name: str = 'HRBicubicDataset',
                 skip_bad_images: bool = False) -> None:
        super().__init__(name, skip_bad_images)
        check_training_options(phase, scale, gt_size, None, {
            'use_hflip': use_hflip, 'use_rot': use_rot, 'use_channel_shuffle': use_channel_shuffle})
        self.backend = open_backend(io_backend or {'type': 'disk'}, dataroot_gt)
        self.keys = list_keys(self.backend, meta_info_file, 'HR')
        self.scale, self.phase, self.gt_size = scale, phase, gt_size
        self.use_hflip, self.use_rot, self.use_channel_shuffle = use_hflip, use_rot, use_channel_shuffle

    def __len__(self) -> int:
        return len(self.keys)

    def _sample(self, index: int, rng: np.random.Generator | None) -> dict[str, Any]:
        key = self.keys[index]
        path = self.backend.describe(key)
        hr = load_image(self.backend, key)
        if rng is None:
            gt = modcrop(hr, math.lcm(12, self.scale))
            if gt.shape[0] == 0 or gt.shape[1] == 0:
                raise DataError(f'{path}: {hr.shape[0]}x{hr.shape[1]} is smaller than {math.lcm(12, self.scale)} '
                                'pixels, the modcrop of the benchmark protocol.')
            lq = bicubic_downscale(gt, self.scale)
        else:
            gt = random_crop(hr, self.gt_size, rng, path) if self.gt_size is not None else modcrop(hr, self.scale)
            lq = bicubic_downscale(gt, self.scale)
            lq, gt = augment([lq, gt], rng, hflip=self.use_hflip, rotation=self.use_rot)
            if self.use_channel_shuffle:
                lq, gt = channel_shuffle([lq, gt], rng)
        return {'lq': img_to_tensor(lq), 'gt': img_to_tensor(gt), 'lq_path': path, 'gt_path': path}
