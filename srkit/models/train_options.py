"""The ``train:`` section of SRModel; model classes with extra options subclass it."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Literal

from srkit.utils.errors import OptionError
from srkit.utils.registry import RegistryError
from srkit.utils.typed_options import Component, check_call_arguments

# BasicSR writes each loss as its own `<name>_opt` key; srkit also takes a list under `losses`.
BASICSR_LOSS_KEYS = ('pixel_opt', 'perceptual_opt', 'fft_opt')


@dataclass
class TrainOptions:
    total_iter: int
    optim_g: Component
    scheduler: Component | None = None
    warmup_iter: int = -1
    ema_decay: float = 0.0
    losses: list[Component] = field(default_factory=list)
    pixel_opt: Component | None = None
    perceptual_opt: Component | None = None
    fft_opt: Component | None = None
    grad_clip_norm: float | None = None
    grad_accumulation: int = 1
    amp: Literal['none', 'fp16', 'bf16'] = 'none'
    channels_last: bool = False
    compile: bool = False
    freeze_params: list[str] = field(default_factory=list)
    freeze_iters: int = 0
    max_nonfinite_steps: int = 20

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
        if not self.all_losses():
            raise OptionError(f'Option "{path}" defines no loss: add "{path}.losses" (a list of '
                              f'{{type: L1Loss, loss_weight: 1.0}}) or "{path}.pixel_opt".')

    def all_losses(self) -> list[tuple[str, Component]]:
        """(option path, component) of every loss, BasicSR keys first, then the ``losses`` list."""
        named = [(key, getattr(self, key)) for key in BASICSR_LOSS_KEYS if getattr(self, key) is not None]
        return named + [(f'losses[{i}]', comp) for i, comp in enumerate(self.losses)]

    @classmethod
    def resolve_components(cls, train: 'TrainOptions', path: str) -> None:
        """Check every ``type:`` in the section against the component's signature."""
        from srkit.optim.optimizers import get_optimizer_class
        from srkit.optim.schedulers import get_scheduler_class
        from srkit.utils.registry import LOSS_REGISTRY

        train.optim_g.args = _check(get_optimizer_class, train.optim_g, f'{path}.optim_g', 'optimizer', ('params',))
        if train.scheduler is not None:
            train.scheduler.args = _check(get_scheduler_class, train.scheduler, f'{path}.scheduler', 'scheduler',
                                          ('optimizer',))
        for key, comp in train.all_losses():
            comp.args = _check(LOSS_REGISTRY.get, comp, f'{path}.{key}', 'loss', ())


def _check(lookup, comp: Component, path: str, what: str, skip: tuple[str, ...]) -> dict:
    try:
        target = lookup(comp.type)
    except (RegistryError, KeyError, ValueError) as exc:
        raise OptionError(f'Option "{path}.type": {exc}') from None
    skip = tuple(p for p in skip if p in inspect.signature(target).parameters)
    return check_call_arguments(target, comp.args, path, skip=skip, what=f'{what} {comp.type}')
