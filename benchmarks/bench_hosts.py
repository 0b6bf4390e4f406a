"""The comparison networks (SwinIR, SRFormer, HAT, ATD, HiT-SRF, MambaIR, RCAN, RDN, PLKSR, SMFANet) against
EIMN_A and IMDN measured in the same run: x4 forward latency on a 64x64 LR input, and the peak memory of
one training step (L1 + Adam on a batch of 48x48 LR patches).

Each network runs in its own child process, one after another, so that one network's peak memory and
allocator state cannot leak into the next: on CUDA the peak is ``torch.cuda.max_memory_allocated``; on the
CPU it is the child's peak resident set size above what it held before the step (the kernel's VmHWM, reset
before the step), which counts the allocator's whole footprint. Latency: median of ``--repeats`` forwards
after one warm-up. Ratios are against IMDN measured in the same run.

    python benchmarks/bench_hosts.py --threads 1 --repeats 3 [--batch 2] [--device cuda] [--only HAT_S IMDN]
    python benchmarks/bench_hosts.py --attention --threads 1   # window attention: explicit vs SDPA

``--attention`` times the window attention these networks run, written out (q k^T * scale + bias, softmax,
times v) against ``F.scaled_dot_product_attention`` with the bias as its mask, interleaved in one process,
for the window shapes of SwinIR-S / SRFormer-light (8x8 and 16x16 windows, 60 channels) and HAT (16x16, 180).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time
from typing import Any

import torch
from torch.nn import functional as F

from srkit.archs import arch_spec, create

NETWORKS = ['IMDN', 'EIMN_A', 'SwinIR_S', 'SwinIR_M', 'SRFormer_light', 'SRFormer', 'HAT_S', 'HAT', 'ATD_light',
            'ATD', 'HiT_SRF', 'MambaIR_light', 'MambaIR', 'RCAN', 'RDN', 'PLKSR_tiny', 'PLKSR', 'SMFANet',
            'SMFANet_plus']
SCALE = 4


def _reset_peak_rss() -> int:
    """Reset the kernel's peak resident set size of this process (VmHWM); the current RSS in bytes."""
    with open('/proc/self/clear_refs', 'w', encoding='ascii') as f:
        f.write('5')
    return _status_kib('VmRSS') * 1024


def _status_kib(field: str) -> int:
    with open('/proc/self/status', encoding='ascii') as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ':'))


def _measure(name: str, args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    spec = arch_spec(name)
    net = (create(name, **spec.example_args) if spec.scale_in_forward
           else create(name, SCALE, **spec.example_args)).to(device)
    params = sum(p.numel() for p in net.parameters())
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), 1e-4)
    lq = torch.rand(args.batch, 3, 48, 48, device=device)
    gt = torch.rand(args.batch, 3, 48 * SCALE, 48 * SCALE, device=device)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _reset_peak_rss()
    out = net(lq)
    F.l1_loss(out[0] if isinstance(out, tuple) else out, gt).backward()
    optimizer.step()
    peak = (torch.cuda.max_memory_allocated() if device.type == 'cuda'
            else _status_kib('VmHWM') * 1024)
    net.eval()
    x = torch.rand(1, 3, args.size, args.size, device=device)
    times = []
    with torch.no_grad():
        for i in range(args.repeats + 1):
            if device.type == 'cuda':
                torch.cuda.synchronize()
            start = time.perf_counter()
            net(x)
            if device.type == 'cuda':
                torch.cuda.synchronize()
            if i:
                times.append(time.perf_counter() - start)
    return {'name': name, 'params': params, 'ms': 1000 * statistics.median(times), 'peak_mib': (peak - before) / 2**20}


ATTENTION_SHAPES = {  # label -> (windows of a 64x64 image, heads, tokens per window, head dim)
    '8x8 windows, 6 heads x 10 (SwinIR-S)': (64, 6, 64, 10),
    '16x16, 6 x 10 (SRFormer-light)': (16, 6, 256, 10),
    '16x16, 6 x 30 (HAT)': (16, 6, 256, 30),
}


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return torch.softmax(q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5 + bias, -1) @ v


def fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


def _attention_ratios(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    print(f'| window shape | explicit ms | SDPA ms | speed-up | max difference |  ({args.threads} thread(s), load '
          f'{os.getloadavg()[0]:.2f})')
    print('|---|---|---|---|---|')
    for label, (windows, heads, tokens, dim) in ATTENTION_SHAPES.items():
        generator = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(windows, heads, tokens, dim, generator=generator) for _ in range(3))
        bias = torch.randn(1, heads, tokens, tokens, generator=generator)
        times: dict[str, list[float]] = {'explicit': [], 'fused': []}
        for _ in range(args.repeats + 1):
            for key, run in (('explicit', explicit_attention), ('fused', fused_attention)):
                start = time.perf_counter()
                run(q, k, v, bias)
                times[key].append(time.perf_counter() - start)
        a, b = (1000 * statistics.median(times[key][1:]) for key in ('explicit', 'fused'))
        difference = (explicit_attention(q, k, v, bias) - fused_attention(q, k, v, bias)).abs().max()
        print(f'| {label} | {a:.1f} | {b:.1f} | {a / b:.2f}x | {difference:.1e} |')


def _child(name: str, args: argparse.Namespace, queue: Any) -> None:
    queue.put(_measure(name, args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--size', type=int, default=64, help='LR side of the latency input')
    parser.add_argument('--batch', type=int, default=2, help='training batch of 48x48 LR patches')
    parser.add_argument('--only', nargs='+', default=NETWORKS)
    parser.add_argument('--attention', action='store_true', help='time the window attention only')
    args = parser.parse_args()
    if args.attention:
        _attention_ratios(args)
        return
    names = ['IMDN'] + [n for n in args.only if n != 'IMDN']
    context = mp.get_context('spawn')
    rows = []
    for name in names:
        queue = context.Queue()
        child = context.Process(target=_child, args=(name, args, queue))
        child.start()
        rows.append(queue.get())
        child.join()
        print(f"{name}: {rows[-1]['ms']:.1f} ms, {rows[-1]['peak_mib']:.0f} MiB", flush=True)
    base = rows[0]
    print(f'\nx{SCALE}, {args.size}x{args.size} LR, {args.device}, {args.threads} thread(s), load average '
          f'{os.getloadavg()[0]:.2f}; training step: batch {args.batch} of 48x48 LR\n')
    print('| network | parameters | forward ms | vs IMDN | train-step peak MiB | vs IMDN |')
    print('|---|---|---|---|---|---|')
    for row in rows:
        print(f"| {row['name']} | {row['params']:,} | {row['ms']:.1f} | {row['ms'] / base['ms']:.1f}x | "
              f"{row['peak_mib']:.0f} | {row['peak_mib'] / base['peak_mib']:.1f}x |")


if __name__ == '__main__':
    main()
