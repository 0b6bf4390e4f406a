"""ECBSR (Zhang et al., ACM MM 2021) as the ETDS repository trains, deploys and transforms it.

ECBSR is one of the baselines ETDS applies its equivalent transformation (ET) to. The three networks keep
the names, constructor arguments and parameter names of ECNUSR/ETDS (``core/archs/ir/ECBSR/arch.py`` at
commit 64ad1b8), so its option files and its released checkpoints load unchanged:

- ``ECBSR``: the training form. Every layer is an edge-oriented convolution block (``ECB``): a 3x3 conv
  plus four branches that are linear in the input and therefore re-parameterisable into that one 3x3 conv
  (1x1 then 3x3; 1x1 then a learnably scaled Sobel-x, Sobel-y or Laplacian stencil). In training mode the
  branches run separately (what, per the ECBSR paper, makes it train better than one conv); in eval mode the
  block runs the folded kernel, as the official code does. The input, repeated into every sub-pixel
  (nearest-neighbour upsampling), is added before the pixel shuffle.
- ``ECBSRT``: the plain form (``T`` for test): one 3x3 conv + activation per block, what
  ``srkit.archs.ecbsr_convert.reparameterize_ecbsr`` produces and the form of the released
  ``ECBSR_M*_x*.pth``.
- ``ECBSRET``: ``ECBSRT`` after ETDS's equivalent transformation (the released ``ECBSR_ET_M*_x*.pth``).
  Four channels more per layer: three carry the input image through the stack (so the shortcut becomes
  part of the last conv) and one keeps the width a multiple of 4, which mobile NPUs run fastest. The last
  conv computes 1 - y and a last 1x1 conv computes 1 - x, so ReLUs alone clamp the output to [0, 1]; at
  x3 one more (dummy) output channel makes 27 channels 28, as in ETDSForInference.

The defaults are the smallest released configuration, M4C16 with PReLU (every official option file uses
PReLU). Any integer scale works; the releases cover 2, 3 and 4.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn
from torch.nn import functional as F

from srkit.archs.etds_arch import inference_out_channels
from srkit.archs.spec import ArchSpec, require_positive
from srkit.core.registry import ARCH_REGISTRY
from srkit.ops.conv_compose import compose_convs

__all__ = ['ACT_TYPES', 'ECB', 'ECBSR', 'ECBSRET', 'ECBSRT', 'ET_EXTRA_CHANNELS', 'SEQ_TYPES', 'SeqConv3x3',
           'activation']

ACT_TYPES = ('prelu', 'relu', 'rrelu', 'softplus', 'linear')
ET_EXTRA_CHANNELS = 4  # three image-carrying channels and one that rounds the width up (official "+4")
DEPTH_MULTIPLIER = 2.0  # width of the 1x1 -> 3x3 branch's middle layer, relative to the block's output

# Conv + activation + PixelShuffle (the eval form folds the branches): fp16 and channels_last change rounding only.
ECBSR_SPEC = ArchSpec(scales=())

# The fixed stencils of the edge branches, as (row, column) -> value; every other tap is 0.
_STENCILS: dict[str, dict[tuple[int, int], float]] = {
    'conv1x1-sobelx': {(0, 0): 1, (1, 0): 2, (2, 0): 1, (0, 2): -1, (1, 2): -2, (2, 2): -1},
    'conv1x1-sobely': {(0, 0): 1, (0, 1): 2, (0, 2): 1, (2, 0): -1, (2, 1): -2, (2, 2): -1},
    'conv1x1-laplacian': {(0, 1): 1, (1, 0): 1, (1, 2): 1, (2, 1): 1, (1, 1): -4},
}
SEQ_TYPES = ('conv1x1-conv3x3', *_STENCILS)


def activation(act_type: str, channels: int) -> nn.Module:
    """The official ``ECB.get_activation``: one of ACT_TYPES (PReLU has one slope per channel)."""
    if act_type == 'prelu':
        return nn.PReLU(num_parameters=channels)
    if act_type == 'relu':
        return nn.ReLU()
    if act_type == 'rrelu':
        return nn.RReLU(lower=-0.05, upper=0.05)
    if act_type == 'softplus':
        return nn.Softplus()
    if act_type == 'linear':
        return nn.Identity()
    raise ValueError(f'act_type must be one of {", ".join(ACT_TYPES)}, got {act_type!r}')


def _default_conv_params(in_ch: int, out_ch: int, kernel: int) -> tuple[nn.Parameter, nn.Parameter]:
    """Weight and bias initialised as torch initialises a Conv2d, drawn in the same order as the official
    code draws them (so a seed gives the official initial weights)."""
    conv = nn.Conv2d(in_ch, out_ch, kernel)
    weight, bias = conv.weight, conv.bias
    assert isinstance(weight, nn.Parameter) and isinstance(bias, nn.Parameter)
    return weight, bias


class SeqConv3x3(nn.Module):
    """A 1x1 conv followed by a 3x3 one (learned, or a scaled fixed stencil per channel): one 3x3 conv in effect.

    The 1x1 output is padded with its own bias rather than zeros, so that the pair equals the folded 3x3
    conv with zero padding exactly, at the border too. ``depth_multiplier``: the middle width of
    ``conv1x1-conv3x3`` relative to ``out_planes`` (the stencil types keep ``out_planes``).
    """

    mask: torch.Tensor  # the edge branches' fixed stencil, one per output channel

    def __init__(self, seq_type: str, inp_planes: int, out_planes: int,
                 depth_multiplier: float = DEPTH_MULTIPLIER) -> None:
        super().__init__()
        if seq_type not in SEQ_TYPES:
            raise ValueError(f'seq_type must be one of {", ".join(SEQ_TYPES)}, got {seq_type!r}')
        self.seq_type = seq_type  # the official name, ``type``, would hide nn.Module.type()
        self.out_planes = out_planes
        if seq_type == 'conv1x1-conv3x3':
            self.mid_planes = int(out_planes * depth_multiplier)
            self.k0, self.b0 = _default_conv_params(inp_planes, self.mid_planes, 1)
            self.k1, self.b1 = _default_conv_params(self.mid_planes, out_planes, 3)
            return
        self.k0, self.b0 = _default_conv_params(inp_planes, out_planes, 1)
        self.scale = nn.Parameter(torch.randn(out_planes, 1, 1, 1) * 1e-3)
        self.bias = nn.Parameter(torch.randn(out_planes) * 1e-3)
        mask = torch.zeros(out_planes, 1, 3, 3)
        for (row, col), value in _STENCILS[seq_type].items():
            mask[:, 0, row, col] = value
        # A constant, so a buffer (the official code uses a frozen Parameter): same state-dict key "mask".
        self.register_buffer('mask', mask)

    def _second_kernel(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(weight, bias, groups) of the 3x3 stage: learned, or the scaled stencil applied per channel."""
        if self.seq_type == 'conv1x1-conv3x3':
            return self.k1, self.b1, 1
        return self.scale * self.mask, self.bias, self.out_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y0 = F.pad(F.conv2d(x, self.k0), (1, 1, 1, 1)) + self.b0.view(1, -1, 1, 1)
        weight, bias, groups = self._second_kernel()
        return F.conv2d(y0, weight, bias, groups=groups)

    def rep_params(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The single 3x3 (weight, bias) this pair computes, for inputs zero-padded by 1."""
        weight, bias, groups = self._second_kernel()
        if groups == 1:
            return compose_convs(weight, bias, self.k0, self.b0)
        return weight * self.k0, weight.sum(dim=(1, 2, 3)) * self.b0 + bias


class ECB(nn.Module):
    """Edge-oriented convolution block: 3x3 conv + the four SeqConv3x3 branches, summed, then activated.

    Training mode runs the five branches; eval mode runs their folded kernel (``rep_params``), which is the
    same function up to float rounding.
    """

    def __init__(self, inp_planes: int, out_planes: int, depth_multiplier: float = DEPTH_MULTIPLIER,
                 act_type: str = 'prelu') -> None:
        super().__init__()
        self.conv3x3 = nn.Conv2d(inp_planes, out_planes, kernel_size=3, padding=1)
        self.conv1x1_3x3 = SeqConv3x3('conv1x1-conv3x3', inp_planes, out_planes, depth_multiplier)
        self.conv1x1_sbx = SeqConv3x3('conv1x1-sobelx', inp_planes, out_planes)
        self.conv1x1_sby = SeqConv3x3('conv1x1-sobely', inp_planes, out_planes)
        self.conv1x1_lpl = SeqConv3x3('conv1x1-laplacian', inp_planes, out_planes)
        self.act = activation(act_type, out_planes)

    def branches(self) -> tuple[SeqConv3x3, ...]:
        return self.conv1x1_3x3, self.conv1x1_sbx, self.conv1x1_sby, self.conv1x1_lpl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            y = self.conv3x3(x)
            for branch in self.branches():
                y = y + branch(x)
        else:
            y = F.conv2d(x, *self.rep_params(), padding=1)
        return self.act(y)

    def rep_params(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The block's one 3x3 (weight, bias): the sum of the 3x3 conv and every branch's folded kernel."""
        assert self.conv3x3.bias is not None
        weight, bias = self.conv3x3.weight, self.conv3x3.bias
        for branch in self.branches():
            branch_weight, branch_bias = branch.rep_params()
            weight, bias = weight + branch_weight, bias + branch_bias
        return weight, bias


def _check_args(name: str, num_in_ch: int, num_out_ch: int, upscale: int, num_block: int, num_feat: int,
                act_type: str) -> None:
    require_positive(num_in_ch=num_in_ch, num_out_ch=num_out_ch, upscale=upscale, num_block=num_block,
                     num_feat=num_feat)
    if num_out_ch != num_in_ch:
        raise ValueError(f'{name}: num_out_ch ({num_out_ch}) must equal num_in_ch ({num_in_ch}): the input, '
                         'upsampled, is added to the output.')
    if act_type not in ACT_TYPES:
        raise ValueError(f'{name}: act_type must be one of {", ".join(ACT_TYPES)}, got {act_type!r}')


def _conv_act(in_ch: int, out_ch: int, act: nn.Module) -> nn.Sequential:
    """``Sequential(conv3x3, act)``: the official layout, whose indices are the checkpoints' key names."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1), act)


@ARCH_REGISTRY.register(meta=ECBSR_SPEC)
class ECBSR(nn.Module):
    """Training form: ``num_block + 2`` edge-oriented blocks (the last one linear) plus the upsampled input."""

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, upscale: int = 4, num_block: int = 4,
                 num_feat: int = 16, act_type: str = 'prelu') -> None:
        super().__init__()
        _check_args('ECBSR', num_in_ch, num_out_ch, upscale, num_block, num_feat, act_type)
        self.num_in_ch = num_in_ch
        self.upscale = upscale
        self.act_type = act_type
        self.backbone = nn.Sequential(
            ECB(num_in_ch, num_feat, act_type=act_type),
            *(ECB(num_feat, num_feat, act_type=act_type) for _ in range(num_block)),
            ECB(num_feat, num_out_ch * upscale**2, act_type='linear'))
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = torch.repeat_interleave(x, self.upscale**2, dim=1)
        return self.upsampler(self.backbone(x) + shortcut)


@ARCH_REGISTRY.register(meta=replace(ECBSR_SPEC, params={2: 11548, 3: 13723, 4: 16768}))
class ECBSRT(nn.Module):
    """Plain form of ECBSR, one 3x3 conv + activation per block (the released ECBSR_M*_x*.pth).

    Parameter counts in the spec are the released M4C16's.
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, upscale: int = 4, num_block: int = 4,
                 num_feat: int = 16, act_type: str = 'prelu') -> None:
        super().__init__()
        _check_args('ECBSRT', num_in_ch, num_out_ch, upscale, num_block, num_feat, act_type)
        self.upscale = upscale
        self.act_type = act_type
        self.backbone = nn.Sequential(
            _conv_act(num_in_ch, num_feat, activation(act_type, num_feat)),
            *(_conv_act(num_feat, num_feat, activation(act_type, num_feat)) for _ in range(num_block)),
            nn.Sequential(nn.Conv2d(num_feat, num_out_ch * upscale**2, 3, padding=1)))
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = torch.repeat_interleave(x, self.upscale**2, dim=1)
        return self.upsampler(self.backbone(x) + shortcut)


@ARCH_REGISTRY.register(meta=replace(ECBSR_SPEC, params={2: 17468, 3: 21020, 4: 26180}))
class ECBSRET(nn.Module):
    """ECBSR after ETDS's equivalent transformation, ``num_feat + 4`` wide, clamped by ReLUs (ECBSR_ET_M*_x*.pth).

    ``num_feat`` is the width of the ECBSR it came from (the option files give the same value to all three
    forms); parameter counts in the spec are the released ECBSR_ET_M4C16's.
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, upscale: int = 4, num_block: int = 4,
                 num_feat: int = 16, act_type: str = 'prelu') -> None:
        super().__init__()
        _check_args('ECBSRET', num_in_ch, num_out_ch, upscale, num_block, num_feat, act_type)
        width = num_feat + ET_EXTRA_CHANNELS
        out_ch = inference_out_channels(num_out_ch, upscale)
        self.backbone = nn.Sequential(
            _conv_act(num_in_ch, width, activation(act_type, width)),
            *(_conv_act(width, width, activation(act_type, width)) for _ in range(num_block)),
            _conv_act(width, out_ch, nn.ReLU()),
            nn.Sequential(nn.Conv2d(out_ch, out_ch, 1), nn.ReLU()))
        self.upsampler = nn.PixelShuffle(upscale)
        self.num_image_ch = num_out_ch * upscale**2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsampler(self.backbone(x)[:, :self.num_image_ch])  # drops the x3 dummy channel
