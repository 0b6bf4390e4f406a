"""Training curves (losses, learning rate, validation metrics) of a srkit run.

    python scripts/plot_training_curves.py experiments/my_run --out figures/my_run_curves.png
    python scripts/plot_training_curves.py experiments/my_run --tensorboard --out curves.png

Reads every train_<name>_<time>.log of the experiment folder (or one log file given directly); with
--tensorboard, the events under <folder>/tb_logger instead. Needs matplotlib.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from srkit.engine.cli import run_entry_point
from srkit.tools.plots import parse_training_log, plot_training_curves, read_tensorboard_scalars


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('source', type=Path, help='experiments/<name>/ or one of its train_*.log files')
    parser.add_argument('--tensorboard', action='store_true', help='read <source>/tb_logger events, not the log')
    parser.add_argument('--title', default='', help="figure title (default: the run folder's name)")
    parser.add_argument('--out', type=Path, required=True, help='the image to write (.png, .pdf, .svg)')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    log = read_tensorboard_scalars(args.source / 'tb_logger') if args.tensorboard else parse_training_log(args.source)
    plot_training_curves(log, args.out, title=args.title or args.source.name)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    run_entry_point(main)
