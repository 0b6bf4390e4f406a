"""The model-zoo table: test.py's results of each checkpoint plus its complexity, as Markdown.

Generated, never hand-edited, so every number in docs/MODEL_ZOO_TABLE.md comes from a results.json that
the command written at the top of the file reproduces.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from srkit.archs import arch_spec, create
from srkit.config.options import load_yaml
from srkit.core.errors import SrkitError
from srkit.engine.tester import format_metric, read_results
from srkit.tools.complexity import count_macs, count_params
from srkit.tools.complexity_table import reference_input_hw

__all__ = ['RUN_RECORD', 'ZooEntry', 'benchmark_datasets_override', 'run_official', 'collect', 'reference_link',
           'zoo_markdown']

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / 'docs/REFERENCE.md'  # the protocol and the published numbers


@dataclass
class ZooEntry:
    name: str
    arch: str
    scale: int
    weights: str
    params: int
    macs: int
    means: dict[str, dict[str, float]]  # dataset -> {'psnr': ..., 'ssim': ...}


def benchmark_datasets_override(shared: Path, scale: int, sets: list[str]) -> str:
    """A ``--force_yml datasets=...`` value: GTmod12 + LRbicx{s} of each set under ``shared/data``."""
    datasets = {f'test_{i}': {'name': name, 'type': 'PairedImageDataset',
                              'dataroot_gt': str(shared / 'data' / name / 'GTmod12'),
                              'dataroot_lq': str(shared / 'data' / name / f'LRbicx{scale}')}
                for i, name in enumerate(sets, 1)}
    return 'datasets=' + yaml.safe_dump(datasets, default_flow_style=True, width=10 ** 6).strip()


def run_official(option_files: list[Path], shared: Path, results_root: Path, sets: list[str]) -> list[Path]:
    """Run test.py on each option file whose checkpoint exists, on ``sets`` only; returns results.json paths.

    One process per file (exactly the command a user would type), results under ``results_root/<name>``.
    """
    written = []
    for option_file in option_files:
        data = load_yaml(option_file)
        weights = (data.get('path') or {}).get('pretrain_network_g')
        if not weights or not Path(weights).is_file():
            print(f'skipped {option_file}: checkpoint {weights} is absent')
            continue
        root = results_root / data['name']
        command = [sys.executable, str(REPO / 'srkit' / 'test.py'), '-opt', str(option_file), '--force_yml',
                   benchmark_datasets_override(shared, data['scale'], sets), f'path.results_root={root}',
                   'val.pbar=false']
        print('$', ' '.join(command[1:4]), '...', flush=True)
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ['no message'])[-1]
            raise SrkitError(f'test.py failed on {option_file}: {last}')
        written.append(root / 'results.json')
    return written


RUN_RECORD = 'model_zoo_run.txt'  # the ``run`` command line, kept beside its results for the table


def _network(results_json: Path, arch: str, scale: int):
    """The run's own network (from the options.yml test.py saved beside results.json), else the preset."""
    options_file = results_json.parent / 'options.yml'
    if options_file.is_file():
        network = dict(load_yaml(options_file)['network_g'])
        return create(network.pop('type'), scale, **network)
    return create(arch, scale)


def collect(results_files: list[Path]) -> list[ZooEntry]:
    """One entry per results.json, with params and Multi-Adds (1280x720 output) of its network."""
    entries = []
    for path in results_files:
        summary = read_results(Path(path))
        arch, scale, means = summary.arch, summary.scale, summary.means
        net = _network(Path(path), arch, scale)
        shape = (3, *reference_input_hw(scale, arch_spec(arch).same_size_output))
        entries.append(ZooEntry(summary.name, arch, scale, Path(summary.weights or '-').name,
                                count_params(net), count_macs(net, shape), means))
    return entries


def reference_link(out: Path | None) -> str:
    """A Markdown link to docs/REFERENCE.md that resolves from the folder ``out`` is written to (from the
    repository root when ``out`` is None)."""
    start = Path(out).resolve().parent if out is not None else REPO
    return f'[docs/REFERENCE.md]({Path(os.path.relpath(REFERENCE, start)).as_posix()})'


def zoo_markdown(entries: list[ZooEntry], sets: list[str], command: str, run_command: str | None = None,
                 out: Path | None = None) -> str:
    """One table per scale, rows by Multi-Adds; PSNR/SSIM on the Y channel as test.py computed them and
    printed as its results.md prints them. ``out``: where the table goes, for the link to docs/REFERENCE.md."""
    lines = ['# Model zoo: measured results of the official checkpoints', '',
             f'<!-- Generated by `{command}`; do not edit by hand. -->', '']
    if run_command:
        lines += [f'Results made with `{run_command}`, then tabulated with `{command}`.', '']
    lines += ['PSNR (dB) / SSIM on the Y channel, crop border = scale, LR = MATLAB-faithful bicubic of GTmod12 '
              f'(the protocol of {reference_link(out)}), computed by `srkit/test.py`. Params count trainable '
              'parameters; Multi-Adds are for a 1280x720 output (input 640x360 / 427x240 / 320x180).', '']
    for scale in sorted({e.scale for e in entries}):
        lines += [f'## x{scale}', '', '| Model | Arch | Params (K) | Multi-Adds (G) | '
                  + ' | '.join(sets) + ' | Checkpoint |', '|---|---|---|---|' + '---|' * len(sets) + '---|']
        for e in sorted((e for e in entries if e.scale == scale), key=lambda e: (e.macs, e.name)):
            scores = [f'{format_metric(e.means[s].get("psnr"))} / {format_metric(e.means[s].get("ssim"))}'
                      if s in e.means else '-' for s in sets]
            lines.append(f'| {e.name} | {e.arch} | {e.params / 1e3:.1f} | {e.macs / 1e9:.2f} | '
                         + ' | '.join(scores) + f' | {e.weights} |')
        lines.append('')
    return '\n'.join(lines)
