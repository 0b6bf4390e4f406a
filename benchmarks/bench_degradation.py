"""Can Real-ESRGAN's on-the-fly data keep up with its network? Three rates, in images per second, in one run:

1. RealESRGANDataset through a DataLoader (read, flip, crop or pad to 400x400, draw three blur kernels) with 0,
   1, 2 ... workers: what the loader delivers;
2. the model-side degradation of a batch (USM, SecondOrderDegradation, the gt_size crop, the pair pool): what
   ``prepare_batch`` costs per image, on this device;
3. one RRDBNet x4 training step (23 blocks, 64 channels, L1 + Adam) on gt_size patches: what the network consumes.

The data keeps up when (1) >= (3) and (2) is small against (3). The verdict line gives the workers needed:
ceil(network rate / one worker's rate). Each rate is the median of ``--repeats`` timed rounds after a warm-up.

    python benchmarks/bench_degradation.py --images ../shared/data/BSD200/HR --batch 4 --gt-size 256
    python benchmarks/bench_degradation.py --device cuda --batch 16  # the GPU path, where one is present
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from srkit.archs import create
from srkit.data.degradations import usm_sharp
from srkit.data.realesrgan_dataset import RealESRGANDataset
from srkit.data.realesrgan_degradation import SecondOrderDegradation, TrainingPairPool, paired_random_crop_batch

# The kernel and degradation settings of Real-ESRGAN's train_realesrgan_x4plus.yml (and EIMN's GAN files).
KERNELS = {'blur_kernel_size': 21, 'kernel_list': ['iso', 'aniso', 'generalized_iso', 'generalized_aniso',
                                                   'plateau_iso', 'plateau_aniso'],
           'kernel_prob': [0.45, 0.25, 0.12, 0.03, 0.12, 0.03], 'sinc_prob': 0.1, 'blur_sigma': [0.2, 3],
           'betag_range': [0.5, 4], 'betap_range': [1, 2], 'blur_kernel_size2': 21,
           'kernel_list2': ['iso', 'aniso', 'generalized_iso', 'generalized_aniso', 'plateau_iso', 'plateau_aniso'],
           'kernel_prob2': [0.45, 0.25, 0.12, 0.03, 0.12, 0.03], 'sinc_prob2': 0.1, 'blur_sigma2': [0.2, 1.5],
           'betag_range2': [0.5, 4], 'betap_range2': [1, 2], 'final_sinc_prob': 0.8}
DEGRADATION = {'resize_prob': [0.2, 0.7, 0.1], 'resize_range': [0.15, 1.5], 'gaussian_noise_prob': 0.5,
               'noise_range': [1, 30], 'poisson_scale_range': [0.05, 3], 'gray_noise_prob': 0.4,
               'jpeg_range': [30, 95], 'second_blur_prob': 0.8, 'resize_prob2': [0.3, 0.4, 0.3],
               'resize_range2': [0.3, 1.2], 'gaussian_noise_prob2': 0.5, 'noise_range2': [1, 25],
               'poisson_scale_range2': [0.05, 2.5], 'gray_noise_prob2': 0.4, 'jpeg_range2': [30, 95]}
SCALE = 4


def median_rate(images_per_round: int, run: Callable[[], None], repeats: int) -> float:
    run()  # warm-up: first-call allocations, worker start-up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        rates.append(images_per_round / (time.perf_counter() - start))
    return statistics.median(rates)


def loader_rate(dataset: RealESRGANDataset, workers: int, batch: int, batches: int, repeats: int) -> float:
    """Images per second the DataLoader delivers (persistent workers, so start-up is not counted)."""
    keys = [(i % len(dataset), i) for i in range(batch * batches * (repeats + 1) + batch * batches)]
    loader = DataLoader(dataset, batch_size=batch, sampler=keys, num_workers=workers,
                        persistent_workers=workers > 0, prefetch_factor=2 if workers else None)
    iterator = iter(loader)

    def one_round() -> None:
        for _ in range(batches):
            next(iterator)

    return median_rate(batch * batches, one_round, repeats)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--images', type=Path, required=True, help='a folder of HR photographs')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--batch', type=int, default=4, help='batch size (Real-ESRGAN trains with 12 per GPU)')
    parser.add_argument('--gt-size', type=int, default=256)
    parser.add_argument('--workers', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--batches', type=int, default=4, help='batches per timed round')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dataset = RealESRGANDataset(str(args.images), use_hflip=True, **KERNELS)
    print(f'{len(dataset)} images from {args.images}; batch {args.batch}, gt_size {args.gt_size}, device {device}, '
          f'{args.threads} threads, load average {os.getloadavg()[0]:.2f}')

    rates = {f'loader, {w} workers': loader_rate(dataset, w, args.batch, args.batches, args.repeats)
             for w in args.workers}

    samples = next(iter(DataLoader(dataset, batch_size=args.batch, sampler=[(i, i) for i in range(args.batch)])))
    batch = {k: v.to(device) for k, v in samples.items() if isinstance(v, torch.Tensor)}
    degrade = SecondOrderDegradation(SCALE, **DEGRADATION)
    pool = TrainingPairPool(args.batch * 4)
    generator = torch.Generator(device).manual_seed(0)

    def degrade_batch() -> None:
        gt = batch['gt']
        lq = degrade(usm_sharp(gt), batch['kernel1'], batch['kernel2'], batch['sinc_kernel'], generator)
        gt, lq = paired_random_crop_batch(gt, lq, args.gt_size, SCALE, generator)
        lq, gt = pool(lq.contiguous(), gt.contiguous(), generator)
        usm_sharp(gt)
        if device.type == 'cuda':
            torch.cuda.synchronize()

    rates['degradation (model side)'] = median_rate(args.batch, degrade_batch, args.repeats)

    net = create('RRDBNet', SCALE).to(device).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    lq = torch.rand(args.batch, 3, args.gt_size // SCALE, args.gt_size // SCALE, device=device)
    gt = torch.rand(args.batch, 3, args.gt_size, args.gt_size, device=device)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        (net(lq) - gt).abs().mean().backward()
        optimizer.step()
        if device.type == 'cuda':
            torch.cuda.synchronize()

    rates['RRDBNet x4 training step'] = median_rate(args.batch, train_step, args.repeats)

    network = rates['RRDBNet x4 training step']
    print('\n| stage | images/s | vs the training step |\n|---|---|---|')
    for name, rate in rates.items():
        print(f'| {name} | {rate:.2f} | {rate / network:.2f}x |')
    one_worker = rates.get('loader, 1 workers')
    if one_worker:
        print(f'\nWorkers needed to feed the network: ceil({network:.2f} / {one_worker:.2f}) = '
              f'{math.ceil(network / one_worker)}; the model-side degradation adds '
              f'{network / rates["degradation (model side)"]:.0%} to each step.')


if __name__ == '__main__':
    main()
