"""ETDS equivalent transformation: the two-stream training form folded into one plain conv + ReLU stack.

Both streams are conv + ReLU, so each block's pair of convs is one conv on the concatenated features
[backbone | residual] with block-structured weights: backbone rows [W_backbone | W_res2backbone], residual
rows [0 | W_residual]. The two last convs become one conv producing 1 - (HF + LF); ReLU, then the 1x1
``conv_clip`` (1 - x) and ReLU give clamp(HF + LF, 0, 1) out of ReLUs only. At x3 a dummy output channel
(weights 0, bias 1 -> 0 after the clip) keeps the channel count at a multiple of 4.

The result is checked against the training form on random [0, 1] images (and on a real image when
given); a conversion that differs by more than ``atol`` raises instead of being returned.
"""
from __future__ import annotations

import copy
import math
import os
import re
from pathlib import Path
from typing import Mapping, cast

import torch

from srkit.archs.etds_arch import ETDS, ETDSForInference
from srkit.archs.weights import check_equivalent, float32_copy
from srkit.core.checkpoint import atomic_save
from srkit.core.errors import CheckpointError

__all__ = ['convert_etds', 'etds_hyperparams', 'verify_conversion', 'save_params']

_TRAINING_KEYS = ('conv_first.weight', 'conv_residual_first.weight', 'conv_last.weight',
                  'conv_residual_last.weight')


def etds_hyperparams(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """ETDS constructor arguments read from a training-form state dict's shapes."""
    if 'conv_clip.weight' in state:
        raise CheckpointError('This ETDS checkpoint is already in the plain inference form (it has '
                              'conv_clip): load it into ETDSForInference, there is nothing to convert.')
    missing = [k for k in _TRAINING_KEYS if k not in state]
    if missing:
        raise CheckpointError(f'Not an ETDS training-form state dict: missing {", ".join(missing)}.')
    num_in_ch = state['conv_first.weight'].shape[1]
    num_residual_feat = state['conv_residual_first.weight'].shape[0]
    blocks = {int(m.group(1)) for k in state if (m := re.fullmatch(r'backbone_convs\.(\d+)\.weight', k))}
    sub_pixels = state['conv_last.weight'].shape[0] / num_in_ch
    upscale = round(math.sqrt(sub_pixels))
    if upscale**2 != sub_pixels:
        raise CheckpointError(f'ETDS conv_last has {state["conv_last.weight"].shape[0]} outputs: not '
                              f'{num_in_ch} channels times a square number of sub-pixels.')
    return {'num_in_ch': num_in_ch, 'num_out_ch': num_in_ch, 'upscale': upscale, 'num_block': len(blocks),
            'num_feat': state['conv_first.weight'].shape[0] + num_residual_feat,
            'num_residual_feat': num_residual_feat}


def _training_model(source: ETDS | Mapping[str, torch.Tensor]) -> ETDS:
    """A float32 CPU copy of the training form (the caller's model is left untouched)."""
    state = source.state_dict() if isinstance(source, ETDS) else source
    return float32_copy(ETDS(**etds_hyperparams(state)), state, 'ETDS training-form')


def _bias(conv: torch.nn.Conv2d) -> torch.Tensor:
    """``conv``'s bias (every ETDS conv has one)."""
    assert conv.bias is not None
    return conv.bias


def _convs(layers: torch.nn.ModuleList) -> list[torch.nn.Conv2d]:
    """An ETDS ModuleList, which holds only convs (ModuleList cannot say what it holds)."""
    return cast('list[torch.nn.Conv2d]', list(layers))


def _fold_block(backbone: torch.nn.Conv2d, residual: torch.nn.Conv2d, add_residual: torch.nn.Conv2d,
                target: torch.nn.Conv2d) -> None:
    """One block: rows [W_backbone | W_res2backbone] and [0 | W_residual] on input [backbone | residual]."""
    zeros = residual.weight.new_zeros(residual.out_channels, backbone.in_channels, 3, 3)
    top = torch.cat([backbone.weight, add_residual.weight], dim=1)
    bottom = torch.cat([zeros, residual.weight], dim=1)
    target.weight.copy_(torch.cat([top, bottom], dim=0))
    _bias(target).copy_(torch.cat([_bias(backbone) + _bias(add_residual), _bias(residual)]))


def _fold_last(training: ETDS, plain: ETDSForInference) -> None:
    """conv_last gives 1 - (HF + LF) (dummy rows give 1); conv_clip gives 1 - x: ReLUs clamp to [0, 1]."""
    rows = training.conv_last.out_channels
    plain.conv_last.weight.zero_()
    _bias(plain.conv_last).fill_(1)
    plain.conv_last.weight[:rows] = -torch.cat([training.conv_last.weight, training.conv_residual_last.weight],
                                               dim=1)
    _bias(plain.conv_last)[:rows] = 1 - (_bias(training.conv_last) + _bias(training.conv_residual_last))
    plain.conv_clip.weight.copy_(-torch.eye(plain.conv_clip.out_channels)[:, :, None, None])
    _bias(plain.conv_clip).fill_(1)


@torch.no_grad()
def _fold(training: ETDS) -> ETDSForInference:
    plain = ETDSForInference(**etds_hyperparams(training.state_dict())).eval()
    plain.conv_first.weight.copy_(torch.cat([training.conv_first.weight, training.conv_residual_first.weight]))
    _bias(plain.conv_first).copy_(torch.cat([_bias(training.conv_first), _bias(training.conv_residual_first)]))
    for layers in zip(_convs(training.backbone_convs), _convs(training.residual_convs),
                      _convs(training.add_residual_convs), _convs(plain.backbone_convs)):
        _fold_block(*layers)
    _fold_last(training, plain)
    return plain


@torch.no_grad()
def verify_conversion(training: ETDS, plain: ETDSForInference, images: list[torch.Tensor],
                      atol: float = 1e-5) -> float:
    """Largest |clamp(training(x)[0], 0, 1) - plain(x)| over ``images``; raises above ``atol`` (or on NaN).

    Both networks run in float64 on copies of their weights, so the check measures the transformation,
    not float32 rounding (which grows with activation size and is the same for any reordering of sums).
    """
    training64 = copy.deepcopy(training).to('cpu', torch.float64).eval()
    return check_equivalent(lambda x: training64(x)[0].clamp(0, 1), plain, images, atol, 'ETDS conversion')


def convert_etds(source: ETDS | Mapping[str, torch.Tensor], check_image: torch.Tensor | None = None,
                 atol: float = 1e-5, seed: int = 0) -> ETDSForInference:
    """The plain ETDSForInference equal to clamp(training output, 0, 1), verified before it is returned.

    ``source``: a training-form ETDS or its state dict (hyperparameters are read from the shapes).
    ``check_image``: an optional real NCHW image in [0, 1] checked besides the random ones from ``seed``.
    """
    training = _training_model(source)
    plain = _fold(training)
    generator = torch.Generator().manual_seed(seed)
    channels = training.conv_first.in_channels
    images = [torch.rand(2, channels, 32, 40, generator=generator),
              torch.rand(1, channels, 17, 23, generator=generator)]
    if check_image is not None:
        images.append(check_image.detach().to('cpu', torch.float32))
    verify_conversion(training, plain, images, atol)
    return plain


def save_params(model: torch.nn.Module, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``{'params': state_dict}`` atomically; never replaces an existing file unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise CheckpointError(f'{path} exists; choose another output or allow overwriting it.')
    atomic_save({'params': model.state_dict()}, path)
    return path
