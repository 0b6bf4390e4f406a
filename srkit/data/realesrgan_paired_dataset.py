"""Real-ESRGAN's paired training set (``RealESRGANPairedDataset``), for fine-tuning on real (lq, gt) pairs.

It is PairedImageDataset with Real-ESRGAN's ``meta_info``: a file of pairs, one ``gt_path, lq_path`` per line,
relative to dataroot_gt and dataroot_lq (what Real-ESRGAN's scripts/generate_meta_info_pairdata.py writes), so
the two names need not follow a template and may sit in sub-folders. Without it, pairs are matched by name
through ``filename_tmpl``, as in PairedImageDataset. RealESRGANModel trains on these pairs with
``high_order_degradation: false``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from srkit.core.errors import DataError
from srkit.core.registry import DATASET_REGISTRY
from srkit.data.paired_image_dataset import PairedImageDataset

__all__ = ['RealESRGANPairedDataset', 'read_pairs']


def read_pairs(meta_info: str) -> list[tuple[str, str]]:
    """The (gt, lq) relative paths of a Real-ESRGAN pair list; a malformed line is a DataError naming it."""
    path = Path(meta_info)
    try:
        lines = path.read_text(encoding='utf-8').splitlines()
    except OSError as exc:
        raise DataError(f'{path}: cannot read the meta_info pair list ({exc.strerror or exc}).') from None
    pairs = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = [part.strip() for part in line.split(',')]
        if len(parts) != 2 or not all(parts):
            raise DataError(f'{path}:{number}: expected "gt_path, lq_path", got {line.strip()!r}.')
        pairs.append((parts[0], parts[1]))
    if not pairs:
        raise DataError(f'{path}: the meta_info pair list names no images.')
    return pairs


@DATASET_REGISTRY.register()
class RealESRGANPairedDataset(PairedImageDataset):
    """Paired LR/HR images whose pairs ``meta_info`` may list (Real-ESRGAN's option name and file format)."""

    def __init__(self, dataroot_gt: str, dataroot_lq: str, scale: int, io_backend: dict[str, Any] | None = None,
                 meta_info: str | None = None, filename_tmpl: str = '{}', gt_size: int | None = None,
                 use_hflip: bool = False, use_rot: bool = False, phase: Literal['train', 'val', 'test'] = 'train',
                 name: str = 'RealESRGANPairedDataset', skip_bad_images: bool = False) -> None:
        self.pair_list = meta_info
        super().__init__(dataroot_gt, dataroot_lq, scale, io_backend=io_backend, filename_tmpl=filename_tmpl,
                         gt_size=gt_size, use_hflip=use_hflip, use_rot=use_rot, phase=phase, name=name,
                         skip_bad_images=skip_bad_images)

    def _pair_keys(self, meta_info_file: str | None, filename_tmpl: str) -> tuple[list[str], list[str]]:
        if self.pair_list is None:
            return super()._pair_keys(meta_info_file, filename_tmpl)
        pairs = read_pairs(self.pair_list)
        for backend, index in ((self.gt_backend, 0), (self.lq_backend, 1)):
            missing = backend.missing([pair[index] for pair in pairs])
            if missing:
                pair = next(p for p in pairs if p[index] == missing[0])
                raise DataError(f'{self.pair_list}: {backend.describe(missing[0])} (in the pair {", ".join(pair)}) '
                                'is not there.')
        return [gt for gt, _ in pairs], [lq for _, lq in pairs]
