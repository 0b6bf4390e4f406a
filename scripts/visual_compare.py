"""Side-by-side crops of HR, bicubic and each model's output with PSNR / SSIM: an SR paper's visual figure.

    python scripts/visual_compare.py --hr ../shared/data/Set14/HR/barbara.png --scale 4 --box 380 40 120 90 \\
        --model IMDN IMDN ../shared/weights/IMDN/IMDN_x4.pth \\
        --model EIMN-A options/test/EIMN/test_EIMN_A_x4.yml --out figures/barbara_x4.png

--hr takes one or more images (a row each); --lr gives their LR images in the same order, else LR is made
by the benchmark protocol (HR cropped to a multiple of 12, MATLAB bicubic). --box is in HR pixels: one for
every image, or one per image. --model LABEL MODEL [WEIGHTS]: MODEL is an architecture name (with WEIGHTS)
or an option file. The PNG is not overwritten unless --force.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from srkit.core.errors import DataError, OptionError
from srkit.data.image_io import read_image, write_image
from srkit.engine.cli import run_entry_point
from srkit.tools.models import load_model
from srkit.tools.visual_compare import Box, compose_row, make_panels, prepare_pair, stack_rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--hr', nargs='+', required=True, type=Path, help='HR images, one figure row each')
    parser.add_argument('--lr', nargs='+', type=Path, help='their LR images (default: MATLAB bicubic of HR)')
    parser.add_argument('--scale', type=int, required=True, help='upscaling factor')
    parser.add_argument('--box', nargs=4, type=int, action='append', required=True, metavar=('X', 'Y', 'W', 'H'),
                        help='the region to enlarge, in HR pixels: once for every image, or once per image')
    parser.add_argument('--model', nargs='+', action='append', default=[], metavar='LABEL MODEL [WEIGHTS]',
                        help='a column: its caption, an architecture (with WEIGHTS) or an option file; repeatable')
    parser.add_argument('--out', type=Path, required=True, help='the PNG to write')
    parser.add_argument('--crop-width', type=int, default=160, help='width of each enlarged crop in pixels')
    parser.add_argument('--tile', type=int, default=0, help='run models tile by tile (LR pixels)')
    parser.add_argument('--device', default='auto', help='auto, cpu, cuda or cuda:N')
    parser.add_argument('--force', action='store_true', help='replace --out if it exists')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.out.exists() and not args.force:
        raise DataError(f'{args.out} exists; pass --force to replace it.')
    if args.lr and len(args.lr) != len(args.hr):
        raise OptionError(f'--lr gives {len(args.lr)} images for {len(args.hr)} --hr images; give one per HR image.')
    if len(args.box) not in (1, len(args.hr)):
        raise OptionError(f'--box is given {len(args.box)} times for {len(args.hr)} images: '
                          'give one, or one per image.')
    models = []
    for spec in args.model:
        if len(spec) not in (2, 3):
            raise OptionError(f'--model {" ".join(spec)}: expected LABEL MODEL [WEIGHTS].')
        model = load_model(spec[1], weights=spec[2] if len(spec) == 3 else None, scale=args.scale, device=args.device)
        models.append((spec[0], model))
    rows = []
    for index, hr_path in enumerate(args.hr):
        lr = read_image(args.lr[index]) if args.lr else None
        gt, lr = prepare_pair(read_image(hr_path), args.scale, lr)
        box = Box(*args.box[index if len(args.box) > 1 else 0])
        panels = make_panels(gt, lr, args.scale, models, tile=args.tile)
        rows.append(compose_row(panels, box, args.crop_width))
        scores = ', '.join(f'{p.label} {p.psnr:.2f}' for p in panels if p.psnr is not None)
        print(f'{hr_path.name}: {scores}')
    write_image(args.out, stack_rows(rows))
    print(f'wrote {args.out}')


if __name__ == '__main__':
    run_entry_point(main)
