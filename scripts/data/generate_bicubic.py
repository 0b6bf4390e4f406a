"""Make bicubic LR images from a folder of HR images, in either benchmark layout.

``--style basicsr`` (the LR behind BasicSR's and most papers' tables): ``GTmod12/`` = HR cropped to a
multiple of 12 (of lcm(12, scales) for other scales), ``LRbicx{s}/`` = round(MATLAB bicubic of the float
GTmod image), same file names. ``--style edsr``: ``HR/`` = the originals, ``LR_bicubic/X{s}/<name>x{s}.png``
= MATLAB's uint8 ``imresize`` of the HR cropped to a multiple of s.

    python scripts/data/generate_bicubic.py --hr path/to/Set5/HR --out datasets/Set5 --scales 2 3 4

Folders that already exist under ``--out`` are never overwritten: the script refuses to start.
"""
from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

from srkit.core.errors import DataError, OptionError
from srkit.data.file_backends import DiskBackend
from srkit.data.image_io import read_image, write_image
from srkit.engine.cli import run_entry_point
from srkit.ops.imresize import bicubic_degrade, bicubic_downscale, modcrop


def output_folders(out: Path, scales: list[int], style: str) -> dict[str, Path]:
    """The folders a run writes: 'gt' plus one per scale (keys 'x2', 'x3', ...)."""
    if style == 'basicsr':
        folders = {'gt': out / f'GTmod{math.lcm(12, *scales)}'}
        folders.update({f'x{s}': out / f'LRbicx{s}' for s in scales})
    else:
        folders = {'gt': out / 'HR'}
        folders.update({f'x{s}': out / 'LR_bicubic' / f'X{s}' for s in scales})
    return folders


def generate(hr_dir: Path, out: Path, scales: list[int], style: str) -> int:
    """Write every folder of ``output_folders``; returns the number of HR images. A failed run removes
    the folders it created."""
    names = DiskBackend(hr_dir).keys()
    if not names:
        raise DataError(f'{hr_dir}: no images found.')
    folders = output_folders(out, scales, style)
    existing = [str(f) for f in folders.values() if f.exists()]
    if existing:
        raise DataError(f'{existing[0]}: already exists; choose another --out (nothing is overwritten).')
    try:
        for name in names:
            _write_one(hr_dir / name, folders, scales, style)
    except BaseException:
        for folder in folders.values():  # only folders this run created: none existed before it
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return len(names)


def _write_one(path: Path, folders: dict[str, Path], scales: list[int], style: str) -> None:
    hr = read_image(path)
    if style == 'basicsr':
        multiple = math.lcm(12, *scales)
        gt = modcrop(hr, multiple)
        if gt.size == 0:
            raise DataError(f'{path}: smaller than {multiple} pixels, the modcrop of this layout.')
        write_image(folders['gt'] / f'{path.stem}.png', gt)
        for s in scales:
            write_image(folders[f'x{s}'] / f'{path.stem}.png', bicubic_downscale(gt, s))
    else:
        write_image(folders['gt'] / f'{path.stem}.png', hr)
        for s in scales:
            write_image(folders[f'x{s}'] / f'{path.stem}x{s}.png', bicubic_degrade(hr, s, style='edsr'))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--hr', required=True, type=Path, help='folder of HR images')
    parser.add_argument('--out', required=True, type=Path, help='dataset root to write into')
    parser.add_argument('--scales', type=int, nargs='+', default=[2, 3, 4], help='scales (default 2 3 4)')
    parser.add_argument('--style', choices=('basicsr', 'edsr'), default='basicsr', help='layout (default basicsr)')
    args = parser.parse_args(argv)
    if min(args.scales) < 2:
        raise OptionError(f'--scales {" ".join(map(str, args.scales))}: scales must be integers >= 2.')
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    count = generate(args.hr, args.out, sorted(set(args.scales)), args.style)
    print(f'{count} images: {args.style} layout written under {args.out}.')


if __name__ == '__main__':
    run_entry_point(main)
