"""SRGANModel, RealESRNetModel and RealESRGANModel: what one iteration updates, the files a run writes, exact
resume, and the option mistakes refused before training starts."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from srkit.config.options import apply_overrides, parse_options, parse_yaml_text
from srkit.core.checkpoint import load_checkpoint_file
from srkit.core.dist import DistContext
from srkit.core.errors import OptionError
from srkit.engine.trainer import Trainer
from tests.training_helpers import make_images, tiny_options

GAN = '''
name: gan
model_type: SRGANModel
scale: 2
manual_seed: 5
datasets:
  train:
    name: tiny
    type: HRBicubicDataset
    dataroot_gt: {root}/hr
    gt_size: 16
    use_hflip: true
    batch_size_per_gpu: 2
network_g: {{type: EDSR, num_feat: 8, num_block: 1}}
network_d: {{type: UNetDiscriminatorSN, num_in_ch: 3, num_feat: 4}}
path:
  experiments_root: {root}/exp
train:
  ema_decay: 0.9
  optim_g: {{type: Adam, lr: 0.001, betas: [0.9, 0.99]}}
  optim_d: {{type: Adam, lr: 0.001, betas: [0.9, 0.99]}}
  scheduler: {{type: MultiStepLR, milestones: [3], gamma: 0.5}}
  total_iter: 6
  pixel_opt: {{type: L1Loss, loss_weight: 1.0}}
  ldl_opt: {{type: L1Loss, loss_weight: 1.0}}
  gan_opt: {{type: GANLoss, gan_type: vanilla, loss_weight: 0.1}}
logger:
  print_freq: 1
  save_checkpoint_freq: 3
  use_tb_logger: false
'''

REAL_ESRGAN_KEYS = '''
resize_prob: [0.2, 0.7, 0.1]
resize_range: [0.5, 1.5]
gaussian_noise_prob: 0.5
noise_range: [1, 30]
poisson_scale_range: [0.05, 3]
gray_noise_prob: 0.4
jpeg_range: [30, 95]
second_blur_prob: 0.8
resize_prob2: [0.3, 0.4, 0.3]
resize_range2: [0.5, 1.2]
gaussian_noise_prob2: 0.5
noise_range2: [1, 25]
poisson_scale_range2: [0.05, 2.5]
gray_noise_prob2: 0.4
jpeg_range2: [30, 95]
gt_size: 32
queue_size: 4
'''

KERNELS = {'blur_kernel_size': 7, 'kernel_list': ['iso', 'aniso', 'generalized_iso', 'plateau_aniso'],
           'kernel_prob': [0.4, 0.3, 0.2, 0.1], 'sinc_prob': 0.1, 'blur_sigma': [0.2, 3], 'betag_range': [0.5, 4],
           'betap_range': [1, 2], 'blur_kernel_size2': 7, 'kernel_list2': ['iso', 'aniso'], 'kernel_prob2': [0.5, 0.5],
           'sinc_prob2': 0.1, 'blur_sigma2': [0.2, 1.5], 'betag_range2': [0.5, 4], 'betap_range2': [1, 2],
           'final_sinc_prob': 0.8}


def gan_data(root: Path, overrides: list[str] | None = None, model_type: str = 'SRGANModel') -> dict:
    if not (root / 'hr').exists():
        make_images(root / 'hr', 4)
    data = parse_yaml_text(GAN.format(root=root))
    if model_type != 'SRGANModel':
        data.update(parse_yaml_text(REAL_ESRGAN_KEYS), model_type=model_type)
        data['datasets']['train'] = {'name': 'tiny', 'type': 'RealESRGANDataset', 'dataroot_gt': str(root / 'hr'),
                                     'use_hflip': True, 'batch_size_per_gpu': 2, **KERNELS}
        if model_type == 'RealESRNetModel':
            data.pop('network_d')
            for key in ('optim_d', 'gan_opt', 'ldl_opt'):
                data['train'].pop(key)
    return apply_overrides(data, overrides or [])


def train(data: dict, **trainer_args) -> Trainer:
    trainer = Trainer(parse_options(data, is_train=True, source='gan.yml'), DistContext(), **trainer_args)
    trainer.train()
    return trainer


def models_of(root: Path, iteration: int) -> dict[str, dict[str, torch.Tensor]]:
    return {name: load_checkpoint_file(root / 'exp' / 'models' / f'{name}_{iteration}.pth')['params']
            for name in ('net_g', 'net_d') if (root / 'exp' / 'models' / f'{name}_{iteration}.pth').exists()}


def assert_same(a: dict[str, dict[str, torch.Tensor]], b: dict[str, dict[str, torch.Tensor]]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert all(torch.equal(a[name][k], b[name][k]) for k in a[name]), f'{name} differs after resuming'


def resumed_equals_straight(tmp_path: Path, model_type: str) -> None:
    straight = train(gan_data(tmp_path / 'a', model_type=model_type))
    train(gan_data(tmp_path / 'b', [f'path.resume_state={tmp_path / "a" / "exp" / "training_states" / "3.state"}'],
                   model_type=model_type))
    assert_same(models_of(tmp_path / 'a', 6), models_of(tmp_path / 'b', 6))
    assert straight.state.iteration == 6


def test_srgan_step_updates_both_networks_and_resumes_exactly(tmp_path):
    resumed_equals_straight(tmp_path, 'SRGANModel')
    saved = models_of(tmp_path / 'a', 3)
    assert {'conv1.weight_orig', 'conv1.weight_u', 'conv1.weight_v'} <= saved['net_d'].keys()  # Real-ESRGAN's keys
    final = models_of(tmp_path / 'a', 6)
    for name in ('net_g', 'net_d'):
        assert any(not torch.equal(saved[name][k], final[name][k]) for k in saved[name]), f'{name} did not train'
    log = next((tmp_path / 'a' / 'exp').glob('train_gan_*.log')).read_text()
    for term in ('l_g_pixel', 'l_g_ldl', 'l_g_gan', 'l_d_real', 'l_d_fake', 'out_d_real', 'out_d_fake'):
        assert term in log


def test_net_d_init_iters_train_only_the_discriminator(tmp_path):
    data = gan_data(tmp_path, ['train.net_d_init_iters=3', 'train.total_iter=3', 'train.ema_decay=0',
                               'train.ldl_opt=null'])
    trainer = Trainer(parse_options(data, is_train=True), DistContext())
    before_g = {k: v.clone() for k, v in trainer.model.net_g.state_dict().items()}
    before_d = {k: v.clone() for k, v in trainer.model.net_d.state_dict().items()}
    trainer.train()
    assert all(torch.equal(before_g[k], v) for k, v in trainer.model.net_g.state_dict().items())
    assert any(not torch.equal(before_d[k], v) for k, v in trainer.model.net_d.state_dict().items())


@pytest.mark.parametrize('model_type', ['RealESRNetModel', 'RealESRGANModel'])
def test_real_esrgan_models_degrade_on_the_fly_and_resume_exactly(tmp_path, model_type):
    resumed_equals_straight(tmp_path, model_type)
    state = load_checkpoint_file(tmp_path / 'a' / 'exp' / 'training_states' / '6.state')
    pool = state['degradation']['pool']
    assert pool['filled'] == 4  # the queue of 4 pairs filled by the first two batches
    # exact 8-bit images are saved as uint8 (and resumed exactly, above); Real-ESRNet's sharpened GT is not 8-bit
    assert pool['lq'].dtype == torch.uint8
    assert pool['gt'].dtype == (torch.float32 if model_type == 'RealESRNetModel' else torch.uint8)


def test_real_esrgan_batch_is_degraded_cropped_and_sharpened(tmp_path):
    data = gan_data(tmp_path, model_type='RealESRGANModel')
    trainer = Trainer(parse_options(data, is_train=True), DistContext())
    model = trainer.model
    sample = next(iter(trainer.train_loader))
    batch = model.prepare_batch(model.to_device(sample))
    assert batch['gt'].shape == (2, 3, 32, 32) and batch['lq'].shape == (2, 3, 16, 16)
    assert torch.equal(batch['lq'], (batch['lq'] * 255).round() / 255)  # 8-bit levels, as saved LR images are
    assert not torch.equal(batch['gt_usm'], batch['gt'])
    gt_targets = model.generator_targets(batch)  # the EIMN file's l1/percep on the sharpened GT, the GAN on the plain
    assert gt_targets[0] is batch['gt_usm'] and gt_targets[2] is batch['gt']


@pytest.mark.parametrize('override, key, message', [
    (['network_d.type=VGGStyleDiscriminator', 'network_d.num_feat=4', 'network_d.input_size=128'], 'network_d',
     '128'),
    (['network_d=null'], 'network_d', 'is required'),
    (['train.ldl_opt={type: L1Loss}', 'train.ema_decay=0'], 'train.ldl_opt', 'ema_decay'),
    (['train.grad_accumulation=2'], 'train.grad_accumulation', 'must be 1'),
    (['network_d.type=EDSR'], 'network_d.type', 'not a discriminator'),
    (['train.gan_opt={type: L1Loss}'], 'train.gan_opt', 'compares images'),
])
def test_gan_option_mistakes_are_refused_before_training(tmp_path, override, key, message):
    with pytest.raises(OptionError, match=message) as caught:
        Trainer(parse_options(gan_data(tmp_path, override), is_train=True), DistContext())
    assert caught.value.key == key


def test_an_adversarial_loss_among_an_sr_models_pixel_losses_is_refused(tmp_path):
    with pytest.raises(OptionError, match='scores a discriminator.*gan_opt" of a GAN model') as caught:
        tiny_options(tmp_path, ['train.pixel_opt={type: GANLoss, gan_type: vanilla}'])
    assert caught.value.key == 'train.pixel_opt'


def test_a_discriminator_on_an_sr_model_and_bad_degradation_values_are_refused(tmp_path):
    data = gan_data(tmp_path, ['model_type=SRModel'])
    with pytest.raises(OptionError, match='trains no discriminator') as caught:
        parse_options(data, is_train=True)
    assert caught.value.key == 'network_d'
    for key, value in (('resize_prob', [0.5, 0.5]), ('jpeg_range', [95, 30]), ('queue_size', 3)):
        data = gan_data(tmp_path, [f'{key}={value}'], model_type='RealESRGANModel')
        with pytest.raises(OptionError) as caught:
            Trainer(parse_options(data, is_train=True), DistContext())
        assert caught.value.key == key, caught.value


def test_esrgan_uses_the_relativistic_average_gan_of_basicsr(tmp_path):
    """ESRGANModel's terms are BasicSR's formulas on network_d's predictions (here the same network_d, called
    again on the same inputs, in eval mode so that its outputs do not change between calls)."""
    data = gan_data(tmp_path, ['model_type=ESRGANModel', 'train.ldl_opt=null'])
    model = Trainer(parse_options(data, is_train=True), DistContext()).model
    model.net_d.eval()
    gan = model.gan_loss
    torch.manual_seed(0)
    output, gt = torch.rand(2, 3, 16, 16, requires_grad=True), torch.rand(2, 3, 16, 16)
    real, fake = model.net_d(gt), model.net_d(output)
    expected_g = (gan(real - fake.mean(), False) + gan(fake - real.mean(), True)) / 2
    assert torch.allclose(model.adversarial_term(output, gt), expected_g)
    terms, _, _ = model.discriminator_terms(output, gt)
    assert torch.allclose(terms['l_d_real'], gan(real - fake.mean(), True, is_disc=True) * 0.5)
    assert torch.allclose(terms['l_d_fake'], gan(fake - real.mean(), False, is_disc=True) * 0.5)
    assert all(p.grad is not None for p in model.net_d.parameters())  # both terms were backpropagated


def test_esrgan_trains_and_resumes_exactly(tmp_path):
    overrides = ['model_type=ESRGANModel', 'train.ldl_opt=null']
    train(gan_data(tmp_path / 'a', overrides))
    train(gan_data(tmp_path / 'b', [*overrides,
                                    f'path.resume_state={tmp_path / "a" / "exp" / "training_states" / "3.state"}']))
    assert_same(models_of(tmp_path / 'a', 6), models_of(tmp_path / 'b', 6))


def test_real_esrgan_without_high_order_degradation_trains_on_the_sets_pairs(tmp_path):
    """Real-ESRGAN's finetune-on-pairs recipe: high_order_degradation false, a paired set, no top-level gt_size."""
    data = gan_data(tmp_path, ['train.total_iter=2', 'high_order_degradation=false', 'gt_size=null'],
                    model_type='RealESRGANModel')
    data['datasets']['train'] = {'name': 'pairs', 'type': 'HRBicubicDataset', 'dataroot_gt': str(tmp_path / 'hr'),
                                 'gt_size': 32, 'batch_size_per_gpu': 2}
    trainer = Trainer(parse_options(data, is_train=True), DistContext())
    batch = trainer.model.prepare_batch(trainer.model.to_device(next(iter(trainer.train_loader))))
    assert batch['lq'].shape == (2, 3, 16, 16) and batch['gt_usm'].shape == (2, 3, 32, 32)
    trainer.train()
    assert (tmp_path / 'exp' / 'models' / 'net_d_latest.pth').is_file()
    with pytest.raises(OptionError, match='"gt_size" is required') as caught:
        parse_options(gan_data(tmp_path, ['gt_size=null'], model_type='RealESRGANModel'), is_train=True)
    assert caught.value.key == 'gt_size'
    data['datasets']['train']['gt_size'] = 16
    with pytest.raises(OptionError, match='16x16.*USM') as caught:
        Trainer(parse_options(data, is_train=True), DistContext())
    assert caught.value.key == 'gt_size'


def test_a_test_file_of_a_real_esrgan_model_needs_no_degradation_keys(tmp_path):
    """test.py reads none of Real-ESRGAN's training keys (BasicSR's test files for these models have none)."""
    from srkit.core.registry import MODEL_REGISTRY

    data = gan_data(tmp_path, model_type='RealESRGANModel')
    for key in parse_yaml_text(REAL_ESRGAN_KEYS):
        data.pop(key)
    data.pop('train')
    data['datasets'] = {'test_1': {'name': 'tiny', 'type': 'HRBicubicDataset', 'dataroot_gt': str(tmp_path / 'hr')}}
    options = parse_options(data, is_train=False)
    model = MODEL_REGISTRY.get('RealESRGANModel')(options, torch.device('cpu'))
    assert model.predict(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)
    data['train'] = gan_data(tmp_path)['train']
    with pytest.raises(OptionError, match='"gt_size" is required') as caught:
        parse_options(data, is_train=True)
    assert caught.value.key == 'gt_size'
