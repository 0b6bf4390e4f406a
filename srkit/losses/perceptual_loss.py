"""Perceptual (VGG feature) and style (Gram matrix) loss, with a VGG defined here.

srkit builds its own VGG (layer names as in BasicSR: ``conv1_1``, ``relu1_1``, ..., ``pool5``, plus
``bn*_*`` for the batch-norm variants) and fills it from a torchvision VGG state-dict file, so neither
torchvision nor a network connection is needed. It never downloads: a perceptual loss on a randomly
initialised VGG trains towards nothing meaningful, so without a weights file it refuses to start.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Collection
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from srkit.core.checkpoint import extract_state_dict, load_checkpoint_file
from srkit.core.errors import CheckpointError, OptionError, SrkitError
from srkit.core.registry import LOSS_REGISTRY, closest_name

__all__ = ['PerceptualLoss', 'VGGFeatures', 'vgg_layer_names', 'VGG_TYPES']

logger = logging.getLogger(__name__)

# Convolutions per block; the five blocks have 64, 128, 256, 512 and 512 channels.
_CONVS_PER_BLOCK = {'vgg11': (1, 1, 2, 2, 2), 'vgg13': (2, 2, 2, 2, 2), 'vgg16': (2, 2, 3, 3, 3),
                    'vgg19': (2, 2, 4, 4, 4)}
_CHANNELS = (64, 128, 256, 512, 512)
VGG_TYPES = tuple(sorted([*_CONVS_PER_BLOCK, *(f'{name}_bn' for name in _CONVS_PER_BLOCK)]))
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CRITERIA = ('l1', 'l2', 'fro')


def _check_vgg_type(vgg_type: str) -> None:
    if vgg_type not in VGG_TYPES:
        hint = closest_name(vgg_type, VGG_TYPES)
        raise OptionError(f'PerceptualLoss: unknown vgg_type "{vgg_type}".'
                          f'{f" Did you mean {hint!r}?" if hint else ""} Known: {", ".join(VGG_TYPES)}.')


def vgg_layer_names(vgg_type: str) -> list[str]:
    """The layers of ``vgg_type`` in order; position i is module i of torchvision's ``features``."""
    _check_vgg_type(vgg_type)
    with_bn = vgg_type.endswith('_bn')
    names = []
    for block, convs in enumerate(_CONVS_PER_BLOCK[vgg_type.removesuffix('_bn')], start=1):
        for i in range(1, convs + 1):
            names += [f'conv{block}_{i}', *([f'bn{block}_{i}'] if with_bn else []), f'relu{block}_{i}']
        names.append(f'pool{block}')
    return names


class VGGFeatures(nn.Module):
    """A frozen VGG ``features`` stack cut after ``last_layer``, returning the requested activations."""

    def __init__(self, vgg_type: str, last_layer: str) -> None:
        super().__init__()
        self.vgg_type = vgg_type
        all_names = vgg_layer_names(vgg_type)
        self.names = all_names[:all_names.index(last_layer) + 1]
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels = 3
        for name in self.names:
            if name.startswith('conv'):
                out_channels = _CHANNELS[int(name[4]) - 1]  # 'conv3_2' is in block 3
                layers[name] = nn.Conv2d(channels, out_channels, kernel_size=3, padding=1)
                channels = out_channels
            elif name.startswith('bn'):
                layers[name] = nn.BatchNorm2d(channels)
            elif name.startswith('relu'):
                layers[name] = nn.ReLU()  # not in place: a requested conv output must stay intact
            else:
                layers[name] = nn.MaxPool2d(kernel_size=2, stride=2)
        self.body = nn.Sequential(layers)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGFeatures:
        """Stay in eval mode: batch-norm variants must use their ImageNet running statistics."""
        return super().train(False)

    def forward(self, x: Tensor, wanted: Collection[str]) -> dict[str, Tensor]:
        out = {}
        for name, layer in self.body.named_children():
            x = layer(x)
            if name in wanted:
                out[name] = x
        return out

    def load_torchvision(self, state_dict: dict[str, Tensor], source: str) -> None:
        """Copy a torchvision VGG state dict (``features.N.*`` keys) in; ``source`` names it in errors."""
        all_names = vgg_layer_names(self.vgg_type)
        expected = set(_torchvision_keys(self.vgg_type, all_names))
        present = {k for k in state_dict if k.startswith('features.') and not k.endswith('num_batches_tracked')}
        if present != expected:
            missing, unexpected = sorted(expected - present), sorted(present - expected)
            raise CheckpointError(
                f'{source} is not a torchvision {self.vgg_type} state dict (missing: {missing[:3] or "none"}, '
                f'unexpected: {unexpected[:3] or "none"}). Check vgg_type and pretrained_path.')
        own = self.body.state_dict()
        with torch.no_grad():
            for key, tensor in own.items():
                layer, _, attr = key.partition('.')
                if attr == 'num_batches_tracked':
                    continue
                src = state_dict[f'features.{all_names.index(layer)}.{attr}']
                if src.shape != tensor.shape:
                    raise CheckpointError(f'{source}: features.{all_names.index(layer)}.{attr} has shape '
                                          f'{tuple(src.shape)}, {self.vgg_type} {layer}.{attr} needs '
                                          f'{tuple(tensor.shape)}.')
                tensor.copy_(src)


def _torchvision_keys(vgg_type: str, names: list[str]) -> list[str]:
    keys = []
    for index, name in enumerate(names):
        if name.startswith('conv'):
            keys += [f'features.{index}.weight', f'features.{index}.bias']
        elif name.startswith('bn'):
            keys += [f'features.{index}.{a}' for a in ('weight', 'bias', 'running_mean', 'running_var')]
    return keys


def _weights_file(vgg_type: str, pretrained_path: str | None) -> Path:
    """The user's file, else torchvision's cached download if one is already on disk (never fetched)."""
    if pretrained_path is not None:
        path = Path(pretrained_path).expanduser()
        if not path.is_file():
            raise SrkitError(f'PerceptualLoss: pretrained_path "{path}" is not a file.')
        return path
    cache = Path(torch.hub.get_dir()) / 'checkpoints'
    cached = sorted(cache.glob(f'{vgg_type}-*.pth'))
    if cached:
        logger.info('PerceptualLoss: using the cached torchvision weights %s', cached[0])
        return cached[0]
    raise SrkitError(
        f'PerceptualLoss needs ImageNet-trained {vgg_type} weights and srkit never downloads them. Get '
        f'torchvision\'s {vgg_type} file (e.g. torch.save(torchvision.models.{vgg_type}(weights="IMAGENET1K_V1")'
        f'.state_dict(), "{vgg_type}.pth") on a machine with torchvision), then set the loss option '
        f'pretrained_path to it (e.g. train.perceptual_opt.pretrained_path), or put it in {cache} as '
        f'{vgg_type}-<hash>.pth.')


def _gram(features: Tensor) -> Tensor:
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


@LOSS_REGISTRY.register
class PerceptualLoss(nn.Module):
    """Weighted VGG-feature distance plus an optional Gram-matrix style term (BasicSR's arguments).

    Returns one tensor, ``perceptual_weight * percep + style_weight * style`` (BasicSR returns the two
    as a tuple), so every srkit loss has the same shape of result. ``range_norm`` maps inputs from
    [-1, 1] to [0, 1]; ``use_input_norm`` then applies the ImageNet mean and std the VGG was trained with.
    Gradients reach ``pred`` only; the target's features are computed without a graph.
    """

    mean: Tensor  # buffers, registered in __init__
    std: Tensor

    def __init__(self, layer_weights: dict[str, float], vgg_type: str = 'vgg19', use_input_norm: bool = True,
                 range_norm: bool = False, perceptual_weight: float = 1.0, style_weight: float = 0.0,
                 criterion: str = 'l1', pretrained_path: str | None = None) -> None:
        super().__init__()
        names = vgg_layer_names(vgg_type)
        if not layer_weights:
            raise OptionError('PerceptualLoss: layer_weights is empty; name at least one VGG layer, '
                              'e.g. {conv5_4: 1.0}.')
        for layer in layer_weights:
            if layer not in names:
                hint = closest_name(layer, names)
                raise OptionError(f'PerceptualLoss: {vgg_type} has no layer "{layer}".'
                                  f'{f" Did you mean {hint!r}?" if hint else ""}')
        if criterion not in _CRITERIA:
            raise OptionError(f'PerceptualLoss: criterion must be one of {", ".join(_CRITERIA)}; got "{criterion}".')
        self.layer_weights = dict(layer_weights)
        self.use_input_norm = use_input_norm
        self.range_norm = range_norm
        self.perceptual_weight = perceptual_weight
        self.style_weight = style_weight
        self.criterion = criterion
        path = _weights_file(vgg_type, pretrained_path)
        self.vgg = VGGFeatures(vgg_type, max(layer_weights, key=names.index))
        self.vgg.load_torchvision(extract_state_dict(load_checkpoint_file(path), None, str(path)), str(path))
        self.register_buffer('mean', torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _features(self, x: Tensor) -> dict[str, Tensor]:
        if self.range_norm:
            x = (x + 1) / 2
        if self.use_input_norm:
            x = (x - self.mean) / self.std
        return self.vgg(x, self.layer_weights)

    def _distance(self, a: Tensor, b: Tensor) -> Tensor:
        if self.criterion == 'l1':
            return F.l1_loss(a, b)
        if self.criterion == 'l2':
            return F.mse_loss(a, b)
        return torch.linalg.vector_norm(a - b)  # Frobenius norm over all elements

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        pred_features = self._features(pred)
        with torch.no_grad():
            target_features = self._features(target.detach())
        total = pred.new_zeros(())
        for layer, weight in self.layer_weights.items():
            if self.perceptual_weight > 0:
                total = total + self.perceptual_weight * weight * self._distance(
                    pred_features[layer], target_features[layer])
            if self.style_weight > 0:
                total = total + self.style_weight * weight * self._distance(
                    _gram(pred_features[layer]), _gram(target_features[layer]))
        return total
