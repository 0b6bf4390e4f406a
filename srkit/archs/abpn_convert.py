"""Equivalent transformation of ABPN: a trained ``ABPN`` folded into the plain ``ABPN_ET`` stack.

ABPN adds the input, repeated ``scale^2`` times per colour, to the output of a conv + ReLU stack. ABPN_ET
computes clamp(that, 0, 1) with conv + ReLU only, four channels wider:

- every layer up to the first tail conv keeps ABPN's rows and adds three rows that copy the input image
  (centre-tap identity kernels; ReLU keeps it, images are not negative) and one zero row (the spare);
- the second tail conv computes 1 - (ABPN's tail + the repeated image): ABPN's weights negated, bias
  1 - b, and -1 from each image carrier to that colour's ``scale^2`` sub-pixel channels; ReLU;
- the 1x1 clip conv computes 1 - x, and its ReLU completes clamp(y, 0, 1) = ReLU(1 - ReLU(1 - y)).

The result is checked against clamp(ABPN(x), 0, 1) on random [0, 1] images before it is returned; a
conversion that differs by more than ``atol`` raises.
"""
from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping

import torch
from torch import nn

from srkit.archs.abpn_arch import ABPN, ABPN_ET, COLORS
from srkit.archs.weights import check_equivalent, float32_copy
from srkit.core.errors import CheckpointError

__all__ = ['abpn_hyperparams', 'convert_abpn', 'verify_abpn_conversion']

_BLOCK_KEY = re.compile(r'backbone\.(\d+)\.0\.weight')


def abpn_hyperparams(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """ABPN's constructor arguments read from the shapes of its state dict."""
    if 'backbone.0.weight' not in state:
        raise CheckpointError('Not an ABPN state dict: it has no backbone.0.weight.')
    num_feat = state['backbone.0.weight'].shape[0]
    num_block = sum(1 for key in state if _BLOCK_KEY.fullmatch(key))
    last = state.get(f'backbone.{num_block + 4}.weight')
    if last is None or f'backbone.{num_block + 6}.weight' in state:
        raise CheckpointError(f'Not an ABPN state dict: after {num_block} blocks it should end in '
                              f'backbone.{num_block + 4} (an ABPN_ET one, with a clip conv, needs no conversion).')
    sub_pixels = last.shape[0] / COLORS
    scale = round(math.sqrt(sub_pixels))
    if scale**2 != sub_pixels:
        raise CheckpointError(f'ABPN\'s last conv has {last.shape[0]} outputs: not {COLORS} colours times a '
                              'square number of sub-pixels.')
    return {'num_feat': num_feat, 'num_block': num_block, 'scale': scale}


def _abpn_model(source: ABPN | Mapping[str, torch.Tensor]) -> ABPN:
    """A float32 CPU copy of the ABPN to convert (the caller's model is left untouched)."""
    state = source.state_dict() if isinstance(source, ABPN) else source
    return float32_copy(ABPN(**abpn_hyperparams(state)), state, 'ABPN')


def _conv(layers: nn.Sequential, index: int) -> nn.Conv2d:
    """The conv at ``index`` of a backbone (a block's conv is the first module of its Sequential)."""
    layer = layers[index]
    conv = layer[0] if isinstance(layer, nn.Sequential) else layer
    assert isinstance(conv, nn.Conv2d) and conv.bias is not None
    return conv


def _carry(target: nn.Conv2d, source: nn.Conv2d, source_in: slice) -> None:
    """``target`` = ``source``'s rows on the inputs ``source_in``, zeros elsewhere, and its last three rows
    copying its last three inputs (the image carriers: the only inputs of the first conv)."""
    target.weight.zero_()
    _bias(target).zero_()
    rows = source.out_channels
    target.weight[:rows, source_in] = source.weight
    _bias(target)[:rows] = _bias(source)
    inputs = target.in_channels
    for c in range(COLORS):
        target.weight[target.out_channels - COLORS + c, inputs - COLORS + c, 1, 1] = 1


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    """``conv``'s bias (every ABPN conv has one)."""
    assert conv.bias is not None
    return conv.bias


@torch.no_grad()
def _fold(abpn: ABPN) -> ABPN_ET:
    hyper = abpn_hyperparams(abpn.state_dict())
    num_feat, num_block, scale = hyper['num_feat'], hyper['num_block'], hyper['scale']
    plain = ABPN_ET(**hyper).eval()
    source, target = abpn.backbone, plain.backbone
    _carry(_conv(target, 0), _conv(source, 0), slice(None))
    for i in range(2, num_block + 3):  # the blocks and the first tail conv read num_feat + 4 channels
        _carry(_conv(target, i), _conv(source, i), slice(0, num_feat))
    last, abpn_last = _conv(target, num_block + 4), _conv(source, num_block + 4)
    image = abpn_last.out_channels
    last.weight.zero_()
    _bias(last).fill_(1)  # an x3 dummy row ends as 1, then 0 after the clip
    last.weight[:image, :image] = -abpn_last.weight
    _bias(last)[:image] = 1 - _bias(abpn_last)
    for c in range(COLORS):
        last.weight[c * scale**2:(c + 1) * scale**2, last.in_channels - COLORS + c, 1, 1] = -1
    clip = _conv(target, num_block + 6)
    clip.weight.copy_(-torch.eye(clip.out_channels)[:, :, None, None])
    _bias(clip).fill_(1)
    return plain


@torch.no_grad()
def verify_abpn_conversion(abpn: ABPN, plain: ABPN_ET, images: list[torch.Tensor], atol: float = 1e-5) -> float:
    """Largest |clamp(abpn(x), 0, 1) - plain(x)| over ``images`` (in [0, 1]); raises above ``atol`` or on NaN.

    Both run in float64 on copies, so the check measures the transformation, not float32 rounding.
    """
    abpn64 = copy.deepcopy(abpn).to('cpu', torch.float64).eval()
    return check_equivalent(lambda x: abpn64(x).clamp(0, 1), plain, images, atol, 'ABPN to ABPN_ET conversion')


def convert_abpn(source: ABPN | Mapping[str, torch.Tensor], check_image: torch.Tensor | None = None,
                 atol: float = 1e-5, seed: int = 0) -> ABPN_ET:
    """The ABPN_ET equal to clamp(ABPN(x), 0, 1) for images x in [0, 1], verified before it is returned.

    ``source``: a trained ABPN or its state dict (hyper-parameters are read from the shapes).
    ``check_image``: an optional real NCHW image in [0, 1] checked besides the random ones from ``seed``.
    Save the result with ``srkit.archs.etds_convert.save_params``.
    """
    abpn = _abpn_model(source)
    plain = _fold(abpn)
    generator = torch.Generator().manual_seed(seed)
    images = [torch.rand(2, COLORS, 32, 40, generator=generator), torch.rand(1, COLORS, 17, 23, generator=generator)]
    if check_image is not None:
        images.append(check_image.detach().to('cpu', torch.float32))
    verify_abpn_conversion(abpn, plain, images, atol)
    return plain
