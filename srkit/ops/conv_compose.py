"""Two convolutions in a row are one convolution: the identity behind re-parameterisation (ETDS, appendix).

``conv(conv(x, w2, b2), w1, b1)`` (stride 1, no padding in between) equals ``conv(x, w3, b3)`` with a
``(k1 + k3 - 1) x (k2 + k4 - 1)`` kernel: ``w3`` is the full 2-D convolution of the two kernels over their
spatial axes, with a matrix product over the middle channels, and ``b3 = b1 + sum(w1) @ b2``. Converters
(ECBSR's branches, ETDS's and ABPN's Equivalent Transformation) fold layers with it.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ['compose_convs']


def compose_convs(w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of the one conv equal to ``w2, b2`` followed by ``w1, b1`` (ungrouped, stride 1)."""
    out_ch, mid_ch, k1, k2 = w1.shape
    if w2.shape[0] != mid_ch or b1.shape != (out_ch,) or b2.shape != (mid_ch,):
        raise ValueError(f'kernels {tuple(w1.shape)} after {tuple(w2.shape)} (biases {tuple(b1.shape)}, '
                         f'{tuple(b2.shape)}) do not chain')
    # Each input channel i of w2 is a batch item whose mid_ch channels are w2[:, i]; a full convolution with w1
    # (cross-correlation with the flipped kernel over a padded input) gives w3[:, i].
    spread = F.conv2d(F.pad(w2.transpose(0, 1), (k2 - 1, k2 - 1, k1 - 1, k1 - 1)), w1.flip(2, 3))
    return spread.transpose(0, 1), b1 + torch.einsum('omhw,m->o', w1, b2)
