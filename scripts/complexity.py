"""Complexity table of registered architectures: params, Multi-Adds, activations, peak memory, latency.

    python scripts/complexity.py --arch EIMN_A IMDN --scales 2 3 4 --out table.md table.csv

Counted for a 1280x720 output (input 640x360 / 427x240 / 320x180 at x2 / x3 / x4, REFERENCE.md). Scales an
architecture does not support are skipped with a note. Latency runs real 1280x720 forwards on --device
(median of --runs after --warmup); --no-latency leaves it out (seconds per row on a CPU otherwise).
"""
from __future__ import annotations

import argparse

from srkit.archs import arch_spec
from srkit.core.dist import select_device
from srkit.engine.cli import run_entry_point
from srkit.tools.complexity_table import measure_complexity, table_markdown, write_table


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arch', nargs='+', required=True, help='registered architectures or presets')
    parser.add_argument('--scales', nargs='+', type=int, default=[2, 3, 4])
    parser.add_argument('--out', nargs='*', default=[], help='tables to write: .md and/or .csv')
    parser.add_argument('--device', default='auto', help='where latency is measured: auto, cpu, cuda, cuda:1')
    parser.add_argument('--no-latency', action='store_true', help='skip the timed forwards')
    parser.add_argument('--warmup', type=int, default=3, help='untimed forwards before timing')
    parser.add_argument('--runs', type=int, default=10, help='timed forwards; their median is reported')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = None if args.no_latency else str(select_device(args.device, source='--device'))
    specs = {arch: arch_spec(arch) for arch in args.arch}  # an unknown name fails before any work
    rows = []
    for arch, spec in specs.items():
        for scale in args.scales:
            if not spec.supports_scale(scale):
                print(f'skipped {arch} x{scale}: {arch} supports scales {list(spec.scales)}')
                continue
            rows.append(measure_complexity(arch, scale, latency_device=device, warmup=args.warmup, runs=args.runs))
    print(table_markdown(rows))
    for out in args.out:
        write_table(rows, out)
        print(f'wrote {out}')


if __name__ == '__main__':
    run_entry_point(main)
