"""Small real-data training set-ups shared by the training tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from srkit.config.options import Options, apply_overrides, parse_options, parse_yaml_text
from srkit.data.image_io import write_image

TINY_TRAIN = '''
name: tiny
model_type: SRModel
scale: 2
manual_seed: 7
datasets:
  train:
    name: tiny_train
    type: HRBicubicDataset
    dataroot_gt: {root}/hr
    gt_size: 16
    use_hflip: true
    use_rot: true
    batch_size_per_gpu: 2
    num_worker_per_gpu: 0
    dataset_enlarge_ratio: 3
  val:
    name: tiny_val
    type: HRBicubicDataset
    dataroot_gt: {root}/val
network_g:
  type: EDSR
  num_feat: 8
  num_block: 1
  upscale: 2
path:
  experiments_root: {root}/exp
train:
  ema_decay: 0.9
  optim_g: {{type: Adam, lr: 0.002, betas: [0.9, 0.99]}}
  scheduler: {{type: CosineAnnealingRestartLR, periods: [12], eta_min: 0.0001}}
  total_iter: 12
  warmup_iter: 3
  grad_accumulation: 2
  pixel_opt: {{type: L1Loss, loss_weight: 1.0}}
val:
  val_freq: 6
  metrics:
    psnr: {{type: calculate_psnr, crop_border: 2, test_y_channel: true}}
logger:
  print_freq: 2
  save_checkpoint_freq: 4
  use_tb_logger: false
'''


def make_images(folder: Path, count: int, size: tuple[int, int] = (36, 48), seed: int = 0) -> None:
    """Smooth random photographs-like images (low-frequency noise), so bicubic is a fair baseline."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        coarse = rng.uniform(0, 255, (size[0] // 6 + 1, size[1] // 6 + 1, 3))
        img = np.kron(coarse, np.ones((6, 6, 1)))[:size[0], :size[1]]
        img = img + rng.normal(0, 6, img.shape)
        write_image(folder / f'img{i:02d}.png', np.clip(img, 0, 255).astype(np.uint8))


def tiny_options(root: Path, overrides: list[str] | None = None, is_train: bool = True) -> Options:
    if not (root / 'hr').exists():
        make_images(root / 'hr', 4)
        make_images(root / 'val', 2, seed=1)
    data = apply_overrides(parse_yaml_text(TINY_TRAIN.format(root=root)), overrides or [])
    return parse_options(data, is_train=is_train, source='tiny.yml')
