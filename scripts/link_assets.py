"""Link downloaded weights and benchmark sets to where srkit's option files look for them.

    python scripts/link_assets.py --weights ~/downloads/weights --data ~/data   # any of the two
    python scripts/link_assets.py --shared ../shared                            # = --weights ../shared/weights
                                                                                #   --data ../shared/data

Shipped option files name checkpoints as ``experiments/pretrained_models/<Family>/<file>`` (BasicSR's
convention) and data as ``datasets/<Set>/...``, relative to the folder srkit runs from (the repository).
Each file or set found under --weights/<Family>/ and --data/<Set> gets a symbolic link there. An existing
link to the same place is left as it is; anything else already at a destination is never replaced.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from srkit.core.errors import OptionError
from srkit.engine.cli import run_entry_point

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--shared', type=Path, help='a folder with weights/ and data/ inside')
    parser.add_argument('--weights', type=Path, help='a folder of <Family>/<checkpoint> files')
    parser.add_argument('--data', type=Path, help='a folder of benchmark and training sets (<Set>/...)')
    parser.add_argument('--root', type=Path, default=REPO, help='the folder srkit runs from (default: this repository)')
    return parser.parse_args(argv)


def link(source: Path, destination: Path) -> str:
    """Make ``destination`` a link to ``source``; say what was done (or why nothing was)."""
    target = source.resolve()
    if destination.is_symlink() and destination.resolve() == target:
        return f'kept {destination}'
    if destination.exists() or destination.is_symlink():
        return f'left {destination}: something else is already there'
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.symlink_to(target, target_is_directory=target.is_dir())
    return f'linked {destination} -> {target}'


def plan(args: argparse.Namespace) -> list[tuple[Path, Path]]:
    weights = args.weights or (args.shared / 'weights' if args.shared else None)
    data = args.data or (args.shared / 'data' if args.shared else None)
    if weights is None and data is None:
        raise OptionError('give --shared, --weights or --data')
    pairs = []
    for folder, kind in ((weights, 'weights'), (data, 'data')):
        if folder is None:
            continue
        if not folder.is_dir():
            raise OptionError(f'--{kind} {folder} is not a folder')
        if kind == 'weights':
            pairs += [(f, args.root / 'experiments' / 'pretrained_models' / f.relative_to(folder))
                      for f in sorted(folder.rglob('*')) if f.is_file()]
        else:
            pairs += [(d, args.root / 'datasets' / d.name) for d in sorted(folder.iterdir()) if d.is_dir()]
    return pairs


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    for source, destination in plan(args):
        print(link(source, destination))


if __name__ == '__main__':
    run_entry_point(main)
