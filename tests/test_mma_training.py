"""MMA option files: the published two-stage recipes (ImageNet pre-training, DF2K fine-tuning) and the
test files parse and say what the official files say, and the CPU-sized MMA_light config trains for real
(T91 from ../shared) in-process: a checkpoint is written and validation gives a finite PSNR."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, shared_path

from srkit.config.options import Options, load_options
from srkit.core.checkpoint import load_checkpoint_file
from srkit.core.dist import DistContext
from srkit.data.image_io import read_image, write_image
from srkit.data.imagenet_paired_dataset import ImageNetPairedDataset
from srkit.data.loader import build_dataset
from srkit.engine.trainer import Trainer

SCALES = (2, 3, 4)
CPU_CONFIG = REPO / 'options/train/MMA/train_MMA_light_x2_T91_cpu.yml'
PUBLISHED_NET = {'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 192, 'num_block': 24, 'img_range': 1.0,
                 'rgb_mean': [0.4488, 0.4371, 0.4040]}


def _recipe(scale: int, stage: str) -> Options:
    return load_options(REPO / f'options/train/MMA/train_MMA_x{scale}_{stage}.yml', is_train=True)


def _check_published_network(options: Options, scale: int) -> None:
    assert options.scale == scale and options.network_g.type == 'MMA'
    assert options.network_g.args == {**PUBLISHED_NET, 'upscale': scale}
    assert all(m.args['crop_border'] == scale for m in options.val.metrics.values())


@pytest.mark.parametrize('scale', SCALES)
def test_pretrain_recipe_is_the_official_imagenet_paired_dataset_on_class_folders(scale: int):
    options = _recipe(scale, 'pretrain')
    _check_published_network(options, scale)
    train = options.datasets['train']
    assert train.type == 'ImageNetPairedDataset'  # the official type: whole-photo LR, then the crop
    assert train.args['dataroot_gt'] == 'datasets/ImageNet/train'  # ImageNet's class folders, not flattened
    assert train.args.get('meta_info_file') is None  # every photo, as officially
    assert train.args['stretch_small_images'] is True  # small photos stretched, as officially
    assert train.args['gt_size'] == 64 * scale  # LR 64x64 at every scale ("input=64x64" in the README)
    assert train.args['use_hflip'] and train.args['use_rot']
    assert train.loader.batch_size_per_gpu == 4  # x 8 GPUs = 32
    assert options.path.pretrain_network_g is None
    t = options.train
    assert (t.optim_g.type, t.optim_g.args['lr'], t.optim_g.args['betas']) == ('Adam', 2e-4, (0.9, 0.99))
    assert t.scheduler.type == 'MultiStepLR' and t.scheduler.args['milestones'][-1] < t.total_iter == 800_000
    assert t.ema_decay == 0.999 and t.pixel_opt.type == 'L1Loss'


@pytest.mark.parametrize('scale', SCALES)
def test_pretrain_recipe_reads_class_folders_and_stretches_a_small_photo(tmp_path: Path, scale: int):
    rng = np.random.default_rng(scale)
    photos = {'n01/small.png': (40, 52), 'n02/large.png': (64 * scale + 5, 64 * scale + 9)}
    for key, shape in photos.items():
        write_image(tmp_path / 'train' / key, rng.integers(0, 256, (*shape, 3), dtype=np.uint8))
    options = load_options(REPO / f'options/train/MMA/train_MMA_x{scale}_pretrain.yml', is_train=True,
                           overrides=[f'datasets.train.dataroot_gt={tmp_path / "train"}'])
    data = build_dataset(options.datasets['train'])
    assert isinstance(data, ImageNetPairedDataset) and data.keys == sorted(photos)
    for index, key in enumerate(data.keys):
        sample = data[(index, 0)]
        assert Path(sample['gt_path']) == tmp_path / 'train' / key  # not skipped: the small one is stretched
        assert sample['gt'].shape == (3, 64 * scale, 64 * scale) and sample['lq'].shape == (3, 64, 64)
        lq = sample['lq']
        assert not torch.equal(lq, torch.round(lq * 255) / 255)  # float LR, never rounded to 8 bits
    assert not data.skipped


@pytest.mark.parametrize('scale', SCALES)
def test_finetune_recipe_loads_the_pretrained_model_of_its_scale(scale: int):
    options, pretrain = _recipe(scale, 'finetune'), _recipe(scale, 'pretrain')
    _check_published_network(options, scale)
    assert options.network_g == pretrain.network_g  # same network: every key must load
    weights = Path(options.path.pretrain_network_g)
    assert weights.parts[:2] == ('experiments', pretrain.name) and options.path.strict_load_g
    assert options.path.param_key_g == 'params_ema'
    train = options.datasets['train']
    assert train.type == 'PairedImageDataset' and f'x{scale}' in train.args['dataroot_lq']
    assert train.args['gt_size'] == pretrain.datasets['train'].args['gt_size']
    t = options.train
    assert t.optim_g.args['lr'] == 1e-5 and t.total_iter == 250_000 and t.ema_decay == 0.999
    assert tuple(t.scheduler.args['milestones']) == (125000, 200000, 225000, 240000)


@pytest.mark.parametrize('scale', SCALES)
def test_test_files_cover_the_five_sets_with_the_placeholder_weights(scale: int):
    options = load_options(REPO / f'options/test/MMA/test_MMA_x{scale}.yml', is_train=False)
    _check_published_network(options, scale)
    assert [d.name for d in options.datasets.values()] == ['Set5', 'Set14', 'BSD100', 'Urban100', 'Manga109']
    for d in options.datasets.values():
        assert d.args['dataroot_gt'] == f'datasets/{d.name}/GTmod12'
        assert d.args['dataroot_lq'] == f'datasets/{d.name}/LRbicx{scale}'
    assert options.path.pretrain_network_g == f'experiments/pretrained_models/MMA/MMA_x{scale}.pth'


def _one_set5_crop(root: Path) -> tuple[Path, Path]:
    """A 64x64 crop of Set5 butterfly (GTmod12) and the matching 32x32 crop of its LRbicx2.

    A whole Set5 image is 16k+ tokens per scan: tens of seconds per validation on one CPU thread.
    """
    set5 = shared_path('data', 'Set5')
    gt_dir, lq_dir = root / 'GT', root / 'LR'
    gt_dir.mkdir(parents=True)
    lq_dir.mkdir()
    write_image(gt_dir / 'butterfly.png', read_image(set5 / 'GTmod12' / 'butterfly.png')[64:128, 64:128])
    write_image(lq_dir / 'butterfly.png', read_image(set5 / 'LRbicx2' / 'butterfly.png')[32:64, 32:64])
    return gt_dir, lq_dir


def test_cpu_config_trains_mma_light_writes_a_checkpoint_and_validates(tmp_path: Path):
    gt_dir, lq_dir = _one_set5_crop(tmp_path / 'val')
    options = load_options(CPU_CONFIG, is_train=True, overrides=[
        f'datasets.train.dataroot_gt={shared_path("data", "T91", "HR")}',
        f'datasets.val.dataroot_gt={gt_dir}', f'datasets.val.dataroot_lq={lq_dir}',
        'datasets.train.gt_size=24', 'datasets.train.batch_size_per_gpu=2',
        f'path.experiments_root={tmp_path / "exp"}', 'train.total_iter=2', 'val.val_freq=2',
        'logger.print_freq=1', 'logger.save_checkpoint_freq=2'])
    assert options.network_g.type == 'MMA_light'
    trainer = Trainer(options, DistContext())
    net = trainer.model.net_g
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    trainer.train()

    moved = [k for k, v in net.named_parameters() if not torch.equal(before[k], v)]
    assert any('A_log' in k for k in moved) and any('A_b_log' in k for k in moved)  # both scans learn
    saved = load_checkpoint_file(tmp_path / 'exp' / 'models' / 'net_g_2.pth')
    assert set(saved) == {'params', 'params_ema'}
    assert torch.equal(saved['params']['body.0.attn.mamba.mamba.A_log'], net.body[0].attn.mamba.mamba.A_log)
    psnr = trainer.state.best['Set5']['psnr'][0]
    assert math.isfinite(psnr) and 0.0 < psnr < 50.0  # ~11 dB: two steps from a random init
