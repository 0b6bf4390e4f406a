"""HR images and the random blur kernels of Real-ESRGAN's degradation (BasicSR's RealESRGANDataset, same keys).

A sample is the GT image, flipped/rotated, padded (reflecting, bottom/right) or randomly cropped to 400x400,
plus three kernels the model's SecondOrderDegradation applies on the GPU: ``kernel1`` and ``kernel2`` (a
sinc kernel with ``sinc_prob``, else a ``kernel_list`` type drawn with ``kernel_prob``) and the final
``sinc_kernel`` (with ``final_sinc_prob``, else a pulse: no filtering). Every random choice comes from
``default_rng(seed)`` of the sampler's ``(index, seed)`` key, so a sample depends only on its key.

Kernel sizes are odd, drawn from 7 to ``blur_kernel_size`` (``blur_kernel_size2``; BasicSR hard-codes 7..21 and
ignores the option, which is 21 in every published file), and all kernels are zero-padded to the larger of
the two options so that they batch.
"""
from __future__ import annotations

import math
from typing import Any, Literal, Sequence

import numpy as np
import torch

from srkit.core.errors import DataError
from srkit.core.registry import DATASET_REGISTRY
from srkit.data.degradations import (
    check_kernel_options,
    check_probability,
    circular_lowpass_kernel,
    random_mixed_kernels,
)
from srkit.data.file_backends import load_image, open_backend
from srkit.data.image_io import img_to_tensor
from srkit.data.paired_image_dataset import list_keys
from srkit.data.samplers import KeyedDataset
from srkit.data.transforms import augment

__all__ = ['RealESRGANDataset']

CROP_PAD_SIZE = 400  # BasicSR's fixed size of the GT handed to the degradation (gt_size crops it later)


class _BlurKernels:
    """One degradation round's kernel options (checked) and its draw."""

    def __init__(self, size: int, kernel_list: Sequence[str], kernel_prob: Sequence[float], sinc_prob: float,
                 blur_sigma: Sequence[float], betag_range: Sequence[float], betap_range: Sequence[float],
                 suffix: str) -> None:
        check_kernel_options(size, kernel_list, kernel_prob, blur_sigma, betag_range, betap_range, sinc_prob,
                             suffix)
        self.sizes = list(range(min(7, size), size + 1, 2))
        self.kernel_list, self.kernel_prob, self.sinc_prob = list(kernel_list), list(kernel_prob), sinc_prob
        self.blur_sigma, self.betag_range, self.betap_range = blur_sigma, betag_range, betap_range

    def draw(self, rng: np.random.Generator, pad_to: int) -> np.ndarray:
        """Draw order: size, sinc coin, then the cutoff or the mixed kernel's own draws."""
        size = int(rng.choice(self.sizes))
        if rng.random() < self.sinc_prob:
            kernel = circular_lowpass_kernel(_draw_cutoff(rng, size), size)
        else:
            kernel = random_mixed_kernels(rng, self.kernel_list, self.kernel_prob, size, self.blur_sigma,
                                          self.betag_range, self.betap_range)
        return np.pad(kernel, (pad_to - size) // 2)


def _draw_cutoff(rng: np.random.Generator, size: int) -> float:
    """BasicSR's sinc cutoff: in [pi/3, pi] for kernels under 13 pixels, else [pi/5, pi]."""
    return float(rng.uniform(math.pi / 3 if size < 13 else math.pi / 5, math.pi))


def _float_tensor(kernel: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(kernel, dtype=np.float32))


@DATASET_REGISTRY.register()
class RealESRGANDataset(KeyedDataset):
    """GT images (folder or LMDB) -> ``{'gt', 'kernel1', 'kernel2', 'sinc_kernel', 'gt_path'}``; training only.

    ``meta_info``: BasicSR's name for the file listing the images (all of the folder without it). ``gt_size``
    is accepted as in Real-ESRGAN's files, where the dataset ignores it (the model crops to the top-level
    gt_size); here it must fit in the 400x400 GT.
    """

    def __init__(self, dataroot_gt: str, *, blur_kernel_size: int, kernel_list: Sequence[str],
                 kernel_prob: Sequence[float], sinc_prob: float, blur_sigma: Sequence[float],
                 betag_range: Sequence[float], betap_range: Sequence[float], blur_kernel_size2: int,
                 kernel_list2: Sequence[str], kernel_prob2: Sequence[float], sinc_prob2: float,
                 blur_sigma2: Sequence[float], betag_range2: Sequence[float], betap_range2: Sequence[float],
                 final_sinc_prob: float, io_backend: dict[str, Any] | None = None, meta_info: str | None = None,
                 use_hflip: bool = False, use_rot: bool = False, gt_size: int | None = None,
                 phase: Literal['train', 'val', 'test'] = 'train', name: str = 'RealESRGANDataset',
                 skip_bad_images: bool = False) -> None:
        super().__init__(name, skip_bad_images)
        if phase != 'train':
            raise ValueError(f'RealESRGANDataset makes random training samples only (this one is {phase}); '
                             'validate on fixed LR/HR pairs with PairedImageDataset')
        if gt_size is not None and not 1 <= gt_size <= CROP_PAD_SIZE:
            raise ValueError(f'gt_size must be within 1..{CROP_PAD_SIZE} (the GT is cropped or padded to '
                             f'{CROP_PAD_SIZE}x{CROP_PAD_SIZE}), got {gt_size}')
        self.first = _BlurKernels(blur_kernel_size, kernel_list, kernel_prob, sinc_prob, blur_sigma, betag_range,
                                  betap_range, '')
        self.second = _BlurKernels(blur_kernel_size2, kernel_list2, kernel_prob2, sinc_prob2, blur_sigma2,
                                   betag_range2, betap_range2, '2')
        self.final_sinc_prob = check_probability('final_sinc_prob', final_sinc_prob)
        self.kernel_size = max(blur_kernel_size, blur_kernel_size2)
        self.final_sizes = list(range(min(7, self.kernel_size), self.kernel_size + 1, 2))
        self.pulse = np.zeros((self.kernel_size, self.kernel_size))
        self.pulse[self.kernel_size // 2, self.kernel_size // 2] = 1
        self.use_hflip, self.use_rot, self.phase = use_hflip, use_rot, phase
        self.backend = open_backend(io_backend or {'type': 'disk'}, dataroot_gt)
        self.keys = list_keys(self.backend, meta_info, 'GT')

    def __len__(self) -> int:
        return len(self.keys)

    def _crop_or_pad(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Pad to at least CROP_PAD_SIZE (reflecting without repeating the edge: cv2's BORDER_REFLECT_101),
        then crop a random CROP_PAD_SIZE square (top, then left)."""
        h, w = img.shape[:2]
        if h < CROP_PAD_SIZE or w < CROP_PAD_SIZE:
            img = np.pad(img, ((0, max(0, CROP_PAD_SIZE - h)), (0, max(0, CROP_PAD_SIZE - w)), (0, 0)),
                         mode='reflect')
            h, w = img.shape[:2]
        if h > CROP_PAD_SIZE or w > CROP_PAD_SIZE:
            top = int(rng.integers(0, h - CROP_PAD_SIZE + 1))
            left = int(rng.integers(0, w - CROP_PAD_SIZE + 1))
            img = img[top:top + CROP_PAD_SIZE, left:left + CROP_PAD_SIZE]
        return img

    def _sample(self, index: int, rng: np.random.Generator | None) -> dict[str, Any]:
        key = self.keys[index]
        path = self.backend.describe(key)
        if rng is None:
            raise DataError(f'{self.name}: RealESRGANDataset needs training keys (index, seed), got index {index} '
                            'alone.')
        img = load_image(self.backend, key)
        img = augment([img], rng, hflip=self.use_hflip, rotation=self.use_rot)[0]
        gt = self._crop_or_pad(img, rng)
        kernel1 = self.first.draw(rng, self.kernel_size)
        kernel2 = self.second.draw(rng, self.kernel_size)
        if rng.random() < self.final_sinc_prob:
            size = int(rng.choice(self.final_sizes))
            sinc = circular_lowpass_kernel(float(rng.uniform(math.pi / 3, math.pi)), size, pad_to=self.kernel_size)
        else:
            sinc = self.pulse
        return {'gt': img_to_tensor(gt), 'kernel1': _float_tensor(kernel1), 'kernel2': _float_tensor(kernel2),
                'sinc_kernel': _float_tensor(sinc), 'gt_path': path}
