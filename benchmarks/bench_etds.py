"""CPU latency of ETDS in three forms: the two-stream training form, the converted plain form in
PyTorch, and the plain form exported to ONNX and run by onnxruntime.

Latency does not depend on the weight values, so the training form is a freshly initialised preset and the
plain form is its conversion (checked against it by ``convert_etds``); the ONNX file is checked against the
plain form by ``verify_onnx``. Each figure is the median of --runs timed runs after --warmup untimed ones,
the three forms taking turns, in one process with one thread count; ratios are to the training form of
the same run.

    python benchmarks/bench_etds.py --variant M6C32 --scales 2 4 --runs 10 --threads 2
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from srkit.archs import create
from srkit.archs.etds_convert import convert_etds
from srkit.tools.onnx_export import export_onnx, verify_onnx


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--variant', default='M6C32', help='ETDS preset: M4C32, M5C16, M6C32 or M7C48')
    parser.add_argument('--scales', type=int, nargs='+', default=[2, 4])
    parser.add_argument('--height', type=int, default=360, help='LR input height')
    parser.add_argument('--width', type=int, default=640, help='LR input width')
    parser.add_argument('--runs', type=int, default=10, help='timed runs per form (the median is reported)')
    parser.add_argument('--warmup', type=int, default=3, help='untimed runs before timing')
    parser.add_argument('--threads', type=int, default=torch.get_num_threads(),
                        help='intra-op threads for PyTorch and onnxruntime alike')
    return parser.parse_args()


def median_ms(forms: dict[str, Callable[[], object]], runs: int, warmup: int) -> dict[str, float]:
    """Median milliseconds of each form; the forms take turns within every run, so that a change of load on
    a shared machine hits all of them alike instead of whichever happened to be timed then."""
    for run in forms.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[float]] = {name: [] for name in forms}
    for _ in range(runs):
        for name, run in forms.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def onnx_session(plain: torch.nn.Module, shape: tuple[int, ...], folder: Path, threads: int):
    """An onnxruntime session on the exported, verified plain form (fixed input size, as deployed)."""
    import onnxruntime as ort

    path = export_onnx(plain, folder / 'etds.onnx', shape, dynamic_hw=False)
    verify_onnx(plain, path, torch.rand(shape), atol=1e-4)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])


def bench_scale(variant: str, scale: int, args: argparse.Namespace, folder: Path) -> dict[str, float]:
    training = create(f'ETDS_{variant}', scale).eval()
    plain = convert_etds(training).eval()
    shape = (1, 3, args.height, args.width)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    session = onnx_session(plain, shape, folder, args.threads)
    feed = {session.get_inputs()[0].name: x.numpy().astype(np.float32)}
    with torch.inference_mode():
        return median_ms({'training form (PyTorch)': lambda: training(x), 'plain form (PyTorch)': lambda: plain(x),
                          'plain form (onnxruntime)': lambda: session.run(None, feed)}, args.runs, args.warmup)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    print(f'ETDS {args.variant}, input {args.width}x{args.height}, {args.threads} thread(s), '
          f'median of {args.runs} runs after {args.warmup} warm-up runs, torch {torch.__version__}')
    print('| scale | form | median ms | speed-up vs training form |')
    print('|---|---|---|---|')
    with tempfile.TemporaryDirectory() as tmp:
        for scale in args.scales:
            rows = bench_scale(args.variant, scale, args, Path(tmp))
            reference = rows['training form (PyTorch)']
            for form, ms in rows.items():
                print(f'| x{scale} | {form} | {ms:.1f} | {reference / ms:.2f}x |')


if __name__ == '__main__':
    main()
