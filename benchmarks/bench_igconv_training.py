"""One IGConv+ model for x2/x3/x4 vs three single-scale models of its host, same total iterations, short CPU
training on T91; Set5 PSNR at each scale side by side, and the stored parameters of each side (the IGConv
paper's claim that one model replaces three at a third of the training budget each).

Hosts: ``edsr`` (srkit's IGConvSR on EDSR-baseline) and ``smfanet`` (the authors' SMFANetIGPlus against
SMFANet, both as IGConv's and SMFANet's option files build them).

    python benchmarks/bench_igconv_training.py --iters 600 --shared ../shared [--host smfanet]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from srkit.config.options import parse_options  # noqa: E402
from srkit.core.dist import DistContext  # noqa: E402
from srkit.core.logger import setup_logger  # noqa: E402
from srkit.engine.tester import run_test  # noqa: E402
from srkit.engine.trainer import Trainer  # noqa: E402

SCALES = (2, 3, 4)


def train_options(name: str, root: Path, shared: Path, iters: int, network: dict, scale: int,
                  multi: bool) -> dict:
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
    return {'name': name, 'model_type': 'MultiScaleModel' if multi else 'SRModel', 'scale': scale,
            'manual_seed': 0, 'datasets': {'train': dataset}, 'network_g': network,
            'path': {'experiments_root': str(root / name)}, 'train': train,
            'logger': {'print_freq': max(1, iters // 4), 'save_checkpoint_freq': iters, 'use_tb_logger': False}}


def evaluate(name: str, root: Path, shared: Path, network: dict, scales: tuple[int, ...], multi: bool) -> dict:
    datasets = {f'test_{s}': {'name': f'Set5_x{s}', 'type': 'PairedImageDataset',
                              'dataroot_gt': str(shared / 'data/Set5/GTmod12'),
                              'dataroot_lq': str(shared / f'data/Set5/LRbicx{s}'), **({'scale': s} if multi else {})}
                for s in scales}
    options = parse_options({
        'name': name, 'model_type': 'MultiScaleModel' if multi else 'SRModel', 'scale': scales[0],
        'datasets': datasets, 'network_g': network,
        'path': {'pretrain_network_g': str(root / name / 'models' / 'net_g_latest.pth'), 'param_key_g': 'params_ema',
                 'results_root': str(root / f'results_{name}')},
        'val': {'pbar': False, 'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': scales[0],
                                                    'test_y_channel': True}}}}, is_train=False)
    return {int(r.dataset.split('_x')[1]): r.mean['psnr'] for r in run_test(options)}


def networks(host: str, upsampler: str) -> tuple[dict, dict[int, dict]]:
    """(the multi-scale network, the single-scale network of each scale) as network_g mappings (the scale
    argument is filled in from the run's scale)."""
    if host == 'smfanet':
        multi = {'type': 'SMFANetIGPlus' if upsampler == 'igconv_plus' else 'SMFANetIG'}
        return multi, {s: {'type': 'SMFANet'} for s in SCALES}
    multi = {'type': 'IGConvSR', 'upsampler': upsampler, 'encoder': {'type': 'EDSR_baseline'}}
    return multi, {s: {'type': 'EDSR_baseline'} for s in SCALES}


def stored_params(network: dict, scale: int, multi: bool) -> int:
    from srkit.archs import create

    args = {k: v for k, v in network.items() if k != 'type'}
    net = create(network['type'], **args) if multi else create(network['type'], scale, **args)
    return sum(v.numel() for v in net.state_dict().values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--iters', type=int, default=600, help='total iterations for each side')
    parser.add_argument('--upsampler', choices=['igconv', 'igconv_plus'], default='igconv_plus')
    parser.add_argument('--host', choices=['edsr', 'smfanet'], default='edsr')
    parser.add_argument('--skip-single', action='store_true', help='train only the multi-scale model')
    parser.add_argument('--shared', type=Path, default=Path(__file__).resolve().parents[2] / 'shared')
    args = parser.parse_args()
    setup_logger(None, is_main=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        igconv, singles = networks(args.host, args.upsampler)
        Trainer(parse_options(train_options('igconv', root, args.shared, args.iters, igconv, 2, True),
                              is_train=True), DistContext()).train()
        multi = evaluate('igconv', root, args.shared, igconv, SCALES, True)
        single = {}
        for s in SCALES if not args.skip_single else ():
            net = singles[s]
            Trainer(parse_options(train_options(f'single_x{s}', root, args.shared, args.iters // len(SCALES), net, s,
                                                False), is_train=True), DistContext()).train()
            single[s] = evaluate(f'single_x{s}', root, args.shared, net, (s,), False)[s]
    three = sum(stored_params(singles[s], s, False) for s in SCALES)
    one = stored_params(igconv, 2, True)
    print(f'\nStored parameters: one {igconv["type"]} {one:,}; three single-scale {three:,} ({one / three:.2f}x)')
    print(f'\nSet5 PSNR (Y), {args.iters} iterations for each side, host {args.host}')
    print(f'| scale | one {args.host}-{args.upsampler} | three {args.host} (one per scale) | difference |')
    print('|---|---|---|---|')
    for s in SCALES:
        other = single.get(s, float('nan'))
        print(f'| x{s} | {multi[s]:.2f} | {other:.2f} | {multi[s] - other:+.2f} |')


if __name__ == '__main__':
    main()
