"""IGConv's datasets, under their names and with their keys, so its option files run as released.

- ``FixedScalePairedImageDataset``: paired LR/HR folders at one scale, ``ds_scale`` (srkit's PairedImageDataset).
- ``FixedScaleDownsampleImageDataset``: HR only, for validation and test; the LR is the HR, cropped to a
  multiple of ``ds_scale``, downscaled.
- ``RandomScaleDownsampleImageDataset``: HR only, for training at several scales with a fixed LR patch
  (``lq_size``, 48 in the paper's recipes): for a scale ``s`` the HR patch is ``lq_size * s``.

The training scale is drawn per iteration by MultiScaleModel (the same for the whole batch and every rank),
which a sample cannot know; so a training sample holds one (LR, HR) pair per scale of ``random_scales``, each
cropped, augmented and downscaled independently as the official dataset does for the one scale it serves,
and the model takes the pair of the iteration's scale (``lq_x<s>``, ``gt_x<s>``).

``resize``: ``pil`` (default) is the official code's downscale: torchvision's ``ToPILImage`` (the float image
times 255, truncated to uint8: the 8-bit image again) and Pillow's antialiased bicubic, read back divided by
255. ``matlab`` is srkit's MATLAB-faithful bicubic of the benchmark LR (docs/DATASETS.md), one rounding.
"""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
from PIL import Image

from srkit.core.errors import DataError, OptionError
from srkit.core.registry import DATASET_REGISTRY
from srkit.data.file_backends import load_image, open_backend
from srkit.data.image_io import img_to_tensor
from srkit.data.paired_image_dataset import PairedImageDataset, list_keys
from srkit.data.samplers import KeyedDataset
from srkit.data.transforms import augment, random_crop
from srkit.ops.imresize import bicubic_downscale

__all__ = ['FixedScaleDownsampleImageDataset', 'FixedScalePairedImageDataset', 'RandomScaleDownsampleImageDataset',
           'pil_bicubic_downscale']

Resize = Literal['pil', 'matlab']


def pil_bicubic_downscale(hr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 HWC ``hr`` -> float32 HWC in [0, 1] of ``size`` (h, w), as IGConv's ``resize_fn`` computes it:
    Pillow's antialiased bicubic on 8 bits. (Its way there, BasicSR's float image then torchvision's
    ``mul(255).byte()``, returns every 8-bit value unchanged: tests/test_scale_datasets.py.)"""
    image = Image.fromarray(hr).resize((size[1], size[0]), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.float32) / np.float32(255.0)


def _downscale(hr: np.ndarray, scale: int, resize: Resize) -> np.ndarray:
    if resize == 'pil':
        return pil_bicubic_downscale(hr, (hr.shape[0] // scale, hr.shape[1] // scale))
    return bicubic_downscale(hr, scale)


def _check_resize(resize: str) -> None:
    if resize not in ('pil', 'matlab'):
        raise OptionError(f'Option "resize" must be pil or matlab, got {resize!r}.', key='resize')


@DATASET_REGISTRY.register()
class FixedScalePairedImageDataset(PairedImageDataset):
    """Paired LR/HR images at ``ds_scale`` (IGConv's name for BasicSR's PairedImageDataset, for val/test sets)."""

    def __init__(self, dataroot_gt: str, dataroot_lq: str, ds_scale: int, io_backend: dict[str, Any] | None = None,
                 meta_info_file: str | None = None, filename_tmpl: str = '{}',
                 phase: Literal['train', 'val', 'test'] = 'val', name: str = 'FixedScalePairedImageDataset',
                 skip_bad_images: bool = False) -> None:
        if phase == 'train':
            raise OptionError(f'{name}: FixedScalePairedImageDataset serves validation and test; train with '
                              'RandomScaleDownsampleImageDataset (or PairedImageDataset for one scale).')
        super().__init__(dataroot_gt, dataroot_lq, ds_scale, io_backend, meta_info_file, filename_tmpl,
                         phase=phase, name=name, skip_bad_images=skip_bad_images)


@DATASET_REGISTRY.register()
class FixedScaleDownsampleImageDataset(KeyedDataset):
    """HR images; the LR made at ``ds_scale`` from the HR cropped (top-left) to a multiple of it.

    ``filename_tmpl`` is accepted for the official files' sake and unused: there is no LR folder to match.
    """

    def __init__(self, dataroot_gt: str, ds_scale: int, io_backend: dict[str, Any] | None = None,
                 meta_info_file: str | None = None, filename_tmpl: str = '{}', resize: Resize = 'pil',
                 phase: Literal['train', 'val', 'test'] = 'val', name: str = 'FixedScaleDownsampleImageDataset',
                 skip_bad_images: bool = False) -> None:
        super().__init__(name, skip_bad_images)
        if phase == 'train':
            raise OptionError(f'{name}: FixedScaleDownsampleImageDataset serves validation and test only (as the '
                              'official one); train with RandomScaleDownsampleImageDataset.')
        if isinstance(ds_scale, bool) or not isinstance(ds_scale, int) or ds_scale < 1:
            raise OptionError(f'Option "ds_scale" must be a positive integer, got {ds_scale!r}.', key='ds_scale')
        _check_resize(resize)
        self.backend = open_backend(io_backend or {'type': 'disk'}, dataroot_gt)
        self.keys = list_keys(self.backend, meta_info_file, 'HR')
        self.scale, self.resize = ds_scale, resize

    def __len__(self) -> int:
        return len(self.keys)

    def _sample(self, index: int, rng: np.random.Generator | None) -> dict[str, Any]:
        key = self.keys[index]
        path = self.backend.describe(key)
        hr = load_image(self.backend, key)
        s = self.scale
        gt = hr[:hr.shape[0] // s * s, :hr.shape[1] // s * s]
        if gt.shape[0] == 0 or gt.shape[1] == 0:
            raise DataError(f'{path}: {hr.shape[0]}x{hr.shape[1]} is smaller than the scale {s}.')
        return {'lq': img_to_tensor(_downscale(gt, s, self.resize)), 'gt': img_to_tensor(gt),
                'lq_path': path, 'gt_path': path}


@DATASET_REGISTRY.register()
class RandomScaleDownsampleImageDataset(KeyedDataset):
    """HR training images -> one (``lq_x<s>``, ``gt_x<s>``) pair per scale of ``random_scales`` (module docstring)."""

    def __init__(self, dataroot_gt: str, random_scales: list[int], lq_size: int,
                 io_backend: dict[str, Any] | None = None, meta_info_file: str | None = None,
                 filename_tmpl: str = '{}', use_hflip: bool = False, use_rot: bool = False, resize: Resize = 'pil',
                 phase: Literal['train', 'val', 'test'] = 'train', name: str = 'RandomScaleDownsampleImageDataset',
                 skip_bad_images: bool = False) -> None:
        super().__init__(name, skip_bad_images)
        if phase != 'train':
            raise OptionError(f'{name}: RandomScaleDownsampleImageDataset serves training only (as the official '
                              'one); evaluate with FixedScaleDownsampleImageDataset or FixedScalePairedImageDataset.')
        if (not isinstance(random_scales, list) or not random_scales or len(set(random_scales)) != len(random_scales)
                or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in random_scales)):
            raise OptionError(f'Option "random_scales" must list distinct positive integers, got {random_scales!r}.',
                              key='random_scales')
        if isinstance(lq_size, bool) or not isinstance(lq_size, int) or lq_size < 1:
            raise OptionError(f'Option "lq_size" must be a positive integer, got {lq_size!r}.', key='lq_size')
        _check_resize(resize)
        self.backend = open_backend(io_backend or {'type': 'disk'}, dataroot_gt)
        self.keys = list_keys(self.backend, meta_info_file, 'HR')
        self.scales, self.lq_size, self.resize = list(random_scales), lq_size, resize
        self.use_hflip, self.use_rot = use_hflip, use_rot

    def __len__(self) -> int:
        return len(self.keys)

    def _sample(self, index: int, rng: np.random.Generator | None) -> dict[str, Any]:
        if rng is None:
            raise TypeError(f'{self.name} serves training keys (index, seed) only.')
        key = self.keys[index]
        path = self.backend.describe(key)
        hr = load_image(self.backend, key)
        sample: dict[str, Any] = {'gt_path': path}
        for s in self.scales:
            gt = random_crop(hr, self.lq_size * s, rng, path)
            gt = np.ascontiguousarray(augment([gt], rng, hflip=self.use_hflip, rotation=self.use_rot)[0])
            sample[f'gt_x{s}'] = img_to_tensor(gt)
            sample[f'lq_x{s}'] = img_to_tensor(_downscale(gt, s, self.resize))
        return sample
