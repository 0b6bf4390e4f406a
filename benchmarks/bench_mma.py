"""MMA_light against EIMN_A and IMDN, the lightweight networks srkit carries: size, cost and CPU speed.

    python benchmarks/bench_mma.py --scales 4 --repeats 3 --warmup 1 --threads 1

For each scale and network, all in one run: trainable parameters; Multi-Adds for a 1280x720 output
(srkit/tools/complexity.py, the papers' convention: matrix products only); the selective scan's own
multiply-adds, which that convention does not see (element-wise work: 2 per token, channel and state per
direction: the state update and its read-out); latency of one no-grad forward of the input for a 1280x720
output (640x360, 427x240, 320x180 at x2, x3, x4); one training step (a batch of --batch LR patches of
--patch pixels, L1 + Adam).
Times are medians of --repeats runs after --warmup runs; the networks take turns within each repeat, so a
change in machine load hits all of them alike, and each is also given as a ratio to IMDN of the same run.
Random (seeded) weights: speed does not depend on the values.

MMA_light's no-grad forward is also timed with the scan it ran before selective_scan_inference (the chunked
scan, which training still uses), in the same turns, on the same weights and input: the row
"MMA_light (chunked scan)", and a printed line with the old / new latency ratio and the largest difference
between the two outputs. --no-old-scan leaves it out (it takes about 3x MMA_light's forward).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import statistics
import time
from collections.abc import Callable
from unittest import mock

import torch
from torch import nn

from srkit.archs import create, mma_arch
from srkit.archs.mma_arch import MMA, BiMamba
from srkit.tools.complexity import count_macs, count_params

NETWORKS = ('MMA_light', 'EIMN_A', 'IMDN')
OLD_SCAN = 'MMA_light (chunked scan)'
OUTPUT_HW = (720, 1280)
# the module, not the function srkit.ops re-exports under the same name
scan_module = importlib.import_module('srkit.ops.selective_scan')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--networks', nargs='+', default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument('--scales', nargs='+', type=int, default=[4], choices=[2, 3, 4])
    parser.add_argument('--repeats', type=int, default=3, help='timed runs per network and workload (median)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed runs per network and workload first')
    parser.add_argument('--threads', type=int, default=torch.get_num_threads(), help='torch intra-op threads')
    parser.add_argument('--batch', type=int, default=16, help='training batch')
    parser.add_argument('--patch', type=int, default=48, help='training LR patch size')
    parser.add_argument('--no-train', action='store_true', help='skip the training-step timing')
    parser.add_argument('--no-old-scan', action='store_true',
                        help="skip MMA_light's forward with the chunked scan it used before (the slow one)")
    return parser.parse_args()


def build(name: str, scale: int) -> nn.Module:
    torch.manual_seed(0)
    return create(name, scale)


def multi_adds(net: nn.Module, input_hw: tuple[int, int]) -> int:
    """count_macs with the scan in one chunk: the count runs on the meta device, where a chunk costs no
    memory, and the scan adds no matrix products, so the figure is the same while the ~1k Python-level
    chunk steps per scan (minutes under the counting dispatch mode at 640x360) become one."""
    with mock.patch.multiple(scan_module, CHUNK_BYTES=2**62, MAX_CHUNK=2**30):
        return count_macs(net, (3, *input_hw))


def scan_multi_adds(net: nn.Module, input_hw: tuple[int, int]) -> int:
    """Multiply-adds of the selective scans themselves: per token, inner channel and state, one for the
    state update and one for its read-out, in each of the two directions of every Mamba layer."""
    if not isinstance(net, MMA):
        return 0
    tokens = input_hw[0] * input_hw[1]
    layers = [m for m in net.modules() if isinstance(m, BiMamba)]
    return sum(2 * 2 * layer.d_inner * layer.d_state * tokens for layer in layers)


class Workload:
    """One network's inference or training step; ``run()`` does it once, with MMA's scan replaced by
    ``scan`` when given."""

    def __init__(self, net: nn.Module, kind: str, scale: int, args: argparse.Namespace, lr_hw: tuple[int, int],
                 scan: Callable[..., torch.Tensor] | None = None) -> None:
        gen = torch.Generator().manual_seed(0)
        self.net, self.kind, self.scan = net, kind, scan
        self.output: torch.Tensor | None = None
        if kind == 'infer':
            self.net.eval()
            self.lq = torch.rand(1, 3, *lr_hw, generator=gen)
        else:
            self.net.train()
            self.lq = torch.rand(args.batch, 3, args.patch, args.patch, generator=gen)
            self.gt = torch.rand(args.batch, 3, args.patch * scale, args.patch * scale, generator=gen)
            self.optimizer = torch.optim.Adam(self.net.parameters(), lr=1e-4)

    def run(self) -> None:
        if self.kind == 'infer':
            scan = mock.patch.object(mma_arch, 'selective_scan', self.scan) if self.scan else contextlib.nullcontext()
            with torch.no_grad(), scan:
                self.output = self.net(self.lq)
            return
        self.optimizer.zero_grad(set_to_none=True)
        nn.functional.l1_loss(self.net(self.lq), self.gt).backward()
        self.optimizer.step()


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_times(workloads: dict[str, Workload], args: argparse.Namespace) -> dict[str, float]:
    """name -> median seconds, the workloads taking turns within each warm-up and timed round."""
    for _ in range(args.warmup):
        for workload in workloads.values():
            workload.run()
    times: dict[str, list[float]] = {name: [] for name in workloads}
    for _ in range(args.repeats):
        for name, workload in workloads.items():
            times[name].append(timed(workload.run))
            print(f'  {workload.kind} {name}: {times[name][-1]:.3f} s', flush=True)
    return {name: statistics.median(values) for name, values in times.items()}


def ratio(value: float | None, base: float | None) -> str:
    return f'{value / base:.2f}' if value and base else '-'


def report_scale(scale: int, args: argparse.Namespace) -> list[str]:
    lr_hw = (-(-OUTPUT_HW[0] // scale), -(-OUTPUT_HW[1] // scale))  # rounded up: 427x240 at x3 (REFERENCE.md)
    nets = {name: build(name, scale) for name in args.networks}
    sizes = {name: (count_params(net), multi_adds(net, lr_hw), scan_multi_adds(net, lr_hw))
             for name, net in nets.items()}
    inference = {n: Workload(net, 'infer', scale, args, lr_hw) for n, net in nets.items()}
    if 'MMA_light' in nets and not args.no_old_scan:
        inference[OLD_SCAN] = Workload(nets['MMA_light'], 'infer', scale, args, lr_hw,
                                       scan=scan_module.selective_scan_chunked)
        sizes[OLD_SCAN] = sizes['MMA_light']
    latency = median_times(inference, args)
    if OLD_SCAN in inference:
        old, new = inference[OLD_SCAN].output, inference['MMA_light'].output
        assert old is not None and new is not None
        print(f'x{scale}: MMA_light forward, chunked scan / inference scan: '
              f'{latency[OLD_SCAN] / latency["MMA_light"]:.2f}x ({latency[OLD_SCAN]:.3f} s / '
              f'{latency["MMA_light"]:.3f} s); largest output difference {(old - new).abs().max().item():.2e}',
              flush=True)
    train: dict[str, float | None] = dict.fromkeys(latency)
    if not args.no_train:
        train.update(median_times({n: Workload(net, 'train', scale, args, lr_hw) for n, net in nets.items()}, args))
    base = 'IMDN' if 'IMDN' in nets else None
    rows = []
    for name in latency:
        params, macs, scan = sizes[name]
        ref_params, ref_macs = (sizes[base][0], sizes[base][1]) if base else (None, None)
        ref_latency, ref_train = (latency[base], train[base]) if base else (None, None)
        step = f'{train[name]:.3f}' if train[name] is not None else '-'
        rows.append(f'| {name} | x{scale} | {params / 1e6:.3f} M | {ratio(params, ref_params)} | {macs / 1e9:.1f} G | '
                    f'{ratio(macs, ref_macs)} | {scan / 1e9:.1f} G | {lr_hw[1]}x{lr_hw[0]} | {latency[name]:.3f} | '
                    f'{ratio(latency[name], ref_latency)} | {step} | {ratio(train[name], ref_train)} |')
    return rows


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for scale in args.scales:
        print(f'x{scale}: timing...', flush=True)
        rows += report_scale(scale, args)
    print(f'\ntorch {torch.__version__}, {args.threads} threads, median of {args.repeats} after {args.warmup} '
          f'warm-up; train step: batch {args.batch} of {args.patch}x{args.patch} LR patches, L1 + Adam')
    print('| network | scale | params | / IMDN | Multi-Adds (1280x720 out) | / IMDN | scan multiply-adds (not in '
          'Multi-Adds) | input | latency s | / IMDN | train step s | / IMDN |')
    print('|---|---|---|---|---|---|---|---|---|---|---|---|')
    print('\n'.join(rows))


if __name__ == '__main__':
    main()
