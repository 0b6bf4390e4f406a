"""ETDSModel: the dual-stream loss, residual-stream freezing, prediction from the (x + r, r) pair, a short
real training run, and the consistency of the ETDS option files."""
from pathlib import Path

import pytest
import torch
from conftest import REPO, shared_path
from training_helpers import tiny_options

from srkit.archs.etds_arch import ETDS
from srkit.config.options import load_options
from srkit.core.checkpoint import load_checkpoint_file
from srkit.core.dist import DistContext
from srkit.core.errors import OptionError
from srkit.engine.trainer import Trainer
from srkit.models.etds_model import ETDSModel

CPU = torch.device('cpu')
TINY_ETDS = 'network_g={type: ETDS, num_block: 1, num_feat: 6, upscale: 2}'




def etds_options(root: Path, *extra: str, is_train: bool = True):
    """The shared tiny training set-up with the two-stream ETDS and ETDSModel."""
    return tiny_options(root, ['model_type=ETDSModel', TINY_ETDS, 'train.ema_decay=0', *extra], is_train=is_train)


def residual_state(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items() if 'residual' in k}


def test_loss_is_sr_loss_plus_weighted_residual_loss_against_gt(tmp_path):
    options = etds_options(tmp_path, 'train.interpolation_loss_weight=0.25',
                           'train.losses=[{type: MSELoss, loss_weight: 2.0}]')
    model = ETDSModel(options, CPU)
    with torch.no_grad():  # backbone outputs a constant 0.1; the residual stream is nearest upsampling
        model.net_g.conv_last.weight.zero_()
        model.net_g.conv_last.bias.fill_(0.1)
    batch = {'lq': torch.full((2, 3, 4, 4), 0.5), 'gt': torch.full((2, 3, 8, 8), 0.7)}
    terms = {k: float(v.detach()) for k, v in model.compute_losses(batch, 1).items()}
    # x + r = 0.6 and r = 0.5 against gt 0.7: L1 0.1 / 0.2, MSE 0.01 / 0.04; residual terms weighted 0.25
    expected = {'l_pixel': 0.1, 'l_pixel_residual': 0.25 * 0.2, 'l_mse': 2.0 * 0.01,
                'l_mse_residual': 0.25 * 2.0 * 0.04}
    assert terms == pytest.approx(expected, abs=1e-6)


def test_zero_residual_weight_drops_the_residual_terms(tmp_path):
    model = ETDSModel(etds_options(tmp_path, 'train.interpolation_loss_weight=0'), CPU)
    batch = {'lq': torch.rand(1, 3, 4, 4), 'gt': torch.rand(1, 3, 8, 8)}
    assert list(model.compute_losses(batch, 1)) == ['l_pixel']


def test_default_residual_weight_is_one_half(tmp_path):
    assert etds_options(tmp_path).train.interpolation_loss_weight == 0.5


@pytest.mark.parametrize('fixed,frozen_iters', [(3, (1, 2)), (0, ()), (1, ())])
def test_residual_stream_frozen_before_and_trained_from_fixed_iters(tmp_path, fixed, frozen_iters):
    """Frozen while iter < fixed_residual_model_iters; 0 and 1 train it from the start (the official code never
    does: it unfreezes only at iter == fixed, after freezing at iter 1)."""
    model = ETDSModel(etds_options(tmp_path, f'train.fixed_residual_model_iters={fixed}'), CPU)
    generator = torch.Generator().manual_seed(0)
    for it in range(1, 5):
        before = residual_state(model.net_g)
        backbone = model.net_g.conv_first.weight.clone()
        batch = {'lq': torch.rand(2, 3, 6, 6, generator=generator), 'gt': torch.rand(2, 3, 12, 12, generator=generator)}
        model.train_step([batch], it)
        after = residual_state(model.net_g)
        changed = [k for k in before if not torch.equal(before[k], after[k])]
        assert not torch.equal(backbone, model.net_g.conv_first.weight), it
        if it in frozen_iters:
            assert changed == [], f'iteration {it}: residual parameters moved while frozen'
        else:
            assert len(changed) == len(before), f'iteration {it}: residual parameters not all trained'


def test_negative_fixed_iters_is_an_option_error(tmp_path):
    with pytest.raises(OptionError, match='fixed_residual_model_iters'):
        etds_options(tmp_path, 'train.fixed_residual_model_iters=-1')


def test_plain_network_cannot_be_trained_as_etds(tmp_path):
    options = etds_options(tmp_path, 'network_g={type: ETDSForInference_M5C16, upscale: 2}')
    with pytest.raises(OptionError, match='no residual stream'):
        ETDSModel(options, CPU)


@pytest.mark.parametrize('network', [TINY_ETDS, 'network_g={type: ETDSForInference_M5C16, upscale: 2}'])
def test_predict_returns_the_sr_image_of_either_form(tmp_path, network):
    model = ETDSModel(etds_options(tmp_path, network, is_train=False), CPU)
    mode = model.net_g.training
    lq = torch.rand(1, 3, 10, 14)
    out = model.predict(lq, tile=6, overlap=8)  # tiles see the full receptive field: same as one pass
    with torch.no_grad():
        direct = model.net_g(lq)
    expected = direct[0] if isinstance(model.net_g, ETDS) else direct
    assert isinstance(out, torch.Tensor) and torch.allclose(out, expected, atol=1e-5)
    assert model.net_g.training == mode


def test_t91_cpu_config_trains_and_validates_with_the_training_form(tmp_path):
    """A few real iterations of the shipped CPU config; validation on Set5 runs on the (x + r, r) network."""
    set5 = shared_path('data', 'Set5')
    options = load_options(REPO / 'options/train/ETDS/train_ETDS_M4C32_x2_T91_cpu.yml', is_train=True, overrides=[
        f'datasets.train.dataroot_gt={shared_path("data", "T91", "HR")}',
        f'datasets.val.dataroot_gt={set5 / "GTmod12"}', f'datasets.val.dataroot_lq={set5 / "LRbicx2"}',
        f'path.experiments_root={tmp_path / "exp"}', 'train.total_iter=4', 'train.fixed_residual_model_iters=3',
        'datasets.train.batch_size_per_gpu=4', 'val.val_freq=2', 'logger.print_freq=1',
        'logger.save_checkpoint_freq=4'])
    trainer = Trainer(options, DistContext())
    start = residual_state(trainer.model.net_g)
    trainer.train()
    model = trainer.model
    best = trainer.state.best['Set5']
    assert 25.0 < best['psnr'][0] < 45.0 and 0.5 < best['ssim'][0] <= 1.0  # near nearest-neighbour after 4 steps
    assert model.ema.module.training is False and model.net_g.training is True  # validation restored the modes
    trained = residual_state(model.net_g)
    assert any(not torch.equal(start[k], trained[k]) for k in start)  # unfrozen at iteration 3
    saved = load_checkpoint_file(tmp_path / 'exp' / 'models' / 'net_g_latest.pth')
    assert set(saved) == {'params', 'params_ema'} and 'conv_residual_last.weight' in saved['params_ema']


OPTION_FILES = sorted((REPO / 'options').glob('*/ETDS/*.yml'))


@pytest.mark.parametrize('path', OPTION_FILES, ids=[p.name for p in OPTION_FILES])
def test_etds_option_files_agree_with_their_names(path: Path):
    is_train = path.parent.parent.name == 'train'
    options = load_options(path, is_train=is_train)
    stem = path.stem.split('_', 1)[1]  # e.g. ETDS_M6C32_x4, Plain_M6C32_x4, ETDS_M4C32_x2_T91_cpu
    variant, scale = stem.split('_')[1], int(stem.split('_')[2][1:])
    assert options.scale == scale
    assert all(m.args['crop_border'] == scale for m in options.val.metrics.values())
    assert all(f'x{scale}' in str(d.args.get('dataroot_lq', f'x{scale}')).lower() for d in options.datasets.values())
    args = options.network_g.args
    if is_train:
        assert options.model_type == 'ETDSModel'
        assert options.network_g.type == f'ETDS_{variant}' or (args['num_block'], args['num_feat']) == (
            int(variant[1]), int(variant[3:]))
    else:
        assert variant in options.network_g.type and args['upscale'] == scale
        assert Path(options.path.pretrain_network_g).name == f'{stem}.pth'
        assert [d.name for d in options.datasets.values()] == ['Set5', 'Set14', 'BSD100', 'Urban100', 'Manga109']
