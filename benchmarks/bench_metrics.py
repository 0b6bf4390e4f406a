"""Time srkit's torch PSNR+SSIM against a plain float64 numpy implementation of the same definition.

The plain version below is written independently of srkit (a literal 11x11 'valid' Gaussian filter, as
Wang et al.'s MATLAB ``filter2``), so the script also checks that the two agree on real images.

    python benchmarks/bench_metrics.py --data ../shared/data/Set14 --repeats 3
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from srkit.metrics.psnr_ssim import calculate_psnr, calculate_ssim
from srkit.ops.imresize import imresize

REPO = Path(__file__).resolve().parents[1]


def plain_y(img: np.ndarray) -> np.ndarray:
    """MATLAB rgb2ycbcr's Y (unrounded) of an RGB image in [0, 255]."""
    r, g, b = (img[..., k].astype(np.float64) for k in range(3))
    return 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0


def plain_filter2_valid(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    size = window.shape[0]
    h, w = x.shape[0] - size + 1, x.shape[1] - size + 1
    out = np.zeros((h, w))
    for i in range(size):
        for j in range(size):
            out += window[i, j] * x[i:i + h, j:j + w]
    return out


def plain_psnr_ssim(sr: np.ndarray, gt: np.ndarray, crop: int) -> tuple[float, float]:
    a = plain_y(sr)[crop:-crop, crop:-crop]
    b = plain_y(gt)[crop:-crop, crop:-crop]
    psnr = 10.0 * math.log10(255.0 ** 2 / np.mean((a - b) ** 2))
    grid = np.arange(11) - 5.0
    window = np.exp(-(grid[:, None] ** 2 + grid[None, :] ** 2) / (2 * 1.5 ** 2))
    window /= window.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = plain_filter2_valid(a, window), plain_filter2_valid(b, window)
    var_a = plain_filter2_valid(a * a, window) - mu_a ** 2
    var_b = plain_filter2_valid(b * b, window) - mu_b ** 2
    cov = plain_filter2_valid(a * b, window) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return psnr, float(ssim_map.mean())


def load_pairs(data: Path, scale: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, SR, GT) uint8 pairs: each LRbicx{scale} upscaled back with srkit's MATLAB bicubic."""
    pairs = []
    for gt_path in sorted((data / 'GTmod12').glob('*.png')):
        gt = np.asarray(Image.open(gt_path).convert('RGB'))
        lr = np.asarray(Image.open(data / f'LRbicx{scale}' / gt_path.name).convert('RGB'))
        sr = np.clip(np.floor(imresize(lr / 255.0, float(scale)) * 255.0 + 0.5), 0, 255).astype(np.uint8)
        pairs.append((gt_path.stem, sr, gt))
    if not pairs:
        raise SystemExit(f'no images under {data / "GTmod12"}')
    return pairs


def best_time(fn, repeats: int) -> tuple[float, list]:
    best, result = math.inf, []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data', type=Path, default=REPO.parent / 'shared' / 'data' / 'Set14',
                        help='a folder with GTmod12/ and LRbicx{scale}/ (default: ../shared/data/Set14)')
    parser.add_argument('--scale', type=int, default=4, help='LR scale, also the crop border (default 4)')
    parser.add_argument('--repeats', type=int, default=3, help='timed runs of each; the best counts')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch CPU threads (default 1, like numpy\'s single-threaded arithmetic)')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pairs = load_pairs(args.data, args.scale)
    tensors = [(torch.from_numpy(sr.copy()).permute(2, 0, 1)[None].float(),
                torch.from_numpy(gt.copy()).permute(2, 0, 1)[None].float()) for _, sr, gt in pairs]

    def run_plain() -> list[tuple[float, float]]:
        return [plain_psnr_ssim(sr, gt, args.scale) for _, sr, gt in pairs]

    def run_srkit() -> list[tuple[float, float]]:
        return [(calculate_psnr(sr, gt, args.scale, True).item(), calculate_ssim(sr, gt, args.scale, True).item())
                for sr, gt in tensors]

    plain_s, plain = best_time(run_plain, args.repeats)
    srkit_s, fast = best_time(run_srkit, args.repeats)
    psnr_diff = max(abs(p[0] - f[0]) for p, f in zip(plain, fast))
    ssim_diff = max(abs(p[1] - f[1]) for p, f in zip(plain, fast))
    print(f'{len(pairs)} images from {args.data} (x{args.scale}, Y channel, crop {args.scale}), '
          f'best of {args.repeats}, torch threads {args.threads}')
    print(f'plain float64 numpy PSNR+SSIM: {plain_s:.3f} s')
    print(f'srkit torch PSNR+SSIM:         {srkit_s:.3f} s')
    print(f'speed-up: {plain_s / srkit_s:.1f}x')
    print(f'max |PSNR difference|: {psnr_diff:.2e} dB; max |SSIM difference|: {ssim_diff:.2e}')
    print(f'mean PSNR/SSIM: {np.mean([f[0] for f in fast]):.4f}/{np.mean([f[1] for f in fast]):.4f}')


if __name__ == '__main__':
    main()
