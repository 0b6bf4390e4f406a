"""EIMN-A x4 and IMDN x4 on this machine: eager vs channels_last vs torch.compile vs bf16 autocast.

    python benchmarks/bench_eimn_imdn.py --repeats 5 --threads 2

Two workloads per network: inference on one 320x180 LR image (a 1280x720 output, the papers' complexity
convention) and one training step (a batch of 16 LR patches of 48x48, L1 + Adam). Each path is timed as
the median of --repeats runs after --warmup runs; the paths take turns within each repeat, so a change in
machine load hits all of them alike, and each is reported as a ratio to eager from the same run. "max
|diff|" is the largest absolute difference of the output from eager's (inference: the SR image; training:
the forward output of the step, same weights and batch). torch.compile's first call (compilation) is timed
apart; a path that fails is reported with its error instead of a number. Official weights are used when
../shared/weights has them (the differences then reflect real activations), else a seeded random init.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from srkit.archs import create
from srkit.archs.weights import load_pretrained
from srkit.models.sr_model import compile_for_training

NETWORKS = {  # name: (architecture, scale, official file under weights/)
    'EIMN_A_x4': ('EIMN_A', 4, 'EIMN/EIMN_A_x4.pth'),
    'IMDN_x4': ('IMDN', 4, 'IMDN/IMDN_x4.pth'),
}
PATHS = ('eager', 'channels_last', 'compile', 'bf16')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--networks', nargs='+', default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument('--paths', nargs='+', default=list(PATHS), choices=PATHS)
    parser.add_argument('--repeats', type=int, default=5, help='timed runs per path (median reported)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed runs per path first (after compilation)')
    parser.add_argument('--threads', type=int, default=torch.get_num_threads(), help='torch intra-op threads')
    parser.add_argument('--lr-size', type=int, nargs=2, default=(180, 320), metavar=('H', 'W'),
                        help='inference input size')
    parser.add_argument('--batch', type=int, default=16, help='training batch')
    parser.add_argument('--patch', type=int, default=48, help='training LR patch size')
    parser.add_argument('--weights-root', type=Path, default=Path(__file__).resolve().parents[2] / 'shared' / 'weights')
    return parser.parse_args()


def build(name: str, weights_root: Path) -> tuple[nn.Module, str]:
    arch, scale, file = NETWORKS[name]
    torch.manual_seed(0)
    net = create(arch, scale)
    if (weights_root / file).is_file():
        load_pretrained(net, weights_root / file, arch_type=arch)
        return net, 'official'
    return net, 'random'


Layout = Callable[[torch.Tensor], torch.Tensor]


def prepare(net: nn.Module, path: str) -> tuple[nn.Module, Layout, contextlib.AbstractContextManager]:
    """(the network as this path holds it, how an input is laid out, the context its forward runs in)."""
    if path == 'channels_last':
        return (net.to(memory_format=torch.channels_last),
                lambda x: x.contiguous(memory_format=torch.channels_last), contextlib.nullcontext())
    if path == 'compile':  # as train.compile does it: static shapes (each workload has one)
        return compile_for_training(net), lambda x: x, contextlib.nullcontext()
    if path == 'bf16':
        return net, lambda x: x, torch.autocast('cpu', dtype=torch.bfloat16)
    return net, lambda x: x, contextlib.nullcontext()


class Runner:
    """One path of one workload: ``step()`` runs it once and returns the output to compare."""

    def __init__(self, base: nn.Module, path: str, workload: str, data: tuple[torch.Tensor, torch.Tensor]) -> None:
        self.workload = workload
        self.net, layout, self.context = prepare(copy.deepcopy(base), path)
        self.lq, self.gt = layout(data[0]), layout(data[1])
        if workload == 'train':
            self.net.train()
            self.optimizer = torch.optim.Adam(self.net.parameters(), lr=1e-4)
        else:
            self.net.eval()

    def step(self) -> torch.Tensor:
        if self.workload == 'infer':
            with torch.inference_mode(), self.context:
                return self.net(self.lq).float()
        self.optimizer.zero_grad(set_to_none=True)
        with self.context:
            out = self.net(self.lq)
            loss = nn.functional.l1_loss(out.float(), self.gt)
        loss.backward()
        self.optimizer.step()
        return out.detach().float()


def timed(fn: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def bench(base: nn.Module, workload: str, data: tuple[torch.Tensor, torch.Tensor], args: argparse.Namespace) -> dict:
    """path -> {'median': s, 'diff': max |out - eager|, 'first': s} or {'error': message}."""
    results, runners, reference = {}, {}, None
    for path in ['eager'] + [p for p in args.paths if p != 'eager']:
        try:
            runner = Runner(base, path, workload, data)
            first, out = timed(runner.step)  # compiles on the compile path
        except Exception as exc:  # noqa: BLE001 - a failing path is a result to report, not a crash
            results[path] = {'error': f'{type(exc).__name__}: {str(exc).splitlines()[0][:160]}'}
            continue
        reference = out if path == 'eager' else reference
        results[path] = {'first': first, 'diff': (out - reference).abs().max().item(), 'times': []}
        runners[path] = runner
    for _ in range(args.warmup):
        for runner in runners.values():
            runner.step()
    for _ in range(args.repeats):
        for path, runner in runners.items():
            results[path]['times'].append(timed(runner.step)[0])
    for path in runners:
        results[path]['median'] = statistics.median(results[path].pop('times'))
    return results


def report(name: str, workload: str, results: dict) -> None:
    eager = results['eager']['median']
    for path, r in results.items():
        if 'error' in r:
            print(f'| {name} | {workload} | {path} | failed | | | {r["error"]} |')
            continue
        note = f'first call {r["first"]:.1f} s (compilation)' if path == 'compile' else ''
        print(f'| {name} | {workload} | {path} | {r["median"] * 1000:.0f} | {r["median"] / eager:.2f} | '
              f'{r["diff"]:.2e} | {note} |', flush=True)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    print(f'torch {torch.__version__}, {args.threads} threads, median of {args.repeats} after {args.warmup} warm-up')
    print('| network | workload | path | median ms | ratio to eager | max \\|diff\\| vs eager | note |')
    print('|---|---|---|---|---|---|---|')
    gen = torch.Generator().manual_seed(0)
    for name in args.networks:
        base, source = build(name, args.weights_root)
        scale = 4
        h, w = args.lr_size
        infer = (torch.rand(1, 3, h, w, generator=gen), torch.zeros(1, 3, h * scale, w * scale))  # no target used
        train = (torch.rand(args.batch, 3, args.patch, args.patch, generator=gen),
                 torch.rand(args.batch, 3, args.patch * scale, args.patch * scale, generator=gen))
        print(f'| {name} ({source} weights) | | | | | | |')
        report(name, f'infer 1x3x{h}x{w}', bench(base, 'infer', infer, args))
        report(name, f'train step {args.batch}x3x{args.patch}x{args.patch}', bench(base, 'train', train, args))


if __name__ == '__main__':
    main()
