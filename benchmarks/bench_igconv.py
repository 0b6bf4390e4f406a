"""IGConv figures: stored parameters of one multi-scale model vs three single-scale models of the same host,
and inference latency of the instantiated IGConv against the host's own sub-pixel tail at each scale.

Parameters: ``IGConvSR(host, igconv | igconv_plus)`` with the paper's implicit settings (implicit_dim 256,
4 latent layers) against ``host(x2) + host(x3) + host(x4)``. Latency: median of ``--repeats`` timed runs
(after warm-up) on a random LR input, of (a) the tail alone on the host's feature width and (b) the whole
network, ``IGConvSR.instantiate(s)`` against the host built for x``s``. The instantiated IGConv+ keeps
IGSample's grid sampling, so its whole-network time is reported separately.

    python benchmarks/bench_igconv.py --size 64 --repeats 20 --threads 2 [--device cuda]
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from srkit.archs import create
from srkit.archs.igconv_arch import IGConvSR, subpixel_tail

HOSTS: dict[str, dict] = {  # label -> encoder options
    'EDSR-baseline': {'type': 'EDSR_baseline'},
    'EDSR (paper, 256x32)': {'type': 'EDSR', 'num_feat': 256, 'num_block': 32, 'res_scale': 0.1, 'img_range': 1.0},
    'EIMN_A': {'type': 'EIMN_A'},
    'IMDN': {'type': 'IMDN'},
}
SCALES = (2, 3, 4)


def params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.state_dict().values())


def host(encoder: dict, scale: int) -> nn.Module:
    args = {k: v for k, v in encoder.items() if k != 'type'}
    return create(encoder['type'], scale, **args)


def median_ms(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, repeats: int, device: torch.device) -> float:
    def sync() -> None:
        if device.type == 'cuda':
            torch.cuda.synchronize()

    with torch.inference_mode():
        for _ in range(3):
            fn(x)
        sync()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn(x)
            sync()
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def parameter_table() -> list[str]:
    rows = ['| host | 3 single-scale models | IGConv | ratio | IGConv+ | ratio |', '|---|---|---|---|---|---|']
    for label, encoder in HOSTS.items():
        three = sum(params(host(encoder, s)) for s in SCALES)
        ig, plus = (params(IGConvSR(encoder, up)) for up in ('igconv', 'igconv_plus'))
        rows.append(f'| {label} | {three / 1e6:.3f} M | {ig / 1e6:.3f} M | {ig / three:.3f} | {plus / 1e6:.3f} M | '
                    f'{plus / three:.3f} |')
    return rows


def latency_table(size: int, repeats: int, device: torch.device, labels: list[str]) -> list[str]:
    rows = [('| host | scale | host tail ms | IGConv tail ms | ratio | host net ms | IGConv net ms | ratio | '
             'IGConv+ net ms | ratio |'), '|---|---|---|---|---|---|---|---|---|---|']
    x = torch.rand(1, 3, size, size, device=device)
    for label in labels:
        encoder = HOSTS[label]
        nets = {up: IGConvSR(encoder, up).to(device).eval() for up in ('igconv', 'igconv_plus')}
        for s in SCALES:
            plain = host(encoder, s).to(device).eval()
            baked = nets['igconv'].instantiate(s)
            baked_plus = nets['igconv_plus'].instantiate(s)
            names, width = subpixel_tail(encoder['type'], plain)
            tail = nn.Sequential(*(plain.get_submodule(n) for n in names))
            feat = torch.rand(1, width, size, size, device=device)
            new_tail = baked.encoder.get_submodule(names[0]).upsampler
            t_host, t_ig = (median_ms(m, feat, repeats, device) for m in (tail, new_tail))
            n_host, n_ig, n_plus = (median_ms(m, x, repeats, device) for m in (plain, baked, baked_plus))
            rows.append(f'| {label} | x{s} | {t_host:.2f} | {t_ig:.2f} | {t_ig / t_host:.2f} | {n_host:.1f} | '
                        f'{n_ig:.1f} | {n_ig / n_host:.2f} | {n_plus:.1f} | {n_plus / n_host:.2f} |')
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', type=int, default=64, help='LR input side')
    parser.add_argument('--repeats', type=int, default=20)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--hosts', nargs='*', default=['EDSR-baseline', 'EIMN_A', 'IMDN'], choices=list(HOSTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    print('\n'.join(parameter_table()))
    print()
    print(f'Latency, LR {args.size}x{args.size}, {device}, median of {args.repeats}:')
    print('\n'.join(latency_table(args.size, args.repeats, device, args.hosts)))


if __name__ == '__main__':
    main()
