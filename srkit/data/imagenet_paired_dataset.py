"""MMA's ImageNet pre-training pairs, in the official order (ArsenalCheng/MMA, ``ImageNetPairedDataset``).

Why not HRBicubicDataset: the official loader makes the LR from the whole photo and crops the pair
afterwards, so the outer LR pixels of a patch see the photo around it (HRBicubicDataset downscales the
patch, whose edges are mirrored); its LR stays float, never rounded to 8 bits; and a photo side shorter than
``gt_size`` is stretched to ``gt_size`` (OpenCV's bilinear ``cv2.resize``) instead of being refused.
A training key ``(index, seed)`` runs the official steps on the whole photo: crop to a multiple of
``scale``, stretch short sides, MATLAB bicubic to ``1/scale`` (``srkit.ops.imresize``, float), then an
aligned ``gt_size`` patch and the flips/transposition, every choice drawn from ``default_rng(seed)``.
An int key (validation, test) gives the photo cropped to a multiple of ``scale`` and its float LR.

Layout: ImageNet's ``train/<class>/<image>``. Images in the root's immediate sub-folders and in the root
itself are read (a flat folder is the case of no class folders); deeper folders are not searched, as
the official loader lists exactly one level. docs/DATASETS.md lists the official facts and the
differences.
"""
from __future__ import annotations

import os
from typing import Any, Literal, Mapping

import numpy as np

from srkit.core.errors import DataError
from srkit.core.registry import DATASET_REGISTRY
from srkit.data.file_backends import DiskBackend, FileBackend, load_image, open_backend
from srkit.data.image_io import IMAGE_EXTENSIONS, img_to_tensor
from srkit.data.paired_image_dataset import check_training_options, list_keys
from srkit.data.samplers import KeyedDataset
from srkit.data.transforms import augment, paired_random_crop
from srkit.ops.imresize import imresize, modcrop

__all__ = ['ImageNetPairedDataset', 'ClassFolderBackend', 'open_class_folders', 'stretch_short_sides']


def _images_in(folder: str) -> list[str]:
    """Names of the visible image files directly in ``folder`` (``os.scandir``: no stat per file, which
    matters for ImageNet's 1.28M photos)."""
    with os.scandir(folder) as entries:
        return [e.name for e in entries if not e.name.startswith('.') and e.is_file()
                and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS]


class ClassFolderBackend(DiskBackend):
    """A folder of class sub-folders (``<root>/<class>/<image>``, one level) plus images in the root itself.

    Keys are paths relative to the root (``n01440764/n01440764_10026.JPEG``), so ``get`` and ``describe``
    work unchanged and a meta_info file lists them the same way.
    """

    def keys(self) -> list[str]:
        keys = _images_in(str(self.root))
        with os.scandir(self.root) as entries:
            folders = [e.name for e in entries if not e.name.startswith('.') and e.is_dir()]
        for folder in folders:
            keys += [f'{folder}/{name}' for name in _images_in(os.path.join(self.root, folder))]
        return sorted(keys)


def open_class_folders(io_backend: Mapping[str, Any], root: str) -> FileBackend:
    """``open_backend`` with a disk folder read as class folders; an LMDB is read as it is (its
    meta_info.txt lists the keys, whatever folders they came from)."""
    backend = open_backend(io_backend, root)
    if not isinstance(backend, DiskBackend):
        return backend
    folders = ClassFolderBackend(root)
    folders.decoded_cache, folders.allow_16bit = backend.decoded_cache, backend.allow_16bit
    return folders


def _linear_taps(in_len: int, out_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's ``INTER_LINEAR`` source pixels and weight of the second one, per output pixel.

    Pixel centres are aligned, ``x = (d + 0.5) * scale - 0.5`` with OpenCV's ``scale = 1 / (out / in)``,
    and a position outside the first..last pixel takes the edge pixel whole. The weight is ``x``'s
    fraction in double, then float32: what opencv-python's default build (Intel IPP, x86-64) computes;
    OpenCV's own code rounds ``x`` to float32 first, about 5e-6 apart (docs/DATASETS.md).
    """
    x = (np.arange(out_len) + 0.5) * (1 / (out_len / in_len)) - 0.5
    first = np.floor(x)
    frac = (x - first).astype(np.float32)
    first_index = first.astype(np.int64)
    outside = (first_index < 0) | (first_index >= in_len - 1)
    first_index = np.clip(first_index, 0, in_len - 1)
    frac[outside] = 0
    return first_index, np.minimum(first_index + 1, in_len - 1), frac


def _stretch_axis(img: np.ndarray, axis: int, out_len: int) -> np.ndarray:
    first, second, frac = _linear_taps(img.shape[axis], out_len)
    shape = [1] * img.ndim
    shape[axis] = -1
    weight = frac.reshape(shape)
    return np.take(img, first, axis=axis) * (1 - weight) + np.take(img, second, axis=axis) * weight


def stretch_short_sides(img: np.ndarray, size: int) -> np.ndarray:
    """Each side shorter than ``size`` stretched to ``size``, the other kept: the official
    ``cv2.resize(img, (max(w, size), max(h, size)))`` on a float32 HWC image (bilinear; width, then height).

    Why: the official loader trains on small photos this way rather than skipping them. An image with no
    short side is returned as it is (``cv2.resize`` to the same size is a copy).
    """
    out = img
    if img.shape[1] < size:
        out = _stretch_axis(out, 1, size)
    if img.shape[0] < size:
        out = _stretch_axis(out, 0, size)
    return out.astype(np.float32, copy=False)


@DATASET_REGISTRY.register()
class ImageNetPairedDataset(KeyedDataset):
    """MMA's pre-training pairs: HR from class folders (or a flat folder, an LMDB), float LR = MATLAB
    bicubic of the whole photo, then an aligned patch; small photos stretched (``stretch_small_images``)."""

    def __init__(self, dataroot_gt: str, scale: int, io_backend: dict[str, Any] | None = None,
                 meta_info_file: str | None = None, gt_size: int | None = None, use_hflip: bool = False,
                 use_rot: bool = False, stretch_small_images: bool = True,
                 phase: Literal['train', 'val', 'test'] = 'train', name: str = 'ImageNetPairedDataset',
                 skip_bad_images: bool = False) -> None:
        super().__init__(name, skip_bad_images)
        check_training_options(phase, scale, gt_size, None, {'use_hflip': use_hflip, 'use_rot': use_rot})
        self.backend = open_class_folders(io_backend or {'type': 'disk'}, dataroot_gt)
        self.keys = self._list_keys(meta_info_file)
        self.scale, self.phase, self.gt_size = scale, phase, gt_size
        self.use_hflip, self.use_rot, self.stretch_small_images = use_hflip, use_rot, stretch_small_images

    def _list_keys(self, meta_info_file: str | None) -> list[str]:
        if meta_info_file is not None:
            return list_keys(self.backend, meta_info_file, 'HR')
        keys = self.backend.keys()
        if not keys:
            raise DataError(f'{self.backend.root}: no HR images found, neither in the folder nor in its class '
                            f'sub-folders (<root>/<class>/<image>); extensions: {", ".join(IMAGE_EXTENSIONS)}.')
        return keys

    def __len__(self) -> int:
        return len(self.keys)

    def _whole_hr(self, key: str, path: str) -> np.ndarray:
        """The photo as float32 in [0, 1], cropped to a multiple of ``scale`` (the official modcrop)."""
        img = load_image(self.backend, key)
        hr = modcrop(img, self.scale)
        if hr.shape[0] == 0 or hr.shape[1] == 0:
            raise DataError(f'{path}: {img.shape[0]}x{img.shape[1]} (HxW) has a side shorter than scale '
                            f'{self.scale}, so nothing is left after cropping it to a multiple of the scale.')
        return hr.astype(np.float32) / 255

    def _fit_patch(self, hr: np.ndarray, path: str) -> np.ndarray:
        assert self.gt_size is not None  # check_training_options requires it for training
        if self.stretch_small_images:
            return stretch_short_sides(hr, self.gt_size)
        if min(hr.shape[:2]) < self.gt_size:
            raise DataError(f'{path}: {hr.shape[0]}x{hr.shape[1]} (HxW, cropped to a multiple of scale '
                            f'{self.scale}) is smaller than the {self.gt_size}x{self.gt_size} training patch '
                            '(gt_size). stretch_small_images: true stretches it as the official loader does; '
                            'skip_bad_images: true or a meta_info_file leaves it out.')
        return hr

    def _sample(self, index: int, rng: np.random.Generator | None) -> dict[str, Any]:
        key = self.keys[index]
        path = self.backend.describe(key)
        hr = self._whole_hr(key, path)
        if rng is not None:
            hr = self._fit_patch(hr, path)
        lq = imresize(hr, 1 / self.scale).astype(np.float32)
        if rng is not None:
            lq, hr = paired_random_crop(lq, hr, self.scale, rng, gt_size=self.gt_size, lq_path=path, gt_path=path)
            lq, hr = augment([lq, hr], rng, hflip=self.use_hflip, rotation=self.use_rot)
        return {'lq': img_to_tensor(lq), 'gt': img_to_tensor(hr), 'lq_path': path, 'gt_path': path}
