"""LR images only, for inference (BasicSR's SingleImageDataset option keys): samples ``{'lq', 'lq_path'}``."""
from __future__ import annotations

from typing import Any, Literal

import numpy as np

from srkit.core.registry import DATASET_REGISTRY
from srkit.data.file_backends import load_image, open_backend
from srkit.data.image_io import img_to_tensor
from srkit.data.paired_image_dataset import list_keys
from srkit.data.samplers import KeyedDataset

__all__ = ['SingleImageDataset']


@DATASET_REGISTRY.register()
class SingleImageDataset(KeyedDataset):
    """Every image of a folder or LMDB (or those ``meta_info_file`` lists), whole, with no randomness."""

    def __init__(self, dataroot_lq: str, io_backend: dict[str, Any] | None = None, meta_info_file: str | None = None,
                 phase: Literal['train', 'val', 'test'] = 'test', name: str = 'SingleImageDataset') -> None:
        super().__init__(name)
        self.phase = phase
        self.backend = open_backend(io_backend or {'type': 'disk'}, dataroot_lq)
        self.keys = list_keys(self.backend, meta_info_file, 'LR')

    def __len__(self) -> int:
        return len(self.keys)

    def _sample(self, index: int, rng: np.random.Generator | None) -> dict[str, Any]:
        key = self.keys[index]
        return {'lq': img_to_tensor(load_image(self.backend, key)), 'lq_path': self.backend.describe(key)}
