"""LDL's artifact map (Liang et al., "Details or Artifacts", CVPR 2022), as BasicSR's
``get_refined_artifact_map``.

A GAN-trained SR network produces both realistic detail and artifacts; both differ from the ground truth,
but artifacts are where the residual is locally erratic *and* where the network's EMA copy (a smoother,
more stable version of it) is closer to the truth. The map weights an extra pixel loss,
``artifacts_opt(map * output, map * gt)``, that pulls only those pixels back. Gradients flow through the map
as in the authors' code (the EMA output is computed without a graph by the model).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['refined_artifact_map', 'local_variance']


def local_variance(x: Tensor, kernel_size: int) -> Tensor:
    """Unbiased variance of each ``kernel_size`` square window around every pixel, reflect-padded: NCHW -> NCHW.

    E[x^2] - E[x]^2 over box filters (no kernel_size^2 copies of the image), on values centred per image
    first so that the difference does not cancel a large mean away.
    """
    centred = x - x.mean(dim=(-2, -1), keepdim=True)
    pad = kernel_size // 2
    padded = F.pad(centred, (pad, pad, pad, pad), mode='reflect')
    mean = F.avg_pool2d(padded, kernel_size, stride=1)
    mean_sq = F.avg_pool2d(padded.square(), kernel_size, stride=1)
    n = kernel_size * kernel_size
    return (mean_sq - mean.square()).clamp_min(0) * (n / (n - 1))


def refined_artifact_map(gt: Tensor, output: Tensor, output_ema: Tensor, kernel_size: int = 7) -> Tensor:
    """Per-pixel artifact weight, shape (N, 1, H, W), non-negative.

    residual = sum over channels of |gt - output|; weight = var(residual over the image)^(1/5) (the image's
    share) * local variance of the residual in a ``kernel_size`` window (the pixel's share), set to 0
    where the EMA output's residual is larger than the output's (there the output is no worse).
    """
    if not gt.shape == output.shape == output_ema.shape or gt.dim() != 4:
        raise ValueError(f'gt, output and output_ema must be NCHW tensors of one shape, got {tuple(gt.shape)}, '
                         f'{tuple(output.shape)} and {tuple(output_ema.shape)}')
    if kernel_size < 3 or kernel_size % 2 == 0:
        raise ValueError(f'kernel_size must be an odd number >= 3 (a window centred on the pixel), got {kernel_size}')
    if min(gt.shape[-2:]) <= kernel_size // 2:
        raise ValueError(f'images of {tuple(gt.shape[-2:])} pixels are too small for a {kernel_size}x{kernel_size} '
                         'reflect-padded window')
    residual = (gt - output).abs().sum(dim=1, keepdim=True)
    residual_ema = (gt - output_ema).abs().sum(dim=1, keepdim=True)
    image_weight = residual.var(dim=(1, 2, 3), keepdim=True).pow(1 / 5)
    weight = image_weight * local_variance(residual, kernel_size)
    return torch.where(residual < residual_ema, torch.zeros_like(weight), weight)
