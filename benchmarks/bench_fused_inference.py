"""Eager float32 vs the architecture's inference form (ArchSpec.inference_form, issue 18) on the CPU.

    python benchmarks/bench_fused_inference.py --repeats 5 --threads 1
    python benchmarks/bench_fused_inference.py --networks ETDS_M7C48_x4 --library-tools

One 320x180 LR input, x4 (a 1280x720 output). The forms of one network take turns within each repeat
(one process, one thread count), so a change of machine load hits them alike; each is reported as the
median of --repeats runs after --warmup runs, in wall time and in this process's CPU time (steadier on a
shared machine: time spent descheduled is not counted), and as ratios to eager. "max |diff|" is the largest
absolute difference from eager's output. Official weights are used when --weights-root has them, else a
seeded random initialisation with BatchNorm statistics drawn away from their defaults (latency does not
depend on the values). The input is a crop of a Set14 photo when --image exists (the differences then
reflect real activations; official EIMN weights amplify uniform noise until float32 rounding alone
moves the output by 4e-5), else uniform noise.

--library-tools adds torch's own inference optimisers for comparison: torch.jit.freeze +
torch.jit.optimize_for_inference of a trace, and torch.fx.experimental.optimization.optimize_for_inference;
a tool that fails on a network is reported with its error.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from srkit.archs import arch_spec, create
from srkit.archs.weights import load_pretrained
from srkit.data.image_io import img_to_tensor, read_image

NETWORKS = {  # name: (architecture, scale, official file under weights/)
    'EIMN_A_x4': ('EIMN_A', 4, 'EIMN/EIMN_A_x4.pth'),
    'IMDN_x4': ('IMDN', 4, 'IMDN/IMDN_x4.pth'),
    'ETDS_M7C48_x4': ('ETDSForInference_M7C48', 4, 'ETDS/ETDS_M7C48_x4.pth'),
}
SHARED = Path(__file__).resolve().parents[2] / 'shared'
Forward = Callable[[torch.Tensor], torch.Tensor]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--networks', nargs='+', default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument('--repeats', type=int, default=5, help='timed runs per form (median reported)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed runs per form first')
    parser.add_argument('--threads', type=int, default=1, help='torch intra-op threads')
    parser.add_argument('--lr-size', type=int, nargs=2, default=(180, 320), metavar=('H', 'W'))
    parser.add_argument('--weights-root', type=Path, default=SHARED / 'weights')
    parser.add_argument('--image', type=Path, default=SHARED / 'data' / 'Set14' / 'GTmod12' / 'monarch.png',
                        help='photo the input is cropped from (uniform noise when absent)')
    parser.add_argument('--library-tools', action='store_true', help='also time jit.freeze and fx optimizers')
    return parser.parse_args()


def build(name: str, weights_root: Path) -> tuple[nn.Module, str]:
    arch, scale, file = NETWORKS[name]
    torch.manual_seed(0)
    net = create(arch, scale).eval()
    if (weights_root / file).is_file():
        load_pretrained(net, weights_root / file, arch_type=arch)
        return net, 'official'
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.rand(module.num_features, generator=generator) - 0.5)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return net, 'random'


def make_input(args: argparse.Namespace) -> tuple[torch.Tensor, str]:
    h, w = args.lr_size
    if args.image.is_file():
        image = img_to_tensor(read_image(args.image))[None]
        if image.shape[-2] >= h and image.shape[-1] >= w:
            return image[..., :h, :w].contiguous(), f'a crop of {args.image.name}'
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)), 'uniform noise'


def library_forms(net: nn.Module, x: torch.Tensor) -> dict[str, Forward | str]:
    """torch's own optimisers, or the error each raised."""
    forms: dict[str, Forward | str] = {}
    try:
        traced = torch.jit.trace(copy.deepcopy(net), x[..., :32, :32])
        forms['jit.freeze + optimize_for_inference'] = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
    except Exception as exc:  # noqa: BLE001 - a failing tool is a result to report
        forms['jit.freeze + optimize_for_inference'] = f'{type(exc).__name__}: {str(exc).splitlines()[0][:120]}'
    try:
        from torch.fx.experimental.optimization import optimize_for_inference
        forms['fx optimize_for_inference'] = optimize_for_inference(copy.deepcopy(net))
    except Exception as exc:  # noqa: BLE001
        forms['fx optimize_for_inference'] = f'{type(exc).__name__}: {str(exc).splitlines()[0][:120]}'
    return forms


def bench(forms: dict[str, Forward], x: torch.Tensor, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """form -> wall and CPU medians (s) and max |diff| from the first form's output."""
    with torch.inference_mode():
        outputs = {name: run(x) for name, run in forms.items()}
        reference = outputs[next(iter(forms))]
        for _ in range(args.warmup):
            for run in forms.values():
                run(x)
        wall: dict[str, list[float]] = {name: [] for name in forms}
        cpu: dict[str, list[float]] = {name: [] for name in forms}
        for _ in range(args.repeats):
            for name, run in forms.items():
                start_wall, start_cpu = time.perf_counter(), time.process_time()
                run(x)
                cpu[name].append(time.process_time() - start_cpu)
                wall[name].append(time.perf_counter() - start_wall)
    return {name: {'wall': statistics.median(wall[name]), 'cpu': statistics.median(cpu[name]),
                   'diff': (outputs[name] - reference).abs().max().item()} for name in forms}


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    x, source = make_input(args)
    print(f'torch {torch.__version__}, {args.threads} thread(s), input 1x3x{x.shape[-2]}x{x.shape[-1]} '
          f'({source}), median of {args.repeats} after {args.warmup} warm-up, forms interleaved')
    print('| network | form | wall ms | CPU ms | speed-up (wall) | speed-up (CPU) | max \\|diff\\| vs eager |')
    print('|---|---|---|---|---|---|---|')
    for name in args.networks:
        net, weights = build(name, args.weights_root)
        form_of = arch_spec(NETWORKS[name][0]).inference_form
        forms: dict[str, Forward] = {'eager': net}
        if form_of is not None:
            forms['inference_form'] = form_of(net)
        failed = {}
        if args.library_tools:
            for tool, result in library_forms(net, x).items():
                if isinstance(result, str):
                    failed[tool] = result
                else:
                    forms[tool] = result
        results = bench(forms, x, args)
        eager = results['eager']
        for form, r in results.items():
            print(f'| {name} ({weights}) | {form} | {r["wall"] * 1000:.0f} | {r["cpu"] * 1000:.0f} | '
                  f'{eager["wall"] / r["wall"]:.2f}x | {eager["cpu"] / r["cpu"]:.2f}x | {r["diff"]:.1e} |', flush=True)
        for tool, error in failed.items():
            print(f'| {name} ({weights}) | {tool} | failed | | | | {error} |', flush=True)


if __name__ == '__main__':
    main()
