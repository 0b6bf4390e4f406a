"""IGConv figures: stored parameters of one multi-scale model vs three single-scale models of the same host,
and inference latency of the instantiated IGConv against the host's own sub-pixel tail at each scale.

Parameters: ``IGConvSR(host, igconv | igconv_plus)`` with the paper's implicit settings (implicit_dim 256,
4 latent layers) against ``host(x2) + host(x3) + host(x4)``; for SMFANet, the authors' own ``SMFANetIG`` /
``SMFANetIGPlus`` (IGConv's option files). Latency: median of ``--repeats`` timed runs (after warm-up) on a
random LR input, of (a) the tail alone on the host's feature width and (b) the whole network, the
instantiated network (``IGConvSR.instantiate(s)``, ``instantiate_upsamplers(net, s)`` for the authors'
classes) against the host built for x``s``. The contenders of a row are timed in turn within each repeat
(interleaved), so a change of machine load touches them alike. The instantiated IGConv+ keeps IGSample's
grid sampling, so its whole-network time is reported separately.

    python benchmarks/bench_igconv.py --size 64 320x180 --repeats 20 --threads 1 --hosts SMFANet [--device cuda]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from srkit.archs import create
from srkit.archs.igconv_arch import IGConvSR, instantiate_upsamplers, subpixel_tail

HOSTS: dict[str, dict] = {  # label -> encoder options
    'EDSR-baseline': {'type': 'EDSR_baseline'},
    'EDSR (paper, 256x32)': {'type': 'EDSR', 'num_feat': 256, 'num_block': 32, 'res_scale': 0.1, 'img_range': 1.0},
    'EIMN_A': {'type': 'EIMN_A'},
    'IMDN': {'type': 'IMDN'},
    'SMFANet': {'type': 'SMFANet'},
}
AUTHORS_IG = {'SMFANet': {'igconv': 'SMFANetIG', 'igconv_plus': 'SMFANetIGPlus'}}  # host -> official IGConv classes
Upsampler = Literal['igconv', 'igconv_plus']
UPSAMPLERS: tuple[Upsampler, ...] = ('igconv', 'igconv_plus')
SCALES = (2, 3, 4)
Forward = Callable[[torch.Tensor], torch.Tensor]


def params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.state_dict().values())


def host(encoder: dict, scale: int) -> nn.Module:
    args = {k: v for k, v in encoder.items() if k != 'type'}
    return create(encoder['type'], scale, **args)


def multi_scale(label: str, upsampler: Upsampler) -> nn.Module:
    """The one network for every scale: the authors' class where IGConv released one, else IGConvSR."""
    if label in AUTHORS_IG:
        return create(AUTHORS_IG[label][upsampler])
    return IGConvSR(HOSTS[label], upsampler)


def instantiated(net: nn.Module, scale: int) -> tuple[nn.Module, Forward]:
    """(the network baked for x``scale``, its forward on an LR image)."""
    if isinstance(net, IGConvSR):
        fixed = net.instantiate(scale)
        return fixed, fixed
    baked = instantiate_upsamplers(net, scale)  # the authors' classes still take the scale per call
    return baked, lambda x: baked(x, scale)


def parse_size(text: str) -> tuple[int, int]:
    """'64' -> (64, 64); '320x180' (width x height) -> (180, 320), as (height, width)."""
    width, _, height = text.partition('x')
    return int(height or width), int(width)


def interleaved_medians(fns: list[Forward], x: torch.Tensor, repeats: int, device: torch.device) -> list[float]:
    """Median ms of each function, each repeat timing all of them in turn."""
    def sync() -> None:
        if device.type == 'cuda':
            torch.cuda.synchronize()

    times: list[list[float]] = [[] for _ in fns]
    with torch.inference_mode():
        for fn in fns:
            for _ in range(3):
                fn(x)
        sync()
        for _ in range(repeats):
            for fn, own in zip(fns, times):
                start = time.perf_counter()
                fn(x)
                sync()
                own.append((time.perf_counter() - start) * 1000)
    return [statistics.median(own) for own in times]


def parameter_table(labels: list[str]) -> list[str]:
    rows = ['| host | 3 single-scale models | IGConv | ratio | IGConv+ | ratio |', '|---|---|---|---|---|---|']
    for label in labels:
        three = sum(params(host(HOSTS[label], s)) for s in SCALES)
        ig, plus = (params(multi_scale(label, up)) for up in UPSAMPLERS)
        rows.append(f'| {label} | {three / 1e6:.3f} M | {ig / 1e6:.3f} M | {ig / three:.3f} | {plus / 1e6:.3f} M | '
                    f'{plus / three:.3f} |')
    return rows


def latency_table(size: tuple[int, int], repeats: int, device: torch.device, labels: list[str]) -> list[str]:
    rows = [('| host | scale | host tail ms | IGConv tail ms | ratio | host net ms | IGConv net ms | ratio | '
             'IGConv+ net ms | ratio |'), '|---|---|---|---|---|---|---|---|---|---|']
    x = torch.rand(1, 3, *size, device=device)
    for label in labels:
        encoder = HOSTS[label]
        nets = {up: multi_scale(label, up).to(device).eval() for up in UPSAMPLERS}
        for s in SCALES:
            plain = host(encoder, s).to(device).eval()
            baked, run_ig = instantiated(nets['igconv'], s)
            _, run_plus = instantiated(nets['igconv_plus'], s)
            names, width = subpixel_tail(encoder['type'], plain)
            tail = nn.Sequential(*(plain.get_submodule(n) for n in names))
            feat = torch.rand(1, width, *size, device=device)
            new_tail = baked.get_submodule(f'encoder.{names[0]}.upsampler' if isinstance(baked, IGConvSR) else names[0])
            t_host, t_ig = interleaved_medians([tail, new_tail], feat, repeats, device)
            n_host, n_ig, n_plus = interleaved_medians([plain, run_ig, run_plus], x, repeats, device)
            rows.append(f'| {label} | x{s} | {t_host:.2f} | {t_ig:.2f} | {t_ig / t_host:.2f} | {n_host:.1f} | '
                        f'{n_ig:.1f} | {n_ig / n_host:.2f} | {n_plus:.1f} | {n_plus / n_host:.2f} |')
    return rows


def load_average() -> str:
    return ', '.join(f'{v:.2f}' for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', type=parse_size, nargs='+', default=[(64, 64)],
                        help='LR input sizes: 64 (square) or 320x180 (width x height)')
    parser.add_argument('--repeats', type=int, default=20)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--hosts', nargs='*', default=['EDSR-baseline', 'EIMN_A', 'IMDN', 'SMFANet'],
                        choices=list(HOSTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    print('\n'.join(parameter_table(list(HOSTS))))
    for height, width in args.size:
        print(f'\nLatency, LR {width}x{height}, {device}, median of {args.repeats}, load average {load_average()}:')
        print('\n'.join(latency_table((height, width), args.repeats, device, args.hosts)))
    print(f'\nLoad average at the end: {load_average()}')


if __name__ == '__main__':
    main()
