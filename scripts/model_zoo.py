"""The generated model-zoo table (docs/MODEL_ZOO_TABLE.md) from test.py's results of official checkpoints.

    # 1. evaluate every option file whose checkpoint exists (experiments/pretrained_models/, see
    #    scripts/link_assets.py), on Set5 and Set14 from ../shared
    python scripts/model_zoo.py run options/test/EIMN/*.yml options/test/IMDN/*.yml options/test/ETDS/*.yml \\
        --shared ../shared --results-root results/zoo
    # 2. collect results/zoo/*/results.json (+ params and Multi-Adds) into Markdown
    python scripts/model_zoo.py table results/zoo --out docs/MODEL_ZOO_TABLE.md

``run`` calls ``srkit/test.py -opt <file>`` once per file, replacing its datasets with GTmod12 + LRbicx{s}
under --shared/data (``--force_yml datasets=...``) and its results folder with --results-root/<name>.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from srkit.engine.cli import run_entry_point
from srkit.tools.model_zoo import RUN_RECORD, collect, run_official, zoo_markdown

DEFAULT_SETS = ['Set5', 'Set14']


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True, help='run, then table (each has its own --help)')
    run = sub.add_parser('run', help='run test.py on option files of official checkpoints')
    run.add_argument('options', nargs='+', type=Path, help='test option files; those whose checkpoint is absent '
                     'are skipped with a note')
    run.add_argument('--shared', type=Path, default=Path('../shared'), help='folder holding data/<Set>/')
    run.add_argument('--results-root', type=Path, default=Path('results/zoo'),
                     help='each run writes <this folder>/<name>/results.{md,csv,json} (default: results/zoo)')
    run.add_argument('--sets', nargs='+', default=DEFAULT_SETS,
                     help=f'benchmark sets under --shared/data to evaluate (default: {" ".join(DEFAULT_SETS)})')
    table = sub.add_parser('table', help='collect results.json files into a Markdown table')
    table.add_argument('results', nargs='+', type=Path, help='results.json files, or folders of <run>/results.json')
    table.add_argument('--out', type=Path, required=True, help='the Markdown file to write')
    table.add_argument('--sets', nargs='+', default=DEFAULT_SETS,
                       help=f'columns of the table, one per set (default: {" ".join(DEFAULT_SETS)})')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = 'python scripts/model_zoo.py ' + ' '.join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    if args.command == 'run':
        written = run_official(args.options, args.shared, args.results_root, args.sets)
        args.results_root.mkdir(parents=True, exist_ok=True)
        (args.results_root / RUN_RECORD).write_text(command + '\n', encoding='utf-8')
        print(f'{len(written)} results under {args.results_root}')
        return
    records = [p / RUN_RECORD for p in args.results if (p / RUN_RECORD).is_file()]
    run_command = records[0].read_text(encoding='utf-8').strip() if records else None
    files = sorted(f for path in args.results for f in (path.glob('*/results.json') if path.is_dir() else [path]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(zoo_markdown(collect(files), args.sets, command, run_command, out=args.out), encoding='utf-8')
    print(f'wrote {args.out}')


if __name__ == '__main__':
    run_entry_point(main)
