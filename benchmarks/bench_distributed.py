"""Throughput of the demo training with 1 process vs N processes (torchrun, gloo on CPU), in one run.

Weak scaling: each process keeps the option file's batch, so N processes train N times the images per
iteration. Scaling efficiency = images/s with N processes / (N x images/s with 1 process).

    python benchmarks/bench_distributed.py --iters 60 --nproc 2
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(nproc: int, opt: str, iters: int, root: Path, threads: int | None = None) -> float:
    """Iterations per second of steady training, read from srkit's own progress line."""
    args = ['-opt', opt, '--force_yml', f'train.total_iter={iters}', f'logger.print_freq={iters // 2}',
            f'val.val_freq={10 * iters}', f'logger.save_checkpoint_freq={10 * iters}', 'logger.use_tb_logger=false',
            f'path.experiments_root={root / f"n{nproc}"}']
    if nproc == 1:
        cmd = [sys.executable, str(REPO / 'srkit' / 'train.py'), *args]
    else:
        cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}',
               str(REPO / 'srkit' / 'train.py'), *args, '--launcher', 'pytorch']
    env = dict(os.environ, OMP_NUM_THREADS=str(threads)) if threads else None
    out = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=True, env=env).stdout
    speeds = [float(s) for s in re.findall(r'\| ([\d.]+) it/s', out)]
    return speeds[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--opt', default=str(REPO / 'options/train/Demo/train_EDSR_tiny_x2_demo.yml'))
    parser.add_argument('--iters', type=int, default=60)
    parser.add_argument('--nproc', type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / 'datasets').symlink_to(REPO / 'datasets', target_is_directory=True)
        single = run(1, args.opt, args.iters, root)
        single_one_thread = run(1, args.opt, args.iters, root, threads=1)
        multi = run(args.nproc, args.opt, args.iters, root)  # torchrun gives each process one thread
    batch = re.search(r'batch_size_per_gpu:\s*(\d+)', Path(args.opt).read_text())
    per_iter = int(batch.group(1)) if batch else 1
    img1, img1t, imgn = single * per_iter, single_one_thread * per_iter, multi * per_iter * args.nproc
    print(f'1 process, default threads : {single:.2f} it/s = {img1:.1f} images/s')
    print(f'1 process, 1 thread        : {single_one_thread:.2f} it/s = {img1t:.1f} images/s')
    print(f'{args.nproc} processes, 1 thread each: {multi:.2f} it/s = {imgn:.1f} images/s')
    print(f'vs 1 process with default threads: speed-up {imgn / img1:.2f}x')
    print(f'vs 1 process with 1 thread: speed-up {imgn / img1t:.2f}x, '
          f'scaling efficiency {imgn / (args.nproc * img1t):.0%}')


if __name__ == '__main__':
    main()
