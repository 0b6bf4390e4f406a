"""Crop every image of a folder into overlapping sub-images (BasicSR's extract_subimages), for fast training.

Large HR photos (DIV2K: 2K) cost a full decode per random patch; 480x480 sub-images cost ~1/10 of that.
Positions along each side: 0, step, 2*step, ... while a crop fits, plus one crop flush with the far edge
when more than ``thresh-size`` pixels would otherwise be left out. Sub-images are ``<stem>_s001.png`` ...,
numbered row by row. For the LR folder of a pair, divide crop size, step and threshold by the scale:

    python scripts/data/extract_subimages.py --input datasets/DIV2K/DIV2K_train_HR \\
        --output datasets/DIV2K/DIV2K_train_HR_sub --crop-size 480 --step 240 --thresh-size 0
    python scripts/data/extract_subimages.py --input datasets/DIV2K/DIV2K_train_LR_bicubic/X4 \\
        --output datasets/DIV2K/DIV2K_train_LR_bicubic_X4_sub --crop-size 120 --step 60 --thresh-size 0

The output folder must not exist: nothing is ever overwritten.
"""
from __future__ import annotations

import argparse
import functools
import shutil
from multiprocessing import Pool
from pathlib import Path

from srkit.core.errors import DataError, OptionError
from srkit.data.file_backends import DiskBackend
from srkit.data.image_io import read_image, write_image
from srkit.engine.cli import run_entry_point


def crop_positions(length: int, crop_size: int, step: int, thresh_size: int) -> list[int]:
    """Start offsets of the crops along one side (empty when the side is shorter than ``crop_size``)."""
    if length < crop_size:
        return []
    starts = list(range(0, length - crop_size + 1, step))
    if length - (starts[-1] + crop_size) > thresh_size:
        starts.append(length - crop_size)
    return starts


def extract_one(path: Path, output: Path, crop_size: int, step: int, thresh_size: int) -> int:
    """Write the sub-images of one image; returns how many."""
    img = read_image(path)
    count = 0
    for top in crop_positions(img.shape[0], crop_size, step, thresh_size):
        for left in crop_positions(img.shape[1], crop_size, step, thresh_size):
            count += 1
            write_image(output / f'{path.stem}_s{count:03d}.png', img[top:top + crop_size, left:left + crop_size])
    return count


def extract_all(paths: list[Path], output: Path, crop_size: int, step: int, thresh_size: int,
                workers: int) -> list[int]:
    """Sub-image counts per image; a failed run removes its own partial output folder."""
    work = functools.partial(extract_one, output=output, crop_size=crop_size, step=step, thresh_size=thresh_size)
    output.mkdir(parents=True)
    try:
        if workers == 1:
            return [work(p) for p in paths]
        with Pool(workers) as pool:
            return pool.map(work, paths)
    except BaseException:
        shutil.rmtree(output)
        raise


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', required=True, type=Path, help='folder of images')
    parser.add_argument('--output', required=True, type=Path, help='new folder for the sub-images')
    parser.add_argument('--crop-size', type=int, default=480, help='side of a sub-image (default 480)')
    parser.add_argument('--step', type=int, default=240, help='distance between crops (default 240)')
    parser.add_argument('--thresh-size', type=int, default=0,
                        help='add a crop at the far edge when more than this many pixels are left (default 0)')
    parser.add_argument('--workers', type=int, default=1, help='processes (default 1)')
    args = parser.parse_args(argv)
    if args.crop_size < 1 or args.step < 1 or args.thresh_size < 0 or args.workers < 1:
        raise OptionError('--crop-size, --step and --workers must be positive, --thresh-size >= 0.')
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    names = DiskBackend(args.input).keys()
    if not names:
        raise DataError(f'{args.input}: no images found.')
    if args.output.exists():
        raise DataError(f'{args.output}: already exists; choose a new output folder (nothing is overwritten).')
    paths = [args.input / name for name in names]
    counts = extract_all(paths, args.output, args.crop_size, args.step, args.thresh_size, args.workers)
    too_small = [p.name for p, n in zip(paths, counts) if n == 0]
    print(f'{sum(counts)} sub-images of {len(paths)} images written to {args.output}.')
    if too_small:
        print(f'{len(too_small)} image(s) smaller than {args.crop_size} pixels gave none: {", ".join(too_small)}')


if __name__ == '__main__':
    run_entry_point(main)
