"""Learning-rate schedulers, stepped once per iteration, and BasicSR's linear warm-up.

BasicSR's two restart schedulers are reimplemented in closed form: the rate at iteration t depends only
on t and the initial rates, so a resume (or a warm-up that overwrote ``group['lr']``) can never leave a
stale rate behind. Any ``torch.optim.lr_scheduler`` class can also be named.
"""
from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

from torch import Tensor
from torch.optim import Optimizer, lr_scheduler

from srkit.core.errors import OptionError
from srkit.core.registry import SCHEDULER_REGISTRY, RegistryError

__all__ = ['MultiStepRestartLR', 'CosineAnnealingRestartLR', 'get_scheduler_class', 'warmup_factor']


def _numbers(scheduler: str, name: str, values: object, kind: type, positive: bool = False) -> list:
    """``values`` as a list of ``kind`` (int: iteration counts; float: weights, ints accepted), or an OptionError
    naming the argument: these come untyped from the option file, and a wrong entry must not reach the
    arithmetic below as a TypeError (a bug's exit)."""
    accepted = (int,) if kind is int else (int, float)
    if (not isinstance(values, (list, tuple)) or any(isinstance(v, bool) or not isinstance(v, accepted)
                                                       for v in values)):
        raise OptionError(f'{scheduler}: {name} must be a list of {"integers" if kind is int else "numbers"}, '
                          f'got {values!r}.')
    if positive and any(v <= 0 for v in values):
        raise OptionError(f'{scheduler}: {name} must be positive iteration counts; got {list(values)}.')
    return list(values)


@SCHEDULER_REGISTRY.register
class MultiStepRestartLR(lr_scheduler.LRScheduler):
    """Multiply the rate by ``gamma`` at each milestone; at a restart, reset it to initial * weight.

    Same rates as BasicSR's: a milestone that coincides with a restart is ignored, milestones may repeat
    (each occurrence multiplies once), and before the first restart the weight is 1.
    """

    def __init__(self, optimizer: Optimizer, milestones: Sequence[int], gamma: float = 0.1,
                 restarts: Sequence[int] = (0,), restart_weights: Sequence[float] = (1,)) -> None:
        milestones = _numbers('MultiStepRestartLR', 'milestones', milestones, int)
        [gamma] = _numbers('MultiStepRestartLR', 'gamma', [gamma], float)
        restarts = _numbers('MultiStepRestartLR', 'restarts', restarts, int)
        restart_weights = _numbers('MultiStepRestartLR', 'restart_weights', restart_weights, float)
        if len(restarts) != len(restart_weights):
            raise OptionError(f'MultiStepRestartLR: restarts ({len(restarts)}) and restart_weights '
                              f'({len(restart_weights)}) must have the same length.')
        self.milestones = sorted(milestones)
        self.gamma = gamma
        self.restarts = restarts
        self.restart_weights = restart_weights
        super().__init__(optimizer)

    def get_lr(self) -> list[float | Tensor]:
        step = self.last_epoch
        weight, since = 1.0, -1  # before any restart: milestones from iteration 0 on count
        for restart, restart_weight in zip(self.restarts, self.restart_weights):
            if since < restart <= step:
                weight, since = restart_weight, restart
        decays = bisect.bisect_right(self.milestones, step) - bisect.bisect_right(self.milestones, since)
        return [base_lr * weight * self.gamma**decays for base_lr in self.base_lrs]


@SCHEDULER_REGISTRY.register
class CosineAnnealingRestartLR(lr_scheduler.LRScheduler):
    """Cosine annealing from initial * weight to ``eta_min`` over each of ``periods`` (BasicSR's rates).

    Past the sum of the periods the rate stays at ``eta_min`` (BasicSR fails there).
    """

    def __init__(self, optimizer: Optimizer, periods: Sequence[int], restart_weights: Sequence[float] = (1,),
                 eta_min: float = 0.0) -> None:
        periods = _numbers('CosineAnnealingRestartLR', 'periods', periods, int, positive=True)
        restart_weights = _numbers('CosineAnnealingRestartLR', 'restart_weights', restart_weights, float)
        [eta_min] = _numbers('CosineAnnealingRestartLR', 'eta_min', [eta_min], float)
        if not periods or len(periods) != len(restart_weights):
            raise OptionError(f'CosineAnnealingRestartLR: periods ({len(periods)}) and restart_weights '
                              f'({len(restart_weights)}) must have the same length, at least 1.')
        self.periods = periods
        self.restart_weights = restart_weights
        self.eta_min = eta_min
        self.cumulative_periods = [sum(self.periods[:i + 1]) for i in range(len(self.periods))]
        super().__init__(optimizer)

    def get_lr(self) -> list[float | Tensor]:
        step = self.last_epoch
        if step > self.cumulative_periods[-1]:
            return [self.eta_min for _ in self.base_lrs]
        index = bisect.bisect_left(self.cumulative_periods, step)  # first period whose end is >= step
        start = self.cumulative_periods[index - 1] if index else 0
        cosine = 0.5 * (1 + math.cos(math.pi * (step - start) / self.periods[index]))
        weight = self.restart_weights[index]
        return [self.eta_min + weight * (base_lr - self.eta_min) * cosine for base_lr in self.base_lrs]


# Needs a validation metric at every step, which a per-iteration loop does not have.
_UNSUITABLE = {'ReduceLROnPlateau': 'it must be stepped with a validation metric, and srkit steps '
                                    'schedulers once per iteration without one'}


def _torch_schedulers() -> dict[str, type]:
    return {name: obj for name, obj in vars(lr_scheduler).items()
            if isinstance(obj, type) and issubclass(obj, lr_scheduler.LRScheduler)
            and not name.startswith('_') and name != 'LRScheduler' and name not in _UNSUITABLE}


SCHEDULER_REGISTRY.set_fallback(_torch_schedulers)


def get_scheduler_class(name: str) -> type:
    """The scheduler class called ``name`` (srkit's first, then torch's); RegistryError otherwise."""
    if name in _UNSUITABLE:
        raise RegistryError(f'Scheduler "{name}" cannot be used: {_UNSUITABLE[name]}.')
    return SCHEDULER_REGISTRY.get(name)


def warmup_factor(current_iter: int, warmup_iter: int) -> float:
    """BasicSR's linear warm-up: the rate is scaled by ``current_iter / warmup_iter`` while
    current_iter < warmup_iter, and by 1 from then on (or when ``warmup_iter <= 0``, BasicSR's "no warm-up").

    The caller applies it around the optimizer step only, so the scheduler's own rate stays untouched.
    """
    return current_iter / warmup_iter if 0 < warmup_iter and current_iter < warmup_iter else 1.0
