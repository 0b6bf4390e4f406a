"""LPIPS (Zhang et al., CVPR 2018), version 0.1 as richzhang/PerceptualSimilarity computes it: lower is better.

Both images go through an ImageNet network (AlexNet or VGG16 features, torchvision's weights) after LPIPS's
scaling layer; at each of five ReLU outputs the features are scaled to unit length across channels, their
squared difference is weighted per channel by the learned 1x1 "lin" layer and averaged over the image, and
the five layer scores are summed. Both weight files come from the user (see ``_backbones``); the networks are
built once per (files, device). It registers as lower-is-better, e.g. ``val.metrics.lpips: {type: lpips,
net: alex, weights: alex.pth, backbone_weights: alexnet-owt-7be5be79.pth}``.
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import Tensor, nn

from srkit.core.errors import CheckpointError
from srkit.core.registry import METRIC_REGISTRY, closest_name
from srkit.metrics._backbones import TORCHVISION_FILES, VGG16Stages, image_pair, load_state_dict, required_files

__all__ = ['AlexNetStages', 'calculate_lpips']

_NETS = {'alex': ('alexnet', (64, 192, 384, 256, 256)), 'vgg': ('vgg16', (64, 128, 256, 512, 512))}
# The smallest side whose features still reach the fifth layer: AlexNet's stride-4 convolution and two
# 3x3/2 max pools need 31 pixels, VGG16's four 2x2 pools 16.
_MIN_SIDE = {'alex': 31, 'vgg': 16}
# LPIPS v0.1's ScalingLayer, applied to images in [-1, 1].
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_EPS = 1e-10


class AlexNetStages(nn.Module):
    """torchvision's AlexNet ``features`` up to its fifth ReLU (module indices as torchvision numbers them, so
    its state dict loads as is), returning the five ReLU outputs LPIPS compares."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU())
        self.requires_grad_(False)
        self.eval()

    def load_torchvision(self, state_dict: dict[str, Tensor], source: Path) -> None:
        """Copy the ``features.*`` tensors of a torchvision alexnet state dict in (its classifier is unused)."""
        features = {k: v for k, v in state_dict.items() if k.startswith('features.')}
        try:
            self.load_state_dict(features)
        except RuntimeError as exc:
            raise CheckpointError(f'LPIPS: backbone_weights must be torchvision\'s alexnet file '
                                  f'({TORCHVISION_FILES["alexnet"]}), but it does not fit: {exc}',
                                  file=str(source)) from None

    def forward(self, x: Tensor) -> list[Tensor]:
        stages = []
        for layer in self.features:
            x = layer(x)
            if isinstance(layer, nn.ReLU):
                stages.append(x)
        return stages


class _LPIPS(nn.Module):
    shift: Tensor  # buffers, registered in __init__
    scale: Tensor

    def __init__(self, stages: nn.Module, lin: list[Tensor]) -> None:
        super().__init__()
        self.stages = stages
        self.lin = nn.ParameterList([nn.Parameter(w, requires_grad=False) for w in lin])
        self.register_buffer('shift', torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer('scale', torch.tensor(_SCALE).view(1, 3, 1, 1))

    def _unit_features(self, x: Tensor) -> list[Tensor]:
        return [f / (f.square().sum(dim=1, keepdim=True).sqrt() + _EPS)
                for f in self.stages((x - self.shift) / self.scale)]

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Per-image LPIPS (N,) of two batches in [-1, 1]."""
        total = a.new_zeros(a.shape[0])
        for fa, fb, weight in zip(self._unit_features(a), self._unit_features(b), self.lin):
            total += (fa - fb).square().mean(dim=(2, 3)) @ weight  # the 1x1 lin layer commutes with the mean
        return total


def _lin_weights(path: Path, net: str) -> list[Tensor]:
    state = load_state_dict(path)
    channels = _NETS[net][1]
    weights = []
    for k, c in enumerate(channels):
        w = state.get(f'lin{k}.model.1.weight')
        if w is None or w.numel() != c:
            found = 'missing' if w is None else f'of shape {tuple(w.shape)}'
            raise CheckpointError(f'LPIPS: weights must be the v0.1 lin-layer file for net {net} '
                                  f'(lin{k}.model.1.weight with {c} values), but lin{k}.model.1.weight is {found}; '
                                  'check net.', file=str(path))
        weights.append(w.reshape(c).float())
    return weights


@functools.lru_cache(maxsize=4)
def _network(net: str, weights: Path, backbone: Path, device: torch.device) -> _LPIPS:
    stages: nn.Module
    if net == 'alex':
        stages = AlexNetStages()
        stages.load_torchvision(load_state_dict(backbone), backbone)
    else:
        stages = VGG16Stages(backbone, 'LPIPS')
    return _LPIPS(stages, _lin_weights(weights, net)).to(device)


@METRIC_REGISTRY.register(aliases=('lpips',), meta={'better': 'lower'})
def calculate_lpips(sr: Tensor, gt: Tensor, crop_border: int = 0, net: str = 'alex', weights: str | None = None,
                    backbone_weights: str | None = None) -> Tensor:
    """LPIPS v0.1 of each image of two NCHW batches in [0, 255]: float64 tensor (N,), 0 when identical.

    ``weights``: the LPIPS lin-layer file for ``net`` (alex or vgg); ``backbone_weights``: torchvision's
    ImageNet alexnet / vgg16 state-dict file. Computed in float32, as the authors do.
    """
    if net not in _NETS:
        hint = closest_name(net, tuple(_NETS))
        raise ValueError(f'LPIPS: unknown net "{net}".{f" Did you mean {hint!r}?" if hint else ""} '
                         f'Known: {", ".join(_NETS)}.')
    arch = _NETS[net][0]
    weights_path, backbone_path = required_files(
        f'LPIPS (net {net})', weights, f'the LPIPS v0.1 lin-layer file {net}.pth (lpips/weights/v0.1/{net}.pth in '
        'github.com/richzhang/PerceptualSimilarity, also in the pip package lpips)', backbone_weights, arch)
    a, b = image_pair(sr, gt, crop_border, _MIN_SIDE[net], f'LPIPS (net {net})')
    model = _network(net, weights_path, backbone_path, sr.device)
    with torch.no_grad():
        return model((a / 127.5 - 1).float(), (b / 127.5 - 1).float()).to(torch.float64)
