"""The adversarial loss of GAN-trained SR models (ESRGAN, Real-ESRGAN, LDL), with BasicSR's semantics.

Unlike every other srkit loss it does not compare two images: it scores a discriminator's prediction
against a side, ``forward(prediction, target_is_real, is_disc=False)``. A GAN model calls it itself (once
for the generator, twice for the discriminator); it has no place in SRModel's list of pixel losses, which
calls ``loss(output, gt)``, so a tensor given as ``target_is_real`` is refused with a TypeError.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from srkit.core.registry import LOSS_REGISTRY, closest_name

__all__ = ['GANLoss', 'GAN_TYPES']

GAN_TYPES = ('vanilla', 'lsgan', 'wgan', 'wgan_softplus', 'hinge')


@LOSS_REGISTRY.register
class GANLoss(nn.Module):
    """BasicSR's ``GANLoss``: one of GAN_TYPES, scored against real/fake labels or signs.

    * vanilla: BCE-with-logits against ``real_label_val`` / ``fake_label_val``;
    * lsgan: MSE against the same labels;
    * wgan: ``-mean(x)`` for real, ``mean(x)`` for fake;
    * wgan_softplus: ``mean(softplus(-x))`` for real, ``mean(softplus(x))`` for fake (StyleGAN2's logistic
      / non-saturating loss);
    * hinge: for the discriminator ``mean(relu(1 - x))`` for real, ``mean(relu(1 + x))`` for fake; for the
      generator ``-mean(x)`` whatever ``target_is_real`` says.

    ``loss_weight`` scales the generator's loss only: the discriminator is trained by this loss alone, so
    a weight there would only rescale its learning rate.
    """

    adversarial = True  # scores a discriminator's output: the option checks keep it out of the pixel-loss lists

    def __init__(self, gan_type: str, real_label_val: float = 1.0, fake_label_val: float = 0.0,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        if gan_type not in GAN_TYPES:
            hint = closest_name(gan_type, GAN_TYPES)
            raise ValueError(f'GANLoss: unknown gan_type "{gan_type}".{f" Did you mean {hint!r}?" if hint else ""} '
                             f'Known: {", ".join(GAN_TYPES)}.')
        self.gan_type = gan_type
        self.real_label_val = real_label_val
        self.fake_label_val = fake_label_val
        self.loss_weight = loss_weight

    def forward(self, prediction: Tensor, target_is_real: bool, is_disc: bool = False) -> Tensor:
        if not isinstance(target_is_real, bool):
            raise TypeError(f'GANLoss scores a discriminator prediction against a side: target_is_real must be a '
                            f'bool, got {type(target_is_real).__name__}. It is not a pixel loss (loss(output, gt)); '
                            'a GAN model calls it.')
        loss = self._unweighted(prediction, target_is_real, is_disc)
        return loss if is_disc else self.loss_weight * loss

    def _unweighted(self, x: Tensor, real: bool, is_disc: bool) -> Tensor:
        if self.gan_type in ('vanilla', 'lsgan'):
            label = x.new_full(x.shape, self.real_label_val if real else self.fake_label_val)
            if self.gan_type == 'vanilla':
                return F.binary_cross_entropy_with_logits(x, label)
            return F.mse_loss(x, label)
        if self.gan_type == 'wgan':
            return -x.mean() if real else x.mean()
        if self.gan_type == 'wgan_softplus':
            return F.softplus(-x).mean() if real else F.softplus(x).mean()
        if is_disc:  # hinge
            return F.relu(1 - x).mean() if real else F.relu(1 + x).mean()
        return -x.mean()
