"""ECBSR's two conversions: re-parameterisation (ECBSR -> ECBSRT) and ETDS's equivalent transformation
(ECBSRT -> ECBSRET).

Re-parameterisation folds every edge-oriented convolution block into one 3x3 conv. The five branches of a
block are linear in its input (the 1x1 -> 3x3 pairs pad their middle feature map with the 1x1 bias, so each
pair is a 3x3 conv on the zero-padded input), so their sum is one 3x3 conv whose kernel and bias are the
sums of the branches' folded ones (``ECB.rep_params``); the activation (PReLU slopes) is carried over.
This is what the released ``ECBSR_M*_x*.pth`` went through (the official
``converter_ecbsr.py``). The equivalent transformation (``transform_ecbsr``, the official
``converter_ecbsr_et.py``) then gives the ECBSRET of the released ``ECBSR_ET_M*_x*.pth``.

Each result is checked against the network it came from (the training form run branch by branch;
clamp(ECBSRT(x), 0, 1) for the ET) on random [0, 1] images, and on a real image when given; a result that
differs by more than ``atol`` raises instead of being returned.
"""
from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from typing import TypedDict

import torch
from torch import nn

from srkit.archs.ecbsr_arch import ACT_TYPES, ECB, ECBSR, ECBSRET, ECBSRT, ET_EXTRA_CHANNELS
from srkit.archs.weights import check_equivalent, float32_copy
from srkit.core.errors import CheckpointError

__all__ = ['ECBSRArgs', 'ecbsr_hyperparams', 'reparameterize_ecbsr', 'transform_ecbsr', 'verify_reparameterization']

_FIRST = 'backbone.0.conv3x3.weight'
_BLOCK = re.compile(r'backbone\.(\d+)\.conv3x3\.weight')


class ECBSRArgs(TypedDict):
    """The constructor arguments shared by ECBSR, ECBSRT and ECBSRET."""

    num_in_ch: int
    num_out_ch: int
    upscale: int
    num_block: int
    num_feat: int
    act_type: str


def _conv(layer: nn.Module) -> nn.Conv2d:
    """The conv of one ``Sequential(conv, act)`` layer of ECBSRT or ECBSRET."""
    assert isinstance(layer, nn.Sequential) and isinstance(layer[0], nn.Conv2d)
    return layer[0]


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    """``conv``'s bias (every ECBSR conv has one)."""
    assert conv.bias is not None
    return conv.bias


def ecbsr_hyperparams(state: Mapping[str, torch.Tensor], act_type: str | None = None) -> ECBSRArgs:
    """ECBSR constructor arguments read from a training-form state dict's keys and shapes.

    The activation is PReLU when the state holds its slopes (every released model); a parameter-free one
    (relu, rrelu, softplus) leaves no trace in the state and must be named by ``act_type``.
    """
    if 'backbone.0.0.weight' in state:
        raise CheckpointError('This ECBSR checkpoint is already in a plain form (ECBSRT or ECBSRET: one conv '
                              'per block): load it into that network, there is nothing to re-parameterise.')
    if _FIRST not in state:
        raise CheckpointError(f'Not an ECBSR training-form state dict: missing {_FIRST}.')
    blocks = sorted(int(m.group(1)) for k in state if (m := _BLOCK.fullmatch(k)))
    if blocks != list(range(len(blocks))) or len(blocks) < 3:
        raise CheckpointError(f'ECBSR state dict has edge-oriented blocks {blocks}: expected 0, 1, ..., n + 1 '
                              'with n >= 1 (a first block, n middle ones and a last one).')
    num_in_ch = state[_FIRST].shape[1]
    last = state[f'backbone.{blocks[-1]}.conv3x3.weight'].shape[0]
    upscale = round(math.sqrt(last / num_in_ch))
    if upscale**2 * num_in_ch != last:
        raise CheckpointError(f'ECBSR last block has {last} outputs: not {num_in_ch} channels times a square '
                              'number of sub-pixels.')
    if 'backbone.0.act.weight' in state:
        found = 'prelu'
    elif act_type is None:
        raise CheckpointError('This ECBSR state dict has no PReLU slopes: name the parameter-free activation it '
                              'was trained with (act_type: relu, rrelu or softplus).')
    else:
        found = act_type
    if act_type is not None and act_type != found:
        raise CheckpointError(f'act_type {act_type!r} was named, but the state dict holds PReLU slopes.')
    if found not in ACT_TYPES:
        raise CheckpointError(f'act_type must be one of {", ".join(ACT_TYPES)}, got {found!r}.')
    return {'num_in_ch': num_in_ch, 'num_out_ch': num_in_ch, 'upscale': upscale, 'num_block': len(blocks) - 2,
            'num_feat': state[_FIRST].shape[0], 'act_type': found}


def _training_model(source: nn.Module | Mapping[str, torch.Tensor], act_type: str | None
                    ) -> tuple[ECBSR, ECBSRArgs]:
    """A float32 CPU copy of the training form and its arguments (the caller's model is left untouched)."""
    if isinstance(source, ECBSR):
        act_type = source.act_type
    state = source.state_dict() if isinstance(source, nn.Module) else source
    args = ecbsr_hyperparams(state, act_type)
    return float32_copy(ECBSR(**args), state, 'ECBSR training-form'), args


@torch.no_grad()
def _fold(training: ECBSR, args: ECBSRArgs) -> ECBSRT:
    """ECBSRT whose every conv is the folded kernel of the matching ECB, with the same activation state.

    The kernels are summed in float64 and rounded to float32 once, so the plain form is as close to the
    training form as float32 weights can be.
    """
    plain = ECBSRT(**args).eval()
    for block, layer in zip(copy.deepcopy(training).double().backbone, plain.backbone):
        assert isinstance(block, ECB) and isinstance(layer, nn.Sequential)
        weight, bias = block.rep_params()
        _conv(layer).weight.copy_(weight)
        _bias(_conv(layer)).copy_(bias)
        if len(layer) > 1:
            layer[1].load_state_dict(block.act.state_dict())
    return plain


def _branch_by_branch(model: ECBSR) -> ECBSR:
    """``model`` in eval mode except its blocks, which then run their five branches, not the folded kernel."""
    model.eval()
    for module in model.modules():
        if isinstance(module, ECB):
            module.training = True
    return model


def verify_reparameterization(training: ECBSR, plain: ECBSRT, images: list[torch.Tensor],
                              atol: float = 1e-5) -> float:
    """Largest |training(x) - plain(x)| over ``images``, the training form run branch by branch (in float64, on
    copies of both); raises a CheckpointError above ``atol`` (or on NaN)."""
    training64 = _branch_by_branch(copy.deepcopy(training).to('cpu', torch.float64))
    return check_equivalent(training64, plain, images, atol, 'ECBSR re-parameterisation')


def _random_images(channels: int, seed: int, check_image: torch.Tensor | None) -> list[torch.Tensor]:
    """Two random [0, 1] batches drawn from ``seed`` (odd sizes, so borders differ), and the caller's image."""
    generator = torch.Generator().manual_seed(seed)
    images = [torch.rand(2, channels, 32, 40, generator=generator),
              torch.rand(1, channels, 17, 23, generator=generator)]
    if check_image is not None:
        images.append(check_image.detach().to('cpu', torch.float32))
    return images


def reparameterize_ecbsr(source: ECBSR | Mapping[str, torch.Tensor], act_type: str | None = None,
                         check_image: torch.Tensor | None = None, atol: float = 1e-5, seed: int = 0) -> ECBSRT:
    """The ECBSRT equal to the training-form ECBSR ``source`` (a network or its state dict), verified.

    ``act_type``: only for a state dict without PReLU slopes (see ``ecbsr_hyperparams``). ``check_image``: an
    optional real NCHW image in [0, 1] checked besides the random ones drawn from ``seed``. A network or
    state dict in another form (ECBSRT, ECBSRET, anything else) is refused with a CheckpointError.
    """
    training, args = _training_model(source, act_type)
    plain = _fold(training, args)
    verify_reparameterization(training, plain, _random_images(args['num_in_ch'], seed, check_image), atol)
    return plain


# ---- ETDS's equivalent transformation: ECBSRT -> ECBSRET ---------------------------------------------------------


@torch.no_grad()
def _et_fold(plain: ECBSRT) -> ECBSRET:
    """ECBSRET rows: ECBSRT's, then the image carriers (centre-tap identities) in the last ``colors`` channels."""
    colors, num_feat = _conv(plain.backbone[0]).in_channels, _conv(plain.backbone[0]).out_channels
    sub_pixels = plain.upscale**2
    et = ECBSRET(num_in_ch=colors, num_out_ch=colors, upscale=plain.upscale, num_block=len(plain.backbone) - 2,
                 num_feat=num_feat, act_type=plain.act_type).eval()
    carriers = range(num_feat + ET_EXTRA_CHANNELS - colors, num_feat + ET_EXTRA_CHANNELS)
    for index, (source, target) in enumerate(zip(list(plain.backbone)[:-1], list(et.backbone)[:-2])):
        assert isinstance(source, nn.Sequential) and isinstance(target, nn.Sequential)
        conv, new = _conv(source), _conv(target)
        new.weight.zero_()
        _bias(new).zero_()
        new.weight[:num_feat, :conv.in_channels] = conv.weight
        _bias(new)[:num_feat] = _bias(conv)
        for color, carrier in enumerate(carriers):
            new.weight[carrier, color if index == 0 else carrier, 1, 1] = 1
        slopes, new_slopes = source[1], target[1]
        if isinstance(slopes, nn.PReLU) and isinstance(new_slopes, nn.PReLU):
            new_slopes.weight.zero_()  # slope 0 on the carriers and the spare channel, as the official code
            new_slopes.weight[:num_feat] = slopes.weight
    last, new_last, clip = _conv(plain.backbone[-1]), _conv(et.backbone[-2]), _conv(et.backbone[-1])
    new_last.weight.zero_()
    _bias(new_last).fill_(1)
    new_last.weight[:last.out_channels, :num_feat] = -last.weight
    _bias(new_last)[:last.out_channels] = 1 - _bias(last)
    for color, carrier in enumerate(carriers):
        new_last.weight[color * sub_pixels:(color + 1) * sub_pixels, carrier, 1, 1] = -1
    clip.weight.copy_(-torch.eye(clip.out_channels)[:, :, None, None])
    _bias(clip).fill_(1)
    return et


def transform_ecbsr(plain: ECBSRT, check_image: torch.Tensor | None = None, atol: float = 1e-5,
                    seed: int = 0) -> ECBSRET:
    """ETDS's equivalent transformation: the ECBSRET computing clamp(plain(x), 0, 1) for images in [0, 1], verified.

    Every layer gets four more channels: the last ``num_in_ch`` carry the input image (identity kernels; the
    activation keeps a non-negative image), so the upsampling shortcut becomes part of the last conv, which
    computes 1 - (output + shortcut); the 1x1 conv computes 1 - x, and the two ReLUs clamp. ``plain``: an
    ECBSRT (re-parameterise a training-form ECBSR first, ``reparameterize_ecbsr``); it is left untouched.
    """
    if not isinstance(plain, ECBSRT):
        raise CheckpointError(f'The equivalent transformation takes an ECBSRT, not {type(plain).__name__}; '
                              're-parameterise a training-form ECBSR first (reparameterize_ecbsr).')
    colors = _conv(plain.backbone[0]).in_channels
    if plain.act_type == 'softplus' or colors > ET_EXTRA_CHANNELS:
        raise CheckpointError(f'ECBSRT with act_type {plain.act_type!r} and {colors} input channels has no '
                              f'equivalent ECBSRET: it needs an activation that keeps non-negative values and at '
                              f'most {ET_EXTRA_CHANNELS} channels.')
    plain = copy.deepcopy(plain).to('cpu', torch.float32).eval()
    et = _et_fold(plain)
    plain64 = copy.deepcopy(plain).to(torch.float64)
    check_equivalent(lambda x: plain64(x).clamp(0, 1), et, _random_images(colors, seed, check_image), atol,
           'ECBSR equivalent transformation')
    return et

