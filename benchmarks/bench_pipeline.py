"""Data-loader overhead of the demo training: real loader vs the same steps over pre-loaded batches.

Both are timed in the same run, alternating, so machine noise hits both alike. Overhead is
1 - (steps/s with the real loader) / (steps/s over pre-loaded tensors).

    python benchmarks/bench_pipeline.py --iters 60 --rounds 3
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from srkit.config.options import load_options  # noqa: E402
from srkit.core.dist import DistContext  # noqa: E402
from srkit.core.logger import setup_logger  # noqa: E402
from srkit.engine.trainer import Trainer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--opt', default=str(REPO / 'options/train/Demo/train_EDSR_tiny_x2_demo.yml'))
    parser.add_argument('--iters', type=int, default=60, help='training steps per timing')
    parser.add_argument('--rounds', type=int, default=3, help='alternating rounds of both timings')
    parser.add_argument('--workers', type=int, default=None, help='override num_worker_per_gpu')
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [f'path.experiments_root={tmp}/exp', 'logger.use_tb_logger=false']
        if args.workers is not None:
            overrides.append(f'datasets.train.num_worker_per_gpu={args.workers}')
        options = load_options(args.opt, is_train=True, overrides=overrides)
        setup_logger(None, is_main=False)
        trainer = Trainer(options, DistContext())
        model, loader = trainer.model, trainer.train_loader
        trainer.sampler.set_epoch(0)
        preloaded = list(itertools.islice(iter(loader), args.iters))
        step = itertools.count(1)

        def timed(batches) -> float:
            start = time.perf_counter()
            for batch, _ in zip(batches, range(args.iters)):
                model.train_step([batch], next(step))
            return args.iters / (time.perf_counter() - start)

        real, pre = [], []
        for round_index in range(args.rounds):
            trainer.sampler.set_epoch(round_index + 1)
            real.append(timed(iter(loader)))
            pre.append(timed(preloaded))
    real_med, pre_med = statistics.median(real), statistics.median(pre)
    print(f'config: {args.opt}  batch {options.datasets["train"].loader.batch_size_per_gpu}, '
          f'workers {options.datasets["train"].loader.num_worker_per_gpu}, {args.iters} steps x {args.rounds} rounds')
    print(f'real loader : {real_med:.2f} it/s  (rounds: {", ".join(f"{v:.2f}" for v in real)})')
    print(f'pre-loaded  : {pre_med:.2f} it/s  (rounds: {", ".join(f"{v:.2f}" for v in pre)})')
    print(f'loader overhead: {100 * (1 - real_med / pre_med):.1f}%  (ratio real/pre-loaded {real_med / pre_med:.3f})')


if __name__ == '__main__':
    main()
