"""Deployment precisions of the released plain/ET networks in onnxruntime (CPU): PSNR and latency.

    python benchmarks/bench_int8.py --baselines /path/to/ETDS/experiments/pretrained_models --latency-variants
    python benchmarks/bench_int8.py --skip-psnr --latency-variants M5C16 M6C32 --threads 2

Each checkpoint is exported to ONNX in float32 and float16 (``srkit.tools.onnx_export``, verified against
PyTorch) and quantized to INT8 (``srkit.tools.quantize``: QDQ, per-channel weights, calibrated on
--patches LR patches of --calibration, seed 0), once with 8-bit and once with 7-bit weights
(``reduce_range``, onnxruntime's advice for x86 CPUs without VNNI). Every form is scored on Set5 and
Set14 (Y channel, crop = scale, srkit's calculate_psnr) through onnxruntime. ETDS files come from
--weights (the training-form ETDS_M6C32_x4_normal_loss converted by ``convert_etds`` first);
ABPN/ABPN_ET (M4C28, M6C40) and ECBSR/ECBSR_ET (ECBSRT/ECBSRET: M4C16, M4C32, M6C40) from --baselines
(the authors' experiments/pretrained_models folder) when given.

Latency: the released ETDS --latency-variants at x2, x3 and x4, one --height x --width LR input (the
files are exported with dynamic height and width), float32 and INT8 (8-bit weights) taking turns within
every run in one process; the median of --runs after --warmup, and the float32 / INT8 ratio of the same
run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from srkit.archs import create
from srkit.archs.etds_convert import convert_etds
from srkit.archs.weights import load_pretrained
from srkit.data.image_io import read_image
from srkit.metrics.psnr_ssim import calculate_psnr
from srkit.tools.onnx_export import export_onnx, verify_onnx
from srkit.tools.quantize import calibration_patches, quantize_int8

SHARED = Path(os.environ.get('SRKIT_SHARED', Path(__file__).resolve().parents[1].parent / 'shared'))
FORMS = ('fp32', 'fp16', 'int8', 'int8 7-bit')
SETS = ('Set5', 'Set14')


@dataclass
class Checkpoint:
    label: str
    arch: str
    scale: int
    path: Path
    arguments: dict[str, Any] = field(default_factory=dict)
    convert: bool = False  # a training-form ETDS checkpoint, converted to the plain form before export


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--weights', type=Path, default=SHARED / 'weights' / 'ETDS', help='ETDS checkpoints')
    parser.add_argument('--baselines', type=Path, help='folder with ABPN/ and ECBSR/ released checkpoints')
    parser.add_argument('--data', type=Path, default=SHARED / 'data', help='folder with Set5/ and Set14/')
    parser.add_argument('--calibration', type=Path, default=SHARED / 'data' / 'T91' / 'HR', help='HR images')
    parser.add_argument('--patches', type=int, default=32, help='calibration patches (LR 48x48)')
    parser.add_argument('--latency-variants', nargs='*', default=['M5C16', 'M6C32'], help='ETDS presets timed')
    parser.add_argument('--height', type=int, default=360, help='LR input height for latency')
    parser.add_argument('--width', type=int, default=640, help='LR input width for latency')
    parser.add_argument('--runs', type=int, default=11, help='timed runs per form (the median is reported)')
    parser.add_argument('--warmup', type=int, default=2, help='untimed runs before timing')
    parser.add_argument('--threads', type=int, default=torch.get_num_threads(), help='onnxruntime intra-op threads')
    parser.add_argument('--skip-psnr', action='store_true', help='latency only')
    return parser.parse_args()


def checkpoints(args: argparse.Namespace) -> list[Checkpoint]:
    found = [Checkpoint(f'ETDS_{v}', f'ETDSForInference_{v}', s, args.weights / f'ETDS_{v}_x{s}.pth')
             for v in ('M4C32', 'M5C16', 'M6C32', 'M7C48') for s in (2, 3, 4)]
    found.append(Checkpoint('ETDS_M6C32 normal_loss', 'ETDS_M6C32', 4,
                            args.weights / 'ETDS_M6C32_x4_normal_loss.pth', convert=True))
    found.append(Checkpoint('Plain_M6C32', 'Plain_M6C32', 4, args.weights / 'Plain_M6C32_x4.pth'))
    if args.baselines:
        for variant in ('M4C28', 'M6C40'):
            for form in ('ABPN', 'ABPN_ET'):
                found += [Checkpoint(f'{form}_{variant}', f'{form}_{variant}', s,
                                     args.baselines / 'ABPN' / f'{form}_{variant}_x{s}.pth') for s in (2, 3, 4)]
        for variant, block, feat in (('M4C16', 4, 16), ('M4C32', 4, 32), ('M6C40', 6, 40)):
            for form, arch in (('ECBSR', 'ECBSRT'), ('ECBSR_ET', 'ECBSRET')):
                found += [Checkpoint(f'{form}_{variant}', arch, s,
                                     args.baselines / 'ECBSR' / f'{form}_{variant}_x{s}.pth',
                                     {'num_block': block, 'num_feat': feat}) for s in (2, 3, 4)]
    return [c for c in found if c.path.exists()]


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])


def benchmark_set(root: Path, scale: int) -> list[tuple[np.ndarray, torch.Tensor]]:
    """(LR input as float32 NCHW in [0, 1], GT as float64 NCHW in [0, 255]) per image, BasicSR layout."""
    pairs = []
    for gt_path in sorted((root / 'GTmod12').glob('*.png')):
        lr = read_image(root / f'LRbicx{scale}' / gt_path.name)
        gt = read_image(gt_path)
        pairs.append((np.ascontiguousarray(lr.transpose(2, 0, 1)[None], dtype=np.float32) / 255,
                      torch.from_numpy(gt.transpose(2, 0, 1)[None].astype(np.float64))))
    return pairs


def mean_psnr(sess: ort.InferenceSession, pairs: list[tuple[np.ndarray, torch.Tensor]], scale: int) -> float:
    values = []
    for lr, gt in pairs:
        sr = torch.from_numpy(np.round(np.clip(sess.run(None, {'input': lr})[0], 0, 1) * 255).astype(np.float64))
        values.append(calculate_psnr(sr, gt, crop_border=scale, test_y_channel=True).item())
    return statistics.fmean(values)


def write_forms(ckpt: Checkpoint, folder: Path,
                patches: list[np.ndarray]) -> tuple[dict[str, Path], tuple[float, float, float]]:
    """The four ONNX files of one checkpoint, and how far each low-precision one is from float32: the
    float16 file's largest |difference| from PyTorch on a random image, the INT8 files' PSNR against the
    float32 file on the calibration patches. These are reported, not enforced: they are where FP16_ATOL
    and DEFAULT_MIN_PSNR come from."""
    net = create(ckpt.arch, ckpt.scale, **ckpt.arguments).eval()
    load_pretrained(net, ckpt.path, strict=True, arch_type=ckpt.arch)
    if ckpt.convert:
        net = convert_etds(net).eval()
    paths = {form: folder / f'{ckpt.path.stem}_{form.replace(" ", "_")}.onnx' for form in FORMS}
    check = [torch.rand(1, 3, 24, 20, generator=torch.Generator().manual_seed(1))]
    verify_onnx(net, export_onnx(net, paths['fp32'], (1, 3, 32, 32)), check, atol=1e-4)
    fp16_diff = verify_onnx(net, export_onnx(net, paths['fp16'], (1, 3, 32, 32), fp16=True), check,
                            atol=float('inf'))  # reported against FP16_ATOL, not enforced (NaN still fails)
    agreement = (quantize_int8(paths['fp32'], paths['int8'], patches, min_psnr=0),
                 quantize_int8(paths['fp32'], paths['int8 7-bit'], patches, reduce_range=True, min_psnr=0))
    return paths, (fp16_diff, *agreement)


def psnr_table(args: argparse.Namespace, folder: Path) -> None:
    cols = [f'{s} {form}' for s in SETS for form in FORMS]
    print('| model | scale | ' + ' | '.join(cols) + ' | fp16 max diff | int8 / int8 7-bit vs fp32 on calibration |')
    print('|---|---|' + '---|' * (len(cols) + 2))
    patches = {s: calibration_patches(args.calibration, s, count=args.patches, seed=0) for s in (2, 3, 4)}
    for ckpt in checkpoints(args):
        paths, agreement = write_forms(ckpt, folder, patches[ckpt.scale])
        cells = []
        for name in SETS:
            pairs = benchmark_set(args.data / name, ckpt.scale)
            cells += [f'{mean_psnr(session(paths[form], args.threads), pairs, ckpt.scale):.4f}' for form in FORMS]
        print(f'| {ckpt.label} | x{ckpt.scale} | ' + ' | '.join(cells)
              + f' | {agreement[0]:.1e} | {agreement[1]:.2f} / {agreement[2]:.2f} dB |', flush=True)


def latency_table(args: argparse.Namespace, folder: Path) -> None:
    """fp32 and int8 sessions of each variant and scale, timed in turns (load changes hit both alike)."""
    print(f'\nLatency: one {args.width}x{args.height} LR input, {args.threads} thread(s), median of {args.runs} '
          f'runs after {args.warmup}, onnxruntime {ort.__version__}')
    print('| model | scale | fp32 ms | int8 ms | int8 speed-up |')
    print('|---|---|---|---|---|')
    x = torch.rand(1, 3, args.height, args.width, generator=torch.Generator().manual_seed(0)).numpy()
    for variant in args.latency_variants:
        for scale in (2, 3, 4):
            ckpt = Checkpoint(f'ETDS_{variant}', f'ETDSForInference_{variant}', scale,
                              args.weights / f'ETDS_{variant}_x{scale}.pth')
            paths, _ = write_forms(ckpt, folder, calibration_patches(args.calibration, scale, count=args.patches))
            fp32, int8 = paths['fp32'], paths['int8']
            sessions = {'fp32': session(fp32, args.threads), 'int8': session(int8, args.threads)}
            times: dict[str, list[float]] = {name: [] for name in sessions}
            for index in range(args.warmup + args.runs):
                for name, sess in sessions.items():
                    start = time.perf_counter()
                    sess.run(None, {'input': x})
                    if index >= args.warmup:
                        times[name].append(1000 * (time.perf_counter() - start))
            ms = {name: statistics.median(values) for name, values in times.items()}
            print(f'| ETDS_{variant} | x{scale} | {ms["fp32"]:.1f} | {ms["int8"]:.1f} | '
                  f'{ms["fp32"] / ms["int8"]:.2f}x |', flush=True)


def main() -> None:
    args = parse_args()
    print(f'load average at start: {os.getloadavg()}')
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_psnr:
            psnr_table(args, Path(tmp))
        latency_table(args, Path(tmp))
    print(f'load average at end: {os.getloadavg()}')


if __name__ == '__main__':
    main()
