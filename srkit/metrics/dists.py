"""DISTS (Ding et al., TPAMI 2020) as dingkeyan93/DISTS computes it (DISTS_pytorch): lower is better.

The image itself and the five stages of a VGG16 (torchvision's ImageNet weights, ImageNet-normalised input
in [0, 1], max pooling replaced by a Hann-windowed L2 pooling) are compared channel by channel: a "texture"
term on the channel means and a "structure" term on their variances and covariance, both SSIM-like with
constants 1e-6, weighted by the learned alpha (texture) and beta (structure), normalised to sum to 1. The
score is 1 minus that weighted similarity. Images are scored at full resolution (the authors' demo first
shrinks them to 256 pixels on the short side; the metric itself does not). It registers as lower-is-better,
e.g. ``val.metrics.dists: {type: dists, weights: weights.pt, backbone_weights: vgg16-397923af.pth}``.
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from srkit.core.errors import CheckpointError
from srkit.core.registry import METRIC_REGISTRY
from srkit.metrics._backbones import VGG16Stages, image_pair, load_state_dict, required_files

__all__ = ['L2Pooling', 'calculate_dists']

_CHANNELS = (3, 64, 128, 256, 512, 512)  # the image, then the five VGG16 stages
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_C = 1e-6


class L2Pooling(nn.Module):
    """Stride-2 pooling of the square root of a Hann-weighted local mean of x^2: it aliases far less than max
    pooling, so the stage statistics DISTS compares barely move when the image shifts by a pixel."""

    window: Tensor  # buffer, registered in __init__

    def __init__(self) -> None:
        super().__init__()
        taps = torch.tensor([0.5, 1.0, 0.5])  # np.hanning(5) without its zero ends
        window = taps[:, None] * taps[None, :]
        self.register_buffer('window', (window / window.sum()).view(1, 1, 3, 3))

    def forward(self, x: Tensor) -> Tensor:
        channels = x.shape[1]
        out = F.conv2d(x.square(), self.window.expand(channels, 1, 3, 3), stride=2, padding=1, groups=channels)
        return (out + 1e-12).sqrt()


class _DISTS(nn.Module):
    mean: Tensor  # buffers, registered in __init__
    std: Tensor
    alpha: Tensor
    beta: Tensor

    def __init__(self, stages: VGG16Stages, alpha: Tensor, beta: Tensor) -> None:
        super().__init__()
        self.stages = stages
        total = alpha.sum() + beta.sum()
        self.register_buffer('alpha', alpha / total)
        self.register_buffer('beta', beta / total)
        self.register_buffer('mean', torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer('std', torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))

    def _features(self, x: Tensor) -> list[Tensor]:
        return [x, *self.stages((x - self.mean) / self.std)]

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Per-image DISTS (N,) of two batches in [0, 1]."""
        similarity = a.new_zeros(a.shape[0])
        for fa, fb, alpha, beta in zip(self._features(a), self._features(b), self.alpha.split(_CHANNELS),
                                       self.beta.split(_CHANNELS)):
            mean_a, mean_b = fa.mean(dim=(2, 3), keepdim=True), fb.mean(dim=(2, 3), keepdim=True)
            var_a = (fa - mean_a).square().mean(dim=(2, 3))
            var_b = (fb - mean_b).square().mean(dim=(2, 3))
            cov = (fa * fb).mean(dim=(2, 3)) - (mean_a * mean_b).flatten(1)
            mean_a, mean_b = mean_a.flatten(1), mean_b.flatten(1)
            texture = (2 * mean_a * mean_b + _C) / (mean_a.square() + mean_b.square() + _C)
            structure = (2 * cov + _C) / (var_a + var_b + _C)
            similarity += texture @ alpha + structure @ beta
        return 1 - similarity


def _alpha_beta(path: Path) -> tuple[Tensor, Tensor]:
    state = load_state_dict(path)
    total = sum(_CHANNELS)
    values = []
    for name in ('alpha', 'beta'):
        tensor = state.get(name)
        if tensor is None or tensor.numel() != total:
            found = 'missing' if tensor is None else f'of shape {tuple(tensor.shape)}'
            raise CheckpointError(f'DISTS: weights must be the authors\' weights.pt ("alpha" and "beta" with {total} '
                                  f'values each), but "{name}" is {found}.', file=str(path))
        values.append(tensor.reshape(total).float())
    return values[0], values[1]


@functools.lru_cache(maxsize=4)
def _network(weights: Path, backbone: Path, device: torch.device) -> _DISTS:
    return _DISTS(VGG16Stages(backbone, 'DISTS', pool=L2Pooling), *_alpha_beta(weights)).to(device)


@METRIC_REGISTRY.register(aliases=('dists',), meta={'better': 'lower'})
def calculate_dists(sr: Tensor, gt: Tensor, crop_border: int = 0, weights: str | None = None,
                    backbone_weights: str | None = None) -> Tensor:
    """DISTS of each image of two NCHW batches in [0, 255]: float64 tensor (N,), about 0 when identical.

    ``weights``: the authors' alpha/beta file (weights.pt); ``backbone_weights``: torchvision's ImageNet
    vgg16 state-dict file. Computed in float32, as the authors do.
    """
    weights_path, backbone_path = required_files(
        'DISTS', weights, 'the DISTS alpha/beta file weights.pt (DISTS_pytorch/weights.pt in '
        'github.com/dingkeyan93/DISTS, also in the pip package DISTS_pytorch)', backbone_weights, 'vgg16')
    a, b = image_pair(sr, gt, crop_border, 1, 'DISTS')
    model = _network(weights_path, backbone_path, sr.device)
    with torch.no_grad():
        return model((a / 255).float(), (b / 255).float()).to(torch.float64)
