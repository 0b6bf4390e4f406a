"""Complexity tables: params, Multi-Adds, activations, peak memory and latency per architecture and scale.

Every figure is counted for a 1280x720 output, the convention of the lightweight-SR papers (docs/REFERENCE.md):
input 640x360 at x2, 427x240 at x3, 320x180 at x4, i.e. the output divided by the scale and rounded.
"""
from __future__ import annotations

import csv
import io
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from srkit.archs import arch_spec, create
from srkit.core.errors import OptionError
from srkit.tools.complexity import (
    Convention,
    count_activations,
    count_macs,
    count_params,
    measure_cuda_peak_memory,
    measure_latency,
    peak_memory_bytes,
)

__all__ = ['ComplexityRow', 'reference_input_hw', 'measure_complexity', 'measure_table', 'table_markdown',
           'table_csv', 'write_table', 'read_table_csv']

OUTPUT_HW = (720, 1280)


def reference_input_hw(scale: int, same_size_output: bool = False) -> tuple[int, int]:
    """Input (H, W) whose output is 1280x720: 360x640, 240x427, 180x320 at x2/x3/x4."""
    factor = 1 if same_size_output else scale
    return round(OUTPUT_HW[0] / factor), round(OUTPUT_HW[1] / factor)


@dataclass
class ComplexityRow:
    """One architecture at one scale; latency and the CUDA peak are None where they were not measured."""

    arch: str
    scale: int
    input_h: int
    input_w: int
    params: int
    macs: int
    activations: int
    peak_memory: int
    latency_ms: float | None = None
    cuda_peak_memory: int | None = None
    device: str = ''


def measure_complexity(arch: str, scale: int, *, net: nn.Module | None = None, latency_device: str | None = None,
                       warmup: int = 3, runs: int = 10, convention: Convention = 'srkit') -> ComplexityRow:
    """Count everything for ``arch`` at ``scale`` (``net`` overrides the registered defaults, e.g. a run's
    own network_g); latency only when ``latency_device`` is given, since it runs real 1280x720 forwards.
    ``convention``: how Multi-Adds are counted (srkit.tools.complexity.count_macs)."""
    net = net if net is not None else create(arch, scale)
    h, w = reference_input_hw(scale, arch_spec(arch).same_size_output)
    shape = (3, h, w)
    row = ComplexityRow(arch, scale, h, w, count_params(net), count_macs(net, shape, convention),
                        count_activations(net, shape),
                        peak_memory_bytes(net, shape))
    if latency_device is not None:
        device = torch.device(latency_device)
        if device.type == 'cuda' and not torch.cuda.is_available():
            raise OptionError(f'--device {latency_device}: CUDA is not available on this machine.')
        net = net.to(device).eval()
        row.latency_ms = measure_latency(net, shape, device, warmup=warmup, runs=runs) * 1e3
        row.device = torch.cuda.get_device_name(device) if device.type == 'cuda' else f'cpu x{torch.get_num_threads()}'
        if device.type == 'cuda':
            row.cuda_peak_memory = measure_cuda_peak_memory(net, shape, device)
    return row


def measure_table(jobs: list[tuple[str, int]], *, latency_device: str | None = None, warmup: int = 3, runs: int = 10,
                  report: Callable[[str], None] = print, convention: Convention = 'srkit') -> list[ComplexityRow]:
    """``measure_complexity`` of each (arch, scale), reporting one line as each is done, so a long table shows
    progress; with latency (real forwards, the slow part) the line also estimates the time left."""
    rows: list[ComplexityRow] = []
    start = time.perf_counter()
    for done, (arch, scale) in enumerate(jobs, 1):
        row = measure_complexity(arch, scale, latency_device=latency_device, warmup=warmup, runs=runs,
                                 convention=convention)
        rows.append(row)
        line = (f'[{done}/{len(jobs)}] {arch} x{scale}: {row.params / 1e3:.1f} K params, '
                f'{row.macs / 1e9:.2f} G Multi-Adds')
        if row.latency_ms is not None:
            left = (time.perf_counter() - start) / done * (len(jobs) - done)
            line += f', latency {row.latency_ms:.1f} ms on {row.device} (about {left:.0f} s left)'
        report(line)
    return rows


def _mb(value: int | None) -> str:
    return '-' if value is None else f'{value / 2 ** 20:.1f}'


def table_markdown(rows: list[ComplexityRow]) -> str:
    """A Markdown table for a paper or the docs; the CUDA column appears only when it was measured."""
    with_cuda = any(r.cuda_peak_memory is not None for r in rows)
    header = ['Arch', 'Scale', 'Input', 'Params (K)', 'Multi-Adds (G)', 'Activations (M)', 'Peak mem, traced (MB)']
    header += ['Peak mem, CUDA (MB)'] if with_cuda else []
    header += ['Latency (ms)', 'Device']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for r in rows:
        cells = [r.arch, f'x{r.scale}', f'{r.input_w}x{r.input_h}', f'{r.params / 1e3:.1f}', f'{r.macs / 1e9:.2f}',
                 f'{r.activations / 1e6:.1f}', _mb(r.peak_memory)]
        cells += [_mb(r.cuda_peak_memory)] if with_cuda else []
        cells += ['-' if r.latency_ms is None else f'{r.latency_ms:.1f}', r.device or '-']
        lines.append('| ' + ' | '.join(cells) + ' |')
    note = ("\nOutput 1280x720 (Multi-Adds convention of srkit's docs/REFERENCE.md). Traced peak memory: largest "
            'total of live tensors (parameters, input, intermediates) in one no-grad fp32 forward. Latency: median '
            'of timed forwards after warm-up.\n')
    return '\n'.join(lines) + '\n' + note


def table_csv(rows: list[ComplexityRow]) -> str:
    """Raw integers (no unit scaling), so the CSV feeds plots and the model zoo without rounding."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[f.name for f in fields(ComplexityRow)])
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ('' if v is None else v) for k, v in asdict(row).items()})
    return buffer.getvalue()


def write_table(rows: list[ComplexityRow], path: str | Path) -> None:
    """``.md`` gets Markdown, ``.csv`` CSV; anything else is refused rather than guessed."""
    path = Path(path)
    writers = {'.md': table_markdown, '.csv': table_csv}
    if path.suffix.lower() not in writers:
        raise OptionError(f'--out {path}: the table is written as .md or .csv, not {path.suffix or "no suffix"}.')
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(writers[path.suffix.lower()](rows), encoding='utf-8')


def read_table_csv(path: str | Path) -> list[ComplexityRow]:
    """Rows of a CSV written by ``write_table``."""
    types = {f.name: f.type for f in fields(ComplexityRow)}
    rows = []
    with open(path, newline='', encoding='utf-8') as handle:
        for record in csv.DictReader(handle):
            values: dict[str, Any] = {}
            for key, text in record.items():
                kind = types.get(key, 'str')
                if text == '' and 'None' in kind:
                    values[key] = None
                elif kind.startswith('int'):
                    values[key] = int(text)
                elif kind.startswith('float'):
                    values[key] = float(text)
                else:
                    values[key] = text
            rows.append(ComplexityRow(**values))
    return rows
