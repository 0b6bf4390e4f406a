"""One IGConv(+) model for x2/x3/x4 vs three single-scale models of its host, short CPU training on T91: Set5
PSNR at each scale side by side, the iterations each side needs to reach a common PSNR, and the stored
parameters of each side (the IGConv paper's claim that one model replaces three, at a third of the training).

Hosts: ``edsr`` (srkit's IGConvSR on EDSR-baseline) and ``smfanet`` (the authors' SMFANetIG(Plus) against
SMFANet, both as IGConv's and SMFANet's option files build them).

With ``--eval-every K`` each run scores Set5 (Y, crop = scale, EMA weights) through the trainer's validation
every K iterations. The multi-scale model's iterations count in full (each one trains the whole model, on
one scale); the single-scale side's cost is the sum of the three runs.

    python benchmarks/bench_igconv_training.py --iters 600 --shared ../shared [--host smfanet]
    python benchmarks/bench_igconv_training.py --host smfanet --iters 3000 --single-iters 3000 --eval-every 250
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from srkit.config.options import Options, parse_options  # noqa: E402
from srkit.core.dist import DistContext  # noqa: E402
from srkit.core.logger import setup_logger  # noqa: E402
from srkit.data.loader import build_dataset  # noqa: E402
from srkit.engine.trainer import Trainer  # noqa: E402
from srkit.models.evaluator import EvalResult, bicubic_predictor, evaluate  # noqa: E402

SCALES = (2, 3, 4)
Curve = dict[int, dict[int, float]]  # iteration -> scale -> Set5 PSNR


def psnr_metric(scale: int) -> dict:
    return {'psnr': {'type': 'calculate_psnr', 'crop_border': scale, 'test_y_channel': True}}


def set5(shared: Path, scale: int, multi: bool) -> dict:
    return {'name': f'Set5_x{scale}', 'type': 'PairedImageDataset', 'dataroot_gt': str(shared / 'data/Set5/GTmod12'),
            'dataroot_lq': str(shared / f'data/Set5/LRbicx{scale}'), **({'scale': scale} if multi else {})}


def train_options(name: str, root: Path, shared: Path, iters: int, network: dict, scale: int, multi: bool,
                  eval_every: int, threads: int | None, raw_weights: bool) -> dict:
    train = {'ema_decay': 0.99, 'optim_g': {'type': 'Adam', 'lr': 5e-4, 'betas': [0.9, 0.99]},
             'scheduler': {'type': 'CosineAnnealingRestartLR', 'periods': [iters], 'eta_min': 1e-5},
             'total_iter': iters, 'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0}}
    if multi:
        train['scales'] = list(SCALES)
        train['fft_opt'] = {'type': 'FFTLoss', 'loss_weight': 0.05}
    dataset = {'name': 'T91', 'type': 'HRPatchDataset' if multi else 'HRBicubicDataset',
               'dataroot_gt': str(shared / 'data/T91/HR'), 'io_backend': {'type': 'disk', 'cache_images': True},
               'gt_size': 48, 'use_hflip': True, 'use_rot': True, 'batch_size_per_gpu': 8,
               'dataset_enlarge_ratio': 50}
    scales = SCALES if multi else (scale,)
    return {'name': name, 'model_type': 'MultiScaleModel' if multi else 'SRModel', 'scale': scale,
            'manual_seed': 0, 'num_threads': threads, 'network_g': network,
            'datasets': {'train': dataset} | {f'val_x{s}': set5(shared, s, multi) for s in scales},
            'val': {'val_freq': eval_every or iters, 'pbar': False, 'use_ema': not raw_weights,
                    'metrics': psnr_metric(scale)},
            'path': {'experiments_root': str(root / name)}, 'train': train,
            'logger': {'print_freq': max(1, iters // 4), 'save_checkpoint_freq': iters, 'use_tb_logger': False}}


class RecordingTrainer(Trainer):
    """Keeps the Set5 PSNR of every validation by iteration (of the first weights validated: the EMA unless
    ``val.use_ema`` is off)."""

    def __init__(self, options: Options, dist: DistContext) -> None:
        self.curve: Curve = {}
        super().__init__(options, dist)

    def validate(self) -> list[EvalResult]:
        results = super().validate()
        self.curve[self.state.iteration] = {int(r.dataset.split('_x')[1]): r.mean['psnr'] for r in results}
        return results


def train(options: dict) -> Curve:
    """Train, and score the final weights too when the last iteration fell between validations."""
    trainer = RecordingTrainer(parse_options(options, is_train=True), DistContext())
    trainer.train()
    if trainer.state.iteration not in trainer.curve:
        trainer.validate()
    return trainer.curve


def bicubic_psnr(shared: Path, scale: int) -> float:
    options = parse_options({'name': 'bicubic', 'model_type': 'SRModel', 'scale': scale,
                             'datasets': {'test': set5(shared, scale, False)}, 'network_g': {'type': 'SMFANet'},
                             'val': {'metrics': psnr_metric(scale)}}, is_train=False)
    entry = options.datasets_of('test')[0]
    assert options.val is not None
    return evaluate(bicubic_predictor(scale), build_dataset(entry), entry.name, options.val.metrics).mean['psnr']


def first_reaching(curve: Curve, scale: int, target: float) -> int | None:
    """The first validated iteration whose PSNR at ``scale`` is at least ``target`` (None: never)."""
    return next((it for it in sorted(curve) if curve[it][scale] >= target), None)


def networks(host: str, upsampler: str) -> tuple[dict, dict[int, dict]]:
    """(the multi-scale network, the single-scale network of each scale) as network_g mappings (the scale
    argument is filled in from the run's scale)."""
    if host == 'smfanet':
        return ({'type': 'SMFANetIGPlus' if upsampler == 'igconv_plus' else 'SMFANetIG'},
                {s: {'type': 'SMFANet'} for s in SCALES})
    multi = {'type': 'IGConvSR', 'upsampler': upsampler, 'encoder': {'type': 'EDSR_baseline'}}
    return multi, {s: {'type': 'EDSR_baseline'} for s in SCALES}


def stored_params(network: dict, scale: int, multi: bool) -> int:
    from srkit.archs import create

    args = {k: v for k, v in network.items() if k != 'type'}
    net = create(network['type'], **args) if multi else create(network['type'], scale, **args)
    return sum(v.numel() for v in net.state_dict().values())


def _count(it: int | None) -> str:
    return '-' if it is None else str(it)


def budget_table(multi: Curve, single: dict[int, Curve], bicubic: dict[int, float],
                 gains: list[float]) -> list[str]:
    """Iterations to each target, per scale and for all three scales (multi: the largest; single: the sum)."""
    final_multi, final_single = multi[max(multi)], {s: c[max(c)][s] for s, c in single.items()}
    targets = [(f'bicubic + {g:g}', {s: bicubic[s] + g for s in SCALES}) for g in gains]
    targets.append(('lower final', {s: min(final_multi[s], final_single[s]) for s in SCALES}))
    rows = ['| target | scale | dB | one multi-scale model | single-scale model |', '|---|---|---|---|---|']
    for label, level in targets:
        reached = {s: (first_reaching(multi, s, level[s]), first_reaching(single[s], s, level[s])) for s in SCALES}
        for s in SCALES:
            rows.append(f'| {label} | x{s} | {level[s]:.2f} | {_count(reached[s][0])} | {_count(reached[s][1])} |')
        ones = [r[0] for r in reached.values() if r[0] is not None]
        threes = [r[1] for r in reached.values() if r[1] is not None]
        one = max(ones) if len(ones) == len(SCALES) else None
        three = sum(threes) if len(threes) == len(SCALES) else None
        ratio = f' ({one / three:.2f}x)' if one and three else ''
        rows.append(f'| {label} | all three | | {_count(one)} (the slowest scale) | {_count(three)} (the sum){ratio} |')
    return rows


def curve_table(multi: Curve, single: dict[int, Curve], label: str, host: str) -> list[str]:
    iterations = sorted(set(multi) | {it for c in single.values() for it in c})
    head = ' | '.join([f'one {label} x{s}' for s in SCALES] + [f'{host} x{s}' for s in SCALES])
    rows = [f'| iteration | {head} |', '|---' * 7 + '|']
    for it in iterations:
        cells = [f'{multi[it][s]:.2f}' if it in multi else '' for s in SCALES]
        cells += [f'{single[s][it][s]:.2f}' if it in single.get(s, {}) else '' for s in SCALES]
        rows.append(f'| {it} | ' + ' | '.join(cells) + ' |')
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--iters', type=int, default=600, help='iterations of the multi-scale model')
    parser.add_argument('--single-iters', type=int, help='iterations of each single-scale model '
                        '(default: a third of --iters, the same total budget)')
    parser.add_argument('--eval-every', type=int, default=0, help='score Set5 every this many iterations '
                        '(0: only at the end)')
    parser.add_argument('--gains', type=float, nargs='+', default=[0.5, 1.0],
                        help='targets of the iteration count: bicubic + these dB (and the lower final PSNR)')
    parser.add_argument('--upsampler', choices=['igconv', 'igconv_plus'], default='igconv_plus')
    parser.add_argument('--host', choices=['edsr', 'smfanet'], default='edsr')
    parser.add_argument('--skip-single', action='store_true', help='train only the multi-scale model')
    parser.add_argument('--raw-weights', action='store_true', help='score the raw weights, not the EMA (0.99: '
                        'about 100 iterations behind, a lag the three single-scale runs would pay three times)')
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: srkit chooses)')
    parser.add_argument('--shared', type=Path, default=Path(__file__).resolve().parents[2] / 'shared')
    args = parser.parse_args()
    single_iters = args.single_iters or args.iters // len(SCALES)
    setup_logger(None, is_main=True)
    igconv, singles = networks(args.host, args.upsampler)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        common = (args.eval_every, args.threads, args.raw_weights)
        multi = train(train_options('igconv', root, args.shared, args.iters, igconv, 2, True, *common))
        single = {s: train(train_options(f'single_x{s}', root, args.shared, single_iters, singles[s], s, False,
                                         *common))
                  for s in (SCALES if not args.skip_single else ())}
    bicubic = {s: bicubic_psnr(args.shared, s) for s in SCALES}
    three = sum(stored_params(singles[s], s, False) for s in SCALES)
    one = stored_params(igconv, 2, True)
    label = f'{args.host}-{args.upsampler}'
    print(f'\nStored parameters: one {igconv["type"]} {one:,}; three single-scale {three:,} ({one / three:.2f}x)')
    weights = 'raw weights' if args.raw_weights else 'EMA weights'
    print(f'\nSet5 PSNR (Y, {weights}), {args.iters} iterations of one {label}, {single_iters} of each '
          f'single-scale {args.host}')
    print(f'| scale | bicubic | one {label} | three {args.host} (one per scale) | difference |')
    print('|---|---|---|---|---|')
    final = multi[max(multi)]
    for s in SCALES:
        other = single[s][max(single[s])][s] if s in single else math.nan
        print(f'| x{s} | {bicubic[s]:.2f} | {final[s]:.2f} | {other:.2f} | {final[s] - other:+.2f} |')
    if args.eval_every:
        print(f'\nSet5 PSNR every {args.eval_every} iterations')
        print('\n'.join(curve_table(multi, single, label, args.host)))
        if single:
            print('\nIterations to reach each target (first validation at or above it)')
            print('\n'.join(budget_table(multi, single, bicubic, args.gains)))


if __name__ == '__main__':
    main()
