"""Throughput and peak memory of srkit's chunked and inference selective scans vs the sequential recurrence (CPU).

Each measurement runs in a fresh process. Peak memory is the growth of the process's resident set over
the first call: Linux's high-water mark (VmHWM) is reset through /proc/self/clear_refs just before the
call and read right after, so it counts every CPU tensor the call allocated (tracemalloc does not see
torch's allocations). glibc is told to give every block over 64 KiB straight back to the system
(MALLOC_MMAP_THRESHOLD_), otherwise freed chunk intermediates stay resident and inflate the figure.
Time, in another process with the default allocator, is the best of --repeats calls after a warm-up.

    python benchmarks/bench_selective_scan.py --lengths 4096 65536

"inference" (selective_scan_inference, forward only: what selective_scan runs on a CPU without autograd) is
timed in forward mode, with --lanes and --steps as its group; each length also prints chunked / inference.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
from pathlib import Path

VARIANTS = ('sequential', 'chunked', 'one-chunk', 'inference')


def _status_kb(field: str) -> int:
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(field + ':'):
            return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status (Linux only)')


def _measure(variant: str, length: int, train: bool, args: argparse.Namespace, memory: bool) -> dict:
    """Runs in a child process: the first call's peak memory, or the best time over the repeats."""
    import torch

    from srkit.ops import (
        auto_chunk_size,
        selective_scan_chunked,
        selective_scan_reference,
    )
    from srkit.ops.selective_scan import selective_scan_inference

    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    b, d, n = args.batch, args.d_inner, args.d_state
    u, delta, z = (torch.randn(b, d, length, generator=g) for _ in range(3))
    B, C = (torch.randn(b, n, length, generator=g) for _ in range(2))
    A, D, bias = -torch.rand(d, n, generator=g) * n - 0.5, torch.ones(d), torch.full((d,), -3.0)
    inputs = [t.requires_grad_(train) for t in (u, delta, A, B, C, D, z, bias)]
    chunk = {'chunked': args.chunk_size or auto_chunk_size(b, d, n), 'one-chunk': length}.get(variant)

    def call() -> None:
        u, delta, A, B, C, D, z, bias = inputs
        kwargs = {'D': D, 'z': z, 'delta_bias': bias, 'delta_softplus': True}
        with torch.set_grad_enabled(train):
            if variant == 'sequential':
                out = selective_scan_reference(u, delta, A, B, C, **kwargs)
            elif variant == 'inference':
                out = selective_scan_inference(u, delta, A, B, C, lanes=args.lanes, steps=args.steps, **kwargs)
            else:
                out = selective_scan_chunked(u, delta, A, B, C, chunk_size=chunk, **kwargs)
            if train:
                out.sum().backward()

    if memory:
        Path('/proc/self/clear_refs').write_text('5')  # reset the high-water mark
        before = _status_kb('VmRSS')
        call()
        return {'peak_mb': (_status_kb('VmHWM') - before) / 1024, 'chunk': chunk}
    call()  # warm-up
    best = min(_timed(call) for _ in range(args.repeats))
    return {'seconds': best[0], 'cpu_seconds': best[1]}


def _timed(call) -> tuple[float, float]:
    """(wall, CPU) seconds; CPU time is steadier on a shared machine when --threads is 1."""
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - wall, time.process_time() - cpu


def _run_isolated(variant: str, length: int, train: bool, args: argparse.Namespace) -> dict:
    """Memory and time in separate fresh processes: the allocator setting that makes RSS honest
    (every block over 64 KiB mmapped and returned on free) also makes every allocation a system call."""
    result = {}
    for memory in (True, False):
        if memory:
            os.environ['MALLOC_MMAP_THRESHOLD_'] = '65536'  # read by the spawned child's glibc at start
        with mp.get_context('spawn').Pool(1) as pool:
            result.update(pool.apply(_measure, (variant, length, train, args, memory)))
        os.environ.pop('MALLOC_MMAP_THRESHOLD_', None)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--lengths', type=int, nargs='+', default=[4096, 65536])
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--d-inner', type=int, default=96)
    parser.add_argument('--d-state', type=int, default=16)
    parser.add_argument('--chunk-size', type=int, default=None, help='default: srkit.ops.auto_chunk_size')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--lanes', type=int, default=16, help="selective_scan_inference's lanes per group")
    parser.add_argument('--steps', type=int, default=16, help="selective_scan_inference's tokens per lane")
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--modes', nargs='+', choices=('forward', 'train'), default=['forward', 'train'])
    parser.add_argument('--one-chunk-max', type=int, default=4096,
                        help='also time one chunk spanning the whole sequence up to this length (memory grows with L)')
    parser.add_argument('--sequential-train-max', type=int, default=4096,
                        help='skip the sequential backward above this length (65,536 tokens take over 10 minutes)')
    args = parser.parse_args()

    print(f'batch {args.batch}, d_inner {args.d_inner}, d_state {args.d_state}, {args.threads} thread(s), '
          f'best of {args.repeats}; train = forward + backward; Mtok/s from CPU time')
    print(f'{"tokens":>7} {"mode":>7} {"variant":>10} {"chunk":>6} {"wall s":>8} {"CPU s":>8} {"Mtok/s":>7} '
          f'{"peak MB":>8}')
    for length in args.lengths:
        for mode in args.modes:
            results = {}
            for variant in VARIANTS:
                if ((variant == 'one-chunk' and length > args.one_chunk_max)
                        or (variant == 'inference' and mode == 'train')
                        or (variant == 'sequential' and mode == 'train' and length > args.sequential_train_max)):
                    continue
                r = results[variant] = _run_isolated(variant, length, mode == 'train', args)
                print(f'{length:>7} {mode:>7} {variant:>10} {r["chunk"] or "-":>6} {r["seconds"]:>8.3f} '
                      f'{r["cpu_seconds"]:>8.3f} {length / r["cpu_seconds"] / 1e6:>7.3f} {r["peak_mb"]:>8.1f}',
                      flush=True)
            chunked = results['chunked']
            if 'inference' in results:
                print(f'{"":>7} {mode:>7} chunked / inference: CPU time x'
                      f'{chunked["cpu_seconds"] / results["inference"]["cpu_seconds"]:.2f}')
            if 'sequential' not in results:
                continue
            seq = results['sequential']
            speed = seq['cpu_seconds'] / chunked['cpu_seconds']
            print(f'{"":>7} {mode:>7} sequential / chunked: CPU time x{speed:.2f}, '
                  f'peak memory x{seq["peak_mb"] / max(chunked["peak_mb"], 0.1):.2f}')


if __name__ == '__main__':
    main()
