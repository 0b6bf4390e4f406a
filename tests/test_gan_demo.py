"""The GAN demo's option files (docs/GAN.md): they parse, say what the docs say, chain onto the demo's network,
two iterations of the training file train network_d and save it, and the validation photographs fit NIQE.
The full fine-tuning and its figures are in docs/GAN.md, not repeated here."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from srkit.config.options import apply_overrides, load_yaml, parse_options
from srkit.core.checkpoint import load_checkpoint_file
from srkit.core.dist import DistContext
from srkit.data.demo_dataset import prepare_demo_images
from srkit.data.image_io import read_image
from srkit.engine.trainer import Trainer
from srkit.metrics.niqe import BLOCK_SIZE

REPO = Path(__file__).resolve().parents[1]
GAN_TRAIN = REPO / 'options/train/Demo/train_EDSR_tiny_x2_gan_demo.yml'
GAN_TEST = REPO / 'options/test/Demo/test_EDSR_tiny_x2_gan_demo.yml'
DEMO_TRAIN = REPO / 'options/train/Demo/train_EDSR_tiny_x2_demo.yml'
GAN_DOC = REPO / 'docs/GAN.md'


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory) -> Path:
    """The demo photographs, prepared once for the module (scikit-image ships them)."""
    return prepare_demo_images(tmp_path_factory.mktemp('demo'))


def test_option_files_parse_and_chain_demo_to_gan_to_test():
    train = parse_options(load_yaml(GAN_TRAIN), is_train=True, source=str(GAN_TRAIN))
    test = parse_options(load_yaml(GAN_TEST), is_train=False, source=str(GAN_TEST))
    demo_name = load_yaml(DEMO_TRAIN)['name']
    assert train.model_type == 'SRGANModel'
    assert train.path.pretrain_network_g == f'experiments/{demo_name}/models/net_g_latest.pth'
    assert test.path.pretrain_network_g == f'experiments/{train.name}/models/net_g_latest.pth'
    assert train.path.param_key_g == test.path.param_key_g == 'params_ema'
    assert load_yaml(GAN_TRAIN)['network_g'] == load_yaml(GAN_TEST)['network_g'] == load_yaml(DEMO_TRAIN)['network_g']
    for options in (train, test):
        assert {'psnr', 'ssim', 'niqe'} <= options.val.metrics.keys()


def test_docs_state_the_discriminator_and_adversarial_loss_of_the_file():
    data = load_yaml(GAN_TRAIN)
    net_d, gan = data['network_d'], data['train']['gan_opt']
    doc = GAN_DOC.read_text(encoding='utf-8')
    assert f'{net_d["type"]} (num_feat {net_d["num_feat"]})' in doc
    assert f'{gan["type"]} ({gan["gan_type"]}, loss_weight {gan["loss_weight"]})' in doc
    assert f'total_iter {data["train"]["total_iter"]}' in doc


def test_two_iterations_of_the_gan_demo_train_both_networks(tmp_path, demo_root):
    data = apply_overrides(load_yaml(GAN_TRAIN), [
        'train.total_iter=2', 'train.net_d_init_iters=0', 'val.val_freq=2', 'logger.save_checkpoint_freq=2',
        'logger.print_freq=1', 'logger.use_tb_logger=false', 'path.pretrain_network_g=null',
        f'path.experiments_root={tmp_path / "exp"}', f'datasets.train.root={demo_root}',
        'datasets.train.batch_size_per_gpu=2'])
    del data['datasets']['val'], data['val']  # validation on the whole photographs would dominate the test
    trainer = Trainer(parse_options(data, is_train=True, source=str(GAN_TRAIN)), DistContext())
    initial_d = {k: v.clone() for k, v in trainer.model.net_d.state_dict().items()}
    trainer.train()
    models = tmp_path / 'exp' / 'models'
    assert {'net_g_2.pth', 'net_d_2.pth', 'net_d_latest.pth'} <= {p.name for p in models.iterdir()}
    saved_d = load_checkpoint_file(models / 'net_d_2.pth')['params']
    assert saved_d.keys() == initial_d.keys()
    assert any(not torch.equal(saved_d[k], initial_d[k]) for k in initial_d), 'network_d did not train'
    log = next((tmp_path / 'exp').glob('train_*.log')).read_text()
    assert 'l_g_gan' in log and 'l_d_fake' in log


@pytest.mark.parametrize('option_file', [GAN_TRAIN, GAN_TEST])
def test_demo_validation_photographs_are_large_enough_for_niqe(option_file, demo_root):
    border = load_yaml(option_file)['val']['metrics']['niqe']['crop_border']
    for path in sorted((demo_root / 'val').glob('*.png')):
        height, width = read_image(path).shape[:2]
        assert min(height, width) - 2 * border >= BLOCK_SIZE, f'{path.name} is {width}x{height}'
