"""The demo dataset: real photographs that ship inside scikit-image, prepared into datasets/ on first use.

It lets a new user train and evaluate a real network with no download. Training and validation images
are disjoint; large images are reduced (MATLAB bicubic) so that reading them does not dominate a CPU run.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import numpy as np

from srkit.core.errors import DataError
from srkit.core.registry import DATASET_REGISTRY
from srkit.data.hr_bicubic_dataset import HRBicubicDataset
from srkit.data.image_io import write_image
from srkit.ops.imresize import imresize

__all__ = ['DemoDataset', 'prepare_demo_images', 'DEMO_IMAGES']

logger = logging.getLogger('srkit')

# split -> (file name, scikit-image loader name, index into a tuple the loader returns)
DEMO_IMAGES: dict[str, list[tuple[str, str, int | None]]] = {
    'train': [('astronaut', 'astronaut', None), ('rocket', 'rocket', None), ('hubble', 'hubble_deep_field', None),
              ('retina', 'retina', None), ('ihc', 'immunohistochemistry', None),
              ('motorcycle_left', 'stereo_motorcycle', 0), ('motorcycle_right', 'stereo_motorcycle', 1)],
    'val': [('coffee', 'coffee', None), ('chelsea', 'chelsea', None)],
}
MAX_SIDE = 512


def prepare_demo_images(root: str | Path) -> Path:
    """Write the demo photographs as PNG under ``root/{train,val}`` unless they are there already."""
    root = Path(root)
    missing = [(split, item) for split, items in DEMO_IMAGES.items() for item in items
               if not (root / split / f'{item[0]}.png').is_file()]
    if not missing:
        return root
    try:
        import skimage.data
    except ImportError as exc:
        raise DataError('The demo dataset needs scikit-image (pip install scikit-image), which ships its '
                        f'photographs: {exc}.') from None
    logger.info('Preparing the demo dataset from scikit-image into %s (%d images).', root, len(missing))
    for split, (file_name, loader, index) in missing:
        img = getattr(skimage.data, loader)()
        img = img[index] if index is not None else img
        img = _shrink(np.ascontiguousarray(img[..., :3]))
        write_image(root / split / f'{file_name}.png', img)
    return root


def _shrink(img: np.ndarray) -> np.ndarray:
    side = max(img.shape[:2])
    if side <= MAX_SIDE:
        return img
    out_shape = (round(img.shape[0] * MAX_SIDE / side), round(img.shape[1] * MAX_SIDE / side))
    small = imresize(img.astype(np.float64), output_shape=out_shape)
    return np.clip(np.floor(small + 0.5), 0, 255).astype(np.uint8)


@DATASET_REGISTRY.register()
class DemoDataset(HRBicubicDataset):
    """scikit-image photographs with bicubic LR; ``split`` picks the training or held-out validation images."""

    def __init__(self, split: Literal['train', 'val'], scale: int, root: str = 'datasets/demo',
                 gt_size: int | None = None, use_hflip: bool = False, use_rot: bool = False,
                 phase: Literal['train', 'val', 'test'] = 'train', name: str = 'DemoDataset') -> None:
        folder = prepare_demo_images(root) / split
        super().__init__(dataroot_gt=str(folder), scale=scale, io_backend={'type': 'disk', 'cache_images': True},
                         gt_size=gt_size, use_hflip=use_hflip, use_rot=use_rot, phase=phase, name=name)

