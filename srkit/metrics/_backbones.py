"""What the learned metrics (LPIPS, DISTS) share: weight files the user gives, the VGG16 they both compare
features of, and the image pair as their networks take it.

srkit never downloads: a learned metric on random weights measures nothing, so a missing file is refused with
a ValueError before anything runs (``check_metrics`` turns it into an OptionError naming the option at start-up).
The one fallback is the file torchvision itself would have downloaded, if it is already in torch's hub cache.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from srkit.core.checkpoint import extract_state_dict, load_checkpoint_file
from srkit.core.errors import CheckpointError
from srkit.core.registry import LOSS_REGISTRY
from srkit.metrics.psnr_ssim import cropped_pair

__all__ = ['TORCHVISION_FILES', 'required_files', 'load_state_dict', 'VGG16Stages', 'image_pair']

# The ImageNet (IMAGENET1K_V1) files torchvision publishes at https://download.pytorch.org/models/<name>.
TORCHVISION_FILES = {'alexnet': 'alexnet-owt-7be5be79.pth', 'vgg16': 'vgg16-397923af.pth'}


def _hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / 'checkpoints'


def required_files(metric: str, weights: str | None, weights_what: str, backbone_weights: str | None,
                   arch: str) -> tuple[Path, Path]:
    """The metric's own weights file and torchvision's ``arch`` file; one ValueError listing every missing one.

    ``weights_what`` says what the metric's file is and where it is published, for the message.
    """
    tv_name = TORCHVISION_FILES[arch]
    problems = []
    weights_path = Path(weights).expanduser() if weights is not None else None
    if weights_path is None or not weights_path.is_file():
        where = 'is not set' if weights_path is None else f'"{weights_path}" is not a file'
        problems.append(f'option weights {where}: it must be {weights_what}')
    cached = _hub_checkpoints() / tv_name
    backbone_path = Path(backbone_weights).expanduser() if backbone_weights is not None else cached
    if not backbone_path.is_file():
        where = 'is not set' if backbone_weights is None else f'"{backbone_path}" is not a file'
        problems.append(f'option backbone_weights {where}: it must be torchvision\'s ImageNet {arch} file '
                        f'{tv_name} (https://download.pytorch.org/models/{tv_name}); set backbone_weights to it or '
                        f'put it in {cached.parent}')
    if problems:
        raise ValueError(f'{metric} needs weight files that srkit never downloads; ' + '; '.join(problems))
    assert weights_path is not None  # a missing one was reported above
    return weights_path.resolve(), backbone_path.resolve()  # absolute: networks are cached by these paths


def load_state_dict(path: Path) -> dict[str, Tensor]:
    """A tensor dict from ``path``, read safely onto the CPU (the authors' LPIPS files were saved from a GPU)."""
    return extract_state_dict(load_checkpoint_file(path), None, str(path))


class VGG16Stages(nn.Module):
    """srkit's VGG16 (the perceptual loss's, filled from torchvision's file) returning the ReLU output that
    closes each of its five blocks, the features LPIPS and DISTS compare.

    It is reached through LOSS_REGISTRY: metrics may not import the losses package (sibling layers).
    ``pool`` makes the layers that replace VGG's max pooling after blocks 1-4 (DISTS's L2 pooling); one
    each, since a module registered twice is visited once.
    """

    STAGE_ENDS = ('relu1_2', 'relu2_2', 'relu3_3', 'relu4_3', 'relu5_3')

    def __init__(self, path: Path, metric: str, pool: Callable[[], nn.Module] | None = None) -> None:
        super().__init__()
        perceptual = LOSS_REGISTRY.get('PerceptualLoss')
        try:
            loss = perceptual(layer_weights={self.STAGE_ENDS[-1]: 1.0}, vgg_type='vgg16', pretrained_path=str(path))
        except CheckpointError as exc:
            raise CheckpointError(f'{metric}: backbone_weights must be torchvision\'s vgg16 file '
                                  f'({TORCHVISION_FILES["vgg16"]}): {exc.message}', file=str(path)) from None
        self.vgg = loss.vgg
        if pool is not None:
            for block in range(1, 5):
                setattr(self.vgg.body, f'pool{block}', pool())

    def forward(self, x: Tensor) -> list[Tensor]:
        out = self.vgg(x, self.STAGE_ENDS)
        return [out[name] for name in self.STAGE_ENDS]


def image_pair(sr: Tensor, gt: Tensor, crop_border: int, min_side: int, metric: str) -> tuple[Tensor, Tensor]:
    """Validated, cropped float64 RGB copies of two NCHW batches (a gray image is scored as gray RGB)."""
    a, b = cropped_pair(sr, gt, crop_border)
    if a.shape[1] not in (1, 3):
        raise ValueError(f'{metric} scores NCHW RGB or gray images, got shape {tuple(sr.shape)}')
    if min(a.shape[-2:]) < min_side:
        raise ValueError(f'{metric} needs images of at least {min_side}x{min_side} pixels after crop_border, '
                         f'got {tuple(a.shape[-2:])}')
    return a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
