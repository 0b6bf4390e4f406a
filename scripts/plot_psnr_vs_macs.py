"""PSNR vs Multi-Adds with bubble area = params, from test.py's results.json files.

    python scripts/plot_psnr_vs_macs.py results/zoo --dataset Set5 --scale 4 --out figures/set5_x4.png
    python scripts/plot_psnr_vs_macs.py results/*/results.json --complexity table.csv --dataset Set14 --scale 2 \\
        --out figures/set14_x2.png

Params and Multi-Adds (1280x720 output) come from --complexity (a CSV of scripts/complexity.py); rows it
lacks are counted here from the registered architecture. Needs matplotlib.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from srkit.engine.cli import run_entry_point
from srkit.tools.complexity_table import read_table_csv
from srkit.tools.model_zoo import collect
from srkit.tools.plots import plot_psnr_vs_macs, tradeoff_points


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('results', nargs='+', type=Path, help='results.json files, or folders of <run>/results.json')
    parser.add_argument('--complexity', type=Path, help='CSV written by scripts/complexity.py')
    parser.add_argument('--dataset', required=True, help='e.g. Set5')
    parser.add_argument('--scale', type=int, help='keep runs of this scale only')
    parser.add_argument('--metric', default='psnr', help='the y axis: a metric of the results, e.g. psnr, ssim')
    parser.add_argument('--log-x', action=argparse.BooleanOptionalAction, default=None,
                        help='logarithmic Multi-Adds axis (default: when they span more than 20x)')
    parser.add_argument('--title', default='', help='figure title (default: "<dataset> x<scale>: PSNR vs Multi-Adds")')
    parser.add_argument('--out', type=Path, required=True, help='the image to write (.png, .pdf, .svg)')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    files = sorted(f for p in args.results for f in (p.glob('*/results.json') if p.is_dir() else [p]))
    rows = read_table_csv(args.complexity) if args.complexity else []
    complexity = {(r.arch, r.scale): (r.params, r.macs) for r in rows}
    for entry in collect(files):  # each run's own network: custom widths are counted as they were trained
        complexity.setdefault((entry.arch, entry.scale), (entry.params, entry.macs))
    points = tradeoff_points(files, complexity, args.dataset, args.scale, args.metric)
    title = args.title or f'{args.dataset}' + (f' x{args.scale}' if args.scale else '') + ': PSNR vs Multi-Adds'
    plot_psnr_vs_macs(points, args.out, title=title, ylabel=f'{args.metric.upper()} on {args.dataset}',
                      log_x=args.log_x)
    print(f'wrote {args.out} ({len(points)} models)')


if __name__ == '__main__':
    run_entry_point(main)
