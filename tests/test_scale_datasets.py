"""IGConv's datasets (srkit/data/scale_dataset.py) and MultiScaleModel trained on RandomScaleDownsampleImageDataset
as IGConv's MSRModel files configure it: LR patch fixed, one pair per scale, the official Pillow downscale."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from training_helpers import make_images

from srkit.config.options import parse_options, parse_yaml_text
from srkit.core.dist import DistContext
from srkit.core.errors import OptionError
from srkit.data.image_io import read_image
from srkit.data.scale_dataset import (
    FixedScaleDownsampleImageDataset,
    RandomScaleDownsampleImageDataset,
    pil_bicubic_downscale,
)
from srkit.engine.trainer import Trainer
from srkit.ops.imresize import bicubic_downscale

MSR = '''
name: msr
model_type: MSRModel
scale: 1
manual_seed: 0
datasets:
  train:
    name: t
    type: RandomScaleDownsampleImageDataset
    random_scales: [2, 3, 4]
    dataroot_gt: {root}/hr
    filename_tmpl: '{{}}'
    io_backend: {{type: disk}}
    lq_size: 6
    use_hflip: true
    use_rot: true
    batch_size_per_gpu: 2
    num_worker_per_gpu: 0
  val_1:
    name: v3
    type: FixedScaleDownsampleImageDataset
    dataroot_gt: {root}/hr
    filename_tmpl: '{{}}'
    ds_scale: 3
    io_backend: {{type: disk}}
network_g:
  type: EDSRIGPlus
  num_in_ch: 3
  num_out_ch: 3
  num_feat: 8
  num_block: 1
  upscale: 2
  img_range: 1.
  implicit_dim: 16
  latent_layers: 2
  geo_ensemble: true
  return_skip: true
path:
  experiments_root: {root}/exp
train:
  ema_decay: 0.9
  optim_g: {{type: Adam, lr: !!float 1e-3, betas: [0.9, 0.99]}}
  scheduler: {{type: MultiStepLR, milestones: [100], gamma: 0.5}}
  total_iter: 4
  warmup_iter: -1
  pixel_opt: {{type: L1Loss, loss_weight: 1.0, reduction: mean}}
  fft_opt: {{type: FFTLoss, loss_weight: 0.05, reduction: mean}}
val:
  val_freq: 4
  metrics:
    psnr: {{type: calculate_psnr, test_y_channel: true}}
logger:
  print_freq: 2
  save_checkpoint_freq: 4
  use_tb_logger: false
'''


@pytest.fixture()
def hr_folder(tmp_path: Path) -> Path:
    make_images(tmp_path / 'hr', 3, size=(37, 50))
    return tmp_path / 'hr'


def test_pil_downscale_is_pillows_bicubic_of_the_truncated_image() -> None:
    """IGConv's resize_fn: BasicSR's float32 image (uint8 / 255), then torchvision's ToPILImage, which computes
    ``pic.mul(255).byte()`` in torch (a truncation), then Pillow's bicubic. The torch steps are redone here as
    torchvision runs them: they give back every 8-bit value, so srkit resizes the 8-bit image directly."""
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (24, 36, 3), dtype=np.uint8)
    lr = pil_bicubic_downscale(hr, (8, 12))
    as_float = torch.from_numpy(hr.astype(np.float32) / 255.)  # BasicSR's imfrombytes(float32=True)
    every_value = torch.arange(256, dtype=torch.uint8)
    assert torch.equal((every_value.float() / 255.).mul(255).byte(), every_value)
    to_pil = as_float.mul(255).byte().numpy()
    pil = np.asarray(Image.fromarray(to_pil).resize((12, 8), Image.Resampling.BICUBIC), dtype=np.float32) / 255
    assert lr.shape == (8, 12, 3) and lr.dtype == np.float32 and np.array_equal(lr, pil)
    matlab = bicubic_downscale(hr, 3).astype(np.float32) / 255
    assert 0 < np.abs(lr - matlab).mean() < 2 / 255  # the same kernel family, rounded differently


def test_fixed_scale_downsample_crops_to_a_multiple_of_the_scale(hr_folder: Path) -> None:
    for resize in ('pil', 'matlab'):
        sample = FixedScaleDownsampleImageDataset(str(hr_folder), ds_scale=3, resize=resize, phase='test')[0]
        assert sample['gt'].shape == (3, 36, 48) and sample['lq'].shape == (3, 12, 16)
        hr = read_image(sample['gt_path'])
        assert torch.equal(sample['gt'], torch.from_numpy(hr[:36, :48].astype(np.float32) / 255).permute(2, 0, 1))
    with pytest.raises(OptionError, match='validation and test only'):
        FixedScaleDownsampleImageDataset(str(hr_folder), ds_scale=3, phase='train')


def test_random_scale_samples_carry_one_pair_per_scale_drawn_from_the_key(hr_folder: Path) -> None:
    data = RandomScaleDownsampleImageDataset(str(hr_folder), random_scales=[2, 3, 4], lq_size=6, use_hflip=True,
                                             use_rot=True)
    sample = data[(1, 123)]
    for s in (2, 3, 4):
        assert sample[f'lq_x{s}'].shape == (3, 6, 6) and sample[f'gt_x{s}'].shape == (3, 6 * s, 6 * s)
    again, other = data[(1, 123)], data[(1, 124)]
    assert all(torch.equal(sample[k], again[k]) for k in sample if k != 'gt_path')
    assert not torch.equal(sample['gt_x2'], other['gt_x2'])
    with pytest.raises(OptionError, match='random_scales'):
        RandomScaleDownsampleImageDataset(str(hr_folder), random_scales=[2, 2], lq_size=6)
    with pytest.raises(OptionError, match='training only'):
        RandomScaleDownsampleImageDataset(str(hr_folder), random_scales=[2], lq_size=6, phase='val')


def test_an_msrmodel_file_trains_on_the_pair_of_each_iterations_scale(tmp_path: Path, hr_folder: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    options = parse_options(parse_yaml_text(MSR.format(root=tmp_path)), is_train=True, source='msr.yml')
    assert options.model_type == 'MultiScaleModel'
    assert any('MSRModel' in notice for notice in options.notices)
    trainer = Trainer(options, DistContext())
    model = trainer.model
    assert model.scales == [2, 3, 4]
    seen: list[tuple[int, tuple[int, ...], tuple[int, ...]]] = []
    real = model.train_net

    def recording(lq: torch.Tensor, scale: int) -> object:
        out = real(lq, scale)
        assert isinstance(out, tuple)  # return_skip: (image, skip), scored on the image
        seen.append((scale, tuple(lq.shape), tuple(out[0].shape)))
        return out

    monkeypatch.setattr(model, 'train_net', recording)
    trainer.train()
    assert [s for s, _, _ in seen] == [model.scale_at(i) for i in range(1, 5)]
    for scale, lq_shape, out_shape in seen:
        assert lq_shape == (2, 3, 6, 6) and out_shape == (2, 3, 6 * scale, 6 * scale)


def test_train_scales_and_random_scales_must_agree(tmp_path: Path, hr_folder: Path) -> None:
    data = parse_yaml_text(MSR.format(root=tmp_path))
    data['train']['scales'] = [2, 4]
    with pytest.raises(OptionError, match='disagree'):
        Trainer(parse_options(data, is_train=True, source='msr.yml'), DistContext())
