"""The ``train:`` section of SRModel; model classes with extra options subclass it."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Literal

from srkit.config.typed_options import Component, check_call_arguments, option
from srkit.core.errors import OptionError
from srkit.core.registry import RegistryError

# BasicSR writes each loss as its own `<name>_opt` key; srkit also takes a list under `losses`.
BASICSR_LOSS_KEYS = ('pixel_opt', 'perceptual_opt', 'fft_opt')


@dataclass
class TrainOptions:
    total_iter: int = option(doc='Number of training iterations (optimizer steps).')
    optim_g: Component = option(doc='Optimizer: {type: Adam|AdamW|SGD|any torch.optim class, lr: ..., ...}.')
    scheduler: Component | None = option(None, 'LR scheduler, stepped every iteration: MultiStepRestartLR, '
                                               'CosineAnnealingRestartLR or any torch.optim.lr_scheduler class.')
    warmup_iter: int = option(-1, 'Linear learning-rate warm-up over this many iterations (-1: none).')
    ema_decay: float = option(0.0, 'EMA of parameters and buffers (e.g. 0.999); 0 disables it.')
    losses: list[Component] = option(doc='Losses as a list: [{type: L1Loss, loss_weight: 1.0}, ...]; each is '
                                         'logged.', factory=list)
    pixel_opt: Component | None = option(None, 'BasicSR-style pixel loss (added to losses).')
    perceptual_opt: Component | None = option(None, 'BasicSR-style perceptual loss (added to losses).')
    fft_opt: Component | None = option(None, 'BasicSR-style FFT loss (added to losses).')
    grad_clip_norm: float | None = option(None, 'Clip the gradient norm to this value.')
    grad_accumulation: int = option(1, 'Batches accumulated into one optimizer step.')
    amp: Literal['none', 'fp16', 'bf16'] = option('none', 'Mixed precision (fp16 needs CUDA; bf16 runs on CPU too).')
    channels_last: bool = option(True, 'channels_last memory format for the network and batches (only where the '
                                       "architecture's ArchSpec says channels_last_safe; the fastest exact path).")
    compile: bool = option(False, 'torch.compile the training network (static shapes: each batch shape is compiled '
                                  'once; minutes on a CPU, see docs/GPU.md).')
    freeze_params: list[str] = option(doc='Glob patterns of parameter names frozen for the first freeze_iters '
                                          'iterations (e.g. train a new tail first).', factory=list)
    freeze_iters: int = option(0, 'How many iterations freeze_params stay frozen.')
    max_nonfinite_steps: int = option(20, 'Stop after this many consecutive steps with a NaN/Inf loss or '
                                          'gradient (each such step is skipped).')

    def check(self, path: str) -> None:
        if self.total_iter < 1:
            raise OptionError(f'Option "{path}.total_iter" must be >= 1, got {self.total_iter}.')
        if not 0.0 <= self.ema_decay < 1.0:
            raise OptionError(f'Option "{path}.ema_decay" must be in [0, 1) (0 disables EMA), got {self.ema_decay}.')
        if self.grad_accumulation < 1:
            raise OptionError(f'Option "{path}.grad_accumulation" must be >= 1, got {self.grad_accumulation}.')
        if self.max_nonfinite_steps < 1:
            raise OptionError(f'Option "{path}.max_nonfinite_steps" must be >= 1.')
        if self.freeze_iters and not self.freeze_params:
            raise OptionError(f'Option "{path}.freeze_iters" is set but "{path}.freeze_params" names no parameters.')
        if not self.defines_a_loss():
            raise OptionError(f'Option "{path}" defines no loss: add "{path}.losses" (a list of '
                              f'{{type: L1Loss, loss_weight: 1.0}}) or "{path}.pixel_opt".')

    def defines_a_loss(self) -> bool:
        """Whether the section trains towards anything (a model with losses of its own overrides this)."""
        return bool(self.all_losses())

    def all_losses(self) -> list[tuple[str, Component]]:
        """(option path, component) of every loss, BasicSR keys first, then the ``losses`` list."""
        named = [(key, getattr(self, key)) for key in BASICSR_LOSS_KEYS if getattr(self, key) is not None]
        return named + [(f'losses[{i}]', comp) for i, comp in enumerate(self.losses)]

    @classmethod
    def resolve_components(cls, train: 'TrainOptions', path: str) -> None:
        """Check every ``type:`` in the section against the component's signature."""
        from srkit.core.registry import LOSS_REGISTRY
        from srkit.optim.optimizers import get_optimizer_class
        from srkit.optim.schedulers import get_scheduler_class

        train.optim_g.args = check_component(get_optimizer_class, train.optim_g, f'{path}.optim_g', 'optimizer',
                                             ('params',))
        if train.scheduler is not None:
            train.scheduler.args = check_component(get_scheduler_class, train.scheduler, f'{path}.scheduler',
                                                   'scheduler', ('optimizer',))
        for key, comp in train.all_losses():
            comp.args = check_component(LOSS_REGISTRY.get, comp, f'{path}.{key}', 'loss', ())
            if getattr(LOSS_REGISTRY.get(comp.type), 'adversarial', False):
                raise OptionError(f'Option "{path}.{key}": {comp.type} scores a discriminator\'s output, not an image '
                                  f'against its ground truth; give it as "{path}.gan_opt" of a GAN model '
                                  '(model_type SRGANModel or RealESRGANModel, with network_d).', key=f'{path}.{key}')


def check_component(lookup: Any, comp: Component, path: str, what: str, skip: tuple[str, ...]) -> dict:
    """``comp``'s arguments checked against the signature of what ``lookup`` finds under its type."""
    try:
        target = lookup(comp.type)
    except (RegistryError, KeyError, ValueError) as exc:
        raise OptionError(f'Option "{path}.type": {exc}') from None
    skip = tuple(p for p in skip if p in inspect.signature(target).parameters)
    return check_call_arguments(target, comp.args, path, skip=skip, what=f'{what} {comp.type}')
