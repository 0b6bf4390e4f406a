"""Do finished 2-process runs exit cleanly under load? Trains a tiny network with 2 processes (torchrun, gloo
on CPU) again and again while a process spins on core 0, and counts the runs that exit non-zero or print
``terminate called`` (a rank aborting with SIGABRT after 'Training finished'; docs/DISTRIBUTED.md).

    python benchmarks/stress_distributed_exit.py --runs 30

Prints every run's exit code and, at the end, the wall time, the load average and 'N runs, F failures';
exits 1 if any run failed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from srkit.data.image_io import write_image

REPO = Path(__file__).resolve().parents[1]
CONFIG = '''
name: stress
model_type: SRModel
scale: 2
manual_seed: 7
datasets:
  train: {{name: train, type: HRBicubicDataset, dataroot_gt: {root}/hr, gt_size: 16, use_hflip: true, use_rot: true,
          batch_size_per_gpu: 2, num_worker_per_gpu: {workers}, dataset_enlarge_ratio: 3}}
  val: {{name: val, type: HRBicubicDataset, dataroot_gt: {root}/val, num_worker_per_gpu: {workers}}}
network_g: {{type: EDSR, num_feat: 8, num_block: 1, upscale: 2}}
path: {{experiments_root: {root}/exp}}
train:
  optim_g: {{type: Adam, lr: 0.002}}
  scheduler: {{type: MultiStepLR, milestones: [100], gamma: 0.5}}
  total_iter: 8
  pixel_opt: {{type: L1Loss}}
val: {{val_freq: 4, metrics: {{psnr: {{type: calculate_psnr, crop_border: 2}}}}}}
logger: {{print_freq: 2, save_checkpoint_freq: 4, use_tb_logger: {tb}}}
'''


def make_data(root: Path) -> None:
    rng = np.random.default_rng(0)
    for folder, count in (('hr', 4), ('val', 3)):
        (root / folder).mkdir(parents=True)
        for i in range(count):
            write_image(root / folder / f'img{i:02d}.png', rng.integers(0, 256, (36, 48, 3), dtype=np.uint8))


def run_once(opt: Path, root: Path) -> tuple[int, str]:
    """(exit code, stderr) of one 2-process training, with validation, checkpoints and the final gathers."""
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
           str(REPO / 'srkit' / 'train.py'), '-opt', str(opt), '--launcher', 'pytorch']
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--runs', type=int, default=30)
    parser.add_argument('--spin', action=argparse.BooleanOptionalAction, default=True,
                        help='keep a process spinning on core 0 during the runs (default: on)')
    parser.add_argument('--workers', type=int, default=0, help='DataLoader workers per process (default 0)')
    parser.add_argument('--tb', action='store_true', help='log to TensorBoard too')
    args = parser.parse_args()
    spinner = None
    if args.spin:
        spin = [sys.executable, '-c', 'while True: pass']
        spinner = subprocess.Popen(['taskset', '-c', '0', *spin] if shutil.which('taskset') else spin)
    failures = 0
    start = time.monotonic()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            make_data(root)
            opt = root / 'stress.yml'
            opt.write_text(CONFIG.format(root=root, workers=args.workers, tb=str(args.tb).lower()))
            for i in range(1, args.runs + 1):
                began = time.monotonic()
                code, stderr = run_once(opt, root)
                aborts = sum('terminate called' in line for line in stderr.splitlines())
                failed = code != 0 or aborts > 0
                failures += failed
                print(f'run {i:3d}: exit {code}, {aborts} "terminate called", {time.monotonic() - began:5.1f} s'
                      f'{"  FAILED" if failed else ""}', flush=True)
                if failed:
                    print('    ' + '\n    '.join(stderr.strip().splitlines()[-20:]), flush=True)
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    load = ', '.join(f'{x:.2f}' for x in os.getloadavg())
    print(f'wall time {time.monotonic() - start:.0f} s, load average (1, 5, 15 min) {load}')
    print(f'{args.runs} runs, {failures} failures')
    sys.exit(1 if failures else 0)


if __name__ == '__main__':
    main()
