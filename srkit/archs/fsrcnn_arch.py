"""FSRCNN (Dong et al., ECCV 2016) as the ETDS paper trained it for its comparison table.

Layers, names (``first_part``, ``mid_part``, ``last_part``), the one argument ``upscale`` and the
initialisation follow ECNUSR/ETDS ``core/archs/ir/FSRCNN/arch.py`` (commit 64ad1b8), so its option files and
released ``FSRCNN_x{2,3,4}.pth`` work as they are and training from scratch starts where the official one
does. That version fixes FSRCNN's hyper-parameters at d=56, s=12, m=4 and 3 colours; only the last layer, a
9x9 transposed conv of stride ``upscale``, depends on the scale, and its parameter count does not.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from srkit.archs.spec import ArchSpec, require_positive
from srkit.core.registry import ARCH_REGISTRY

__all__ = ['FSRCNN']

COLORS, D, S, M = 3, 56, 12, 4  # FSRCNN(d, s, m) of the paper, as the ETDS repository fixes them


def _init(layer: nn.Conv2d | nn.ConvTranspose2d, std: float) -> None:
    """Normal weights of ``std`` and a zero bias (every FSRCNN layer has one)."""
    assert layer.bias is not None
    nn.init.normal_(layer.weight, mean=0.0, std=std)
    nn.init.zeros_(layer.bias)


def _conv_prelu(in_ch: int, out_ch: int, kernel_size: int) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2), nn.PReLU(out_ch)]


# Convs, PReLUs and one transposed conv: local, any integer scale; 24683 parameters at every scale (the
# released checkpoints).
@ARCH_REGISTRY.register(meta=ArchSpec(scales=(), params={2: 24683, 3: 24683, 4: 24683}))
class FSRCNN(nn.Module):
    """Feature extraction (5x5, d), shrinking (1x1, s), m mapping convs (3x3, s), expanding (1x1, d), each
    with a PReLU, then a 9x9 transposed conv of stride ``upscale`` to the image (no activation)."""

    def __init__(self, upscale: int = 4) -> None:
        super().__init__()
        require_positive(upscale=upscale)
        self.first_part = nn.Sequential(*_conv_prelu(COLORS, D, 5))
        mid = _conv_prelu(D, S, 1)  # shrinking, mapping, expanding: created in the official order
        for _ in range(M):
            mid += _conv_prelu(S, S, 3)
        self.mid_part = nn.Sequential(*mid, *_conv_prelu(S, D, 1))
        # padding 4 and output_padding upscale - 1 make the output exactly upscale times the input.
        self.last_part = nn.ConvTranspose2d(D, COLORS, 9, stride=upscale, padding=4, output_padding=upscale - 1)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        """The official initialisation, in its order (so one seed gives the same weights): He-normal convs
        (fan-out), zero biases, and a last layer of std 0.001 that starts the output near zero."""
        for conv in (*self.first_part, *self.mid_part):
            if isinstance(conv, nn.Conv2d):
                _init(conv, std=math.sqrt(2 / (conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1])))
        _init(self.last_part, std=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_part(self.mid_part(self.first_part(x)))
