"""Pixel-space losses (and the FFT loss) with BasicSR's arguments and weighting rules.

Every loss returns ``loss_weight * reduced_loss`` so a model can sum a list of losses without knowing
their kinds.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from srkit.core.errors import OptionError
from srkit.core.registry import LOSS_REGISTRY

__all__ = ['L1Loss', 'MSELoss', 'CharbonnierLoss', 'FFTLoss', 'reduce_loss']

REDUCTIONS = ('none', 'mean', 'sum')


def check_reduction(owner: str, reduction: str) -> str:
    """Fail at construction, not at the first training step, on a misspelt reduction."""
    if reduction not in REDUCTIONS:
        raise OptionError(f'{owner}: reduction must be one of {", ".join(REDUCTIONS)}; got "{reduction}".')
    return reduction


def reduce_loss(loss: Tensor, weight: Tensor | None, reduction: str) -> Tensor:
    """Apply an element-wise ``weight`` (broadcastable to ``loss``) and reduce.

    A weighted mean divides by the sum of the weights over every element, as BasicSR does (a weight of
    shape (N, 1, H, W) counts once per channel), so a mask of ones gives the plain mean.
    """
    if weight is not None:
        loss = loss * weight
    if reduction == 'none':
        return loss
    if reduction == 'sum':
        return loss.sum()
    if weight is None:
        return loss.mean()
    return loss.sum() / weight.expand_as(loss).sum().clamp_min(1e-12)


class _PixelLoss(nn.Module):
    """Shared constructor and forward; subclasses define the element-wise ``_elementwise``."""

    def __init__(self, loss_weight: float = 1.0, reduction: str = 'mean') -> None:
        super().__init__()
        self.loss_weight = loss_weight
        self.reduction = check_reduction(type(self).__name__, reduction)

    def _elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        return self.loss_weight * reduce_loss(self._elementwise(pred, target), weight, self.reduction)


@LOSS_REGISTRY.register
class L1Loss(_PixelLoss):
    """Mean absolute error."""

    def _elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        return (pred - target).abs()


@LOSS_REGISTRY.register
class MSELoss(_PixelLoss):
    """Mean squared error."""

    def _elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        return (pred - target).square()


@LOSS_REGISTRY.register
class CharbonnierLoss(_PixelLoss):
    """sqrt((pred - target)^2 + eps): a differentiable L1; ``eps`` defaults to BasicSR's 1e-12."""

    def __init__(self, loss_weight: float = 1.0, reduction: str = 'mean', eps: float = 1e-12) -> None:
        super().__init__(loss_weight, reduction)
        self.eps = eps

    def _elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        return torch.sqrt((pred - target).square() + self.eps)


@LOSS_REGISTRY.register
class FFTLoss(_PixelLoss):
    """L1 between the real 2-D FFTs of pred and target, real and imaginary parts stacked last.

    As the optional frequency loss of EIMN / IGConv+. The transform runs in float32 because half-precision
    FFTs only accept power-of-two sizes. A pixel weight has no meaning per frequency, so none is taken.
    """

    def _elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        pred_f = torch.fft.rfft2(pred.float())
        target_f = torch.fft.rfft2(target.float())
        return (torch.view_as_real(pred_f) - torch.view_as_real(target_f)).abs()

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        if weight is not None:
            raise TypeError('FFTLoss takes no pixel weight: the loss is computed per frequency, not per pixel.')
        return super().forward(pred, target)
