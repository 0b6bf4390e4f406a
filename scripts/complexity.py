"""Complexity table of registered architectures: params, Multi-Adds, activations, peak memory, latency.

    python scripts/complexity.py --arch EIMN_A IMDN --scales 2 3 4 --out table.md table.csv
    python scripts/complexity.py --arch IMDN --scales 4 --latency --device cpu --runs 3   # CPU latency too
    python scripts/complexity.py --arch SwinIR_S MambaIR_light --convention fvcore   # the transformer papers' count

Counted for a 1280x720 output (input 640x360 / 427x240 / 320x180 at x2 / x3 / x4, docs/REFERENCE.md).
Scales an architecture does not support are skipped with a note. Latency runs real 1280x720 forwards on
--device (median of --runs after --warmup): by default only when that device is a GPU, since on a CPU each
forward of a large network takes seconds and a table minutes; --latency asks for it anyway. One line is
printed per architecture and scale as it is done, then the table.
"""
from __future__ import annotations

import argparse

from srkit.archs import arch_spec
from srkit.core.dist import select_device
from srkit.engine.cli import run_entry_point
from srkit.tools.complexity import CONVENTIONS
from srkit.tools.complexity_table import measure_table, table_markdown, write_table


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arch', nargs='+', required=True, help='registered architectures or presets')
    parser.add_argument('--scales', nargs='+', type=int, default=[2, 3, 4],
                        help='upscaling factors (default: 2 3 4); unsupported ones are skipped')
    parser.add_argument('--out', nargs='*', default=[], help='tables to write: .md and/or .csv')
    parser.add_argument('--device', default='auto', help='where latency is measured: auto, cpu, cuda, cuda:1')
    parser.add_argument('--latency', action=argparse.BooleanOptionalAction, default=None,
                        help='time real forwards (default: only when --device is a GPU)')
    parser.add_argument('--warmup', type=int, default=3, help='untimed forwards before timing')
    parser.add_argument('--runs', type=int, default=10, help='timed forwards; their median is reported')
    parser.add_argument('--convention', choices=CONVENTIONS, default='srkit',
                        help="Multi-Adds as the lightweight-CNN papers count them (srkit), or as fvcore counts them "
                             "(norms, upsampling, pooling and the selective scan too), as the transformer and Mamba "
                             "papers' tables do (fvcore)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = None if args.latency is False else select_device(args.device, source='--device')
    timed = device is not None and (args.latency or device.type == 'cuda')
    specs = {arch: arch_spec(arch) for arch in args.arch}  # an unknown name fails before any work
    jobs = []
    for arch, spec in specs.items():
        for scale in args.scales:
            if spec.supports_scale(scale):
                jobs.append((arch, scale))
            else:
                print(f'skipped {arch} x{scale}: {arch} supports scales {list(spec.scales)}')
    if device is not None and not timed:
        print(f'latency not measured on {device} by default (--latency measures it)')
    rows = measure_table(jobs, latency_device=str(device) if timed else None, warmup=args.warmup, runs=args.runs,
                         convention=args.convention)
    print(table_markdown(rows))
    for out in args.out:
        write_table(rows, out)
        print(f'wrote {out}')


if __name__ == '__main__':
    run_entry_point(main)
