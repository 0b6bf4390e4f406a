"""Optimizer / scheduler look-up, BasicSR schedule values, warm-up and exact resume."""
from __future__ import annotations

import io
import math

import pytest
import torch

from srkit.core.errors import OptionError
from srkit.core.registry import OPTIMIZER_REGISTRY, SCHEDULER_REGISTRY, RegistryError
from srkit.optim.optimizers import build_optimizer, get_optimizer_class
from srkit.optim.schedulers import CosineAnnealingRestartLR, MultiStepRestartLR, get_scheduler_class, warmup_factor


def sgd(lr: float = 1.0) -> torch.optim.SGD:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def rates(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list[float]:
    """The rate used at iterations 0 .. steps-1 (stepped once per iteration, after the optimizer)."""
    out = []
    for _ in range(steps):
        out.append(scheduler.optimizer.param_groups[0]['lr'])
        scheduler.optimizer.step()
        scheduler.step()
    return out


def test_optimizers_resolve_registry_then_torch() -> None:
    assert {'Adam', 'AdamW', 'SGD'} <= set(OPTIMIZER_REGISTRY.names())
    assert get_optimizer_class('AdamW') is torch.optim.AdamW
    assert get_optimizer_class('RAdam') is torch.optim.RAdam  # not registered: found in torch.optim
    opt = build_optimizer('Adam', [torch.nn.Parameter(torch.zeros(2))], lr=2e-4, betas=[0.9, 0.99])
    assert isinstance(opt, torch.optim.Adam) and tuple(opt.param_groups[0]['betas']) == (0.9, 0.99)


def test_arguments_a_torch_optimizer_trips_over_are_the_users() -> None:
    """Adam indexes ``betas``: an empty list raises IndexError inside torch, which is the options' fault."""
    from srkit.config.typed_options import construct

    params = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(OptionError, match='train.optim_g.*torch.optim.Adam refused these arguments'):
        construct('train.optim_g', build_optimizer, name='Adam', params=params, lr=1e-3, betas=[])


def test_unknown_optimizer_names_the_closest() -> None:
    with pytest.raises(RegistryError, match='AdamW'):
        get_optimizer_class('Adamw_')
    with pytest.raises(RegistryError):
        get_optimizer_class('Optimizer')  # the abstract base is not an optimizer one can train with


def test_schedulers_resolve_registry_then_torch() -> None:
    assert {'MultiStepRestartLR', 'CosineAnnealingRestartLR'} <= set(SCHEDULER_REGISTRY.names())
    assert get_scheduler_class('MultiStepLR') is torch.optim.lr_scheduler.MultiStepLR
    scheduler = get_scheduler_class('CosineAnnealingLR')(sgd(), T_max=10)
    assert isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR)
    with pytest.raises(RegistryError, match='MultiStepRestartLR'):
        get_scheduler_class('MultiStepRestartLr')
    with pytest.raises(RegistryError, match='validation metric'):
        get_scheduler_class('ReduceLROnPlateau')


def test_multistep_restart_matches_basicsr_rates() -> None:
    scheduler = MultiStepRestartLR(sgd(), milestones=[2, 4, 5, 7, 7], gamma=0.5, restarts=[0, 5],
                                   restart_weights=[1, 0.5])
    # 5 is both a milestone and a restart: the restart wins; 7 is listed twice: two decays.
    expected = [1, 1, 0.5, 0.5, 0.25, 0.5, 0.5, 0.125, 0.125]
    assert rates(scheduler, 9) == pytest.approx(expected)


def test_cosine_restart_matches_basicsr_rates() -> None:
    scheduler = CosineAnnealingRestartLR(sgd(2.0), periods=[4, 4], restart_weights=[1, 0.5], eta_min=0.1)

    def cosine(weight: float, t: int, period: int) -> float:
        return 0.1 + weight * (2.0 - 0.1) * 0.5 * (1 + math.cos(math.pi * t / period))

    expected = [cosine(1, t, 4) for t in range(5)] + [cosine(0.5, t, 4) for t in range(1, 5)] + [0.1, 0.1]
    assert rates(scheduler, 11) == pytest.approx(expected)
    assert expected[4] == pytest.approx(0.1) and expected[5] < 2.0 * 0.5


def test_mismatched_restart_lists_are_option_errors() -> None:
    with pytest.raises(OptionError, match='restart_weights'):
        MultiStepRestartLR(sgd(), milestones=[1], restarts=[0, 5], restart_weights=[1])
    with pytest.raises(OptionError, match='restart_weights'):
        CosineAnnealingRestartLR(sgd(), periods=[4, 4])


def test_warmup_is_linear_until_warmup_iter() -> None:
    assert warmup_factor(3, 10) == pytest.approx(0.3)
    assert warmup_factor(10, 10) == 1.0
    assert warmup_factor(3, -1) == 1.0


def test_rate_after_warmup_is_the_schedules_not_the_last_warmup_value() -> None:
    scheduler = MultiStepRestartLR(sgd(1.0), milestones=[100])
    for it in range(1, 4):  # BasicSR-style: step, then overwrite the rate while warming up
        scheduler.optimizer.step()
        scheduler.step()
        scheduler.optimizer.param_groups[0]['lr'] = 1.0 * warmup_factor(it, 4)
    scheduler.optimizer.step()
    scheduler.step()
    assert scheduler.optimizer.param_groups[0]['lr'] == 1.0


@pytest.mark.parametrize('name, kwargs', [
    ('MultiStepRestartLR', dict(milestones=[3, 6, 9], gamma=0.5, restarts=[0, 7], restart_weights=[1, 0.5])),
    ('CosineAnnealingRestartLR', dict(periods=[5, 6], restart_weights=[1, 0.5], eta_min=1e-3)),
    ('CosineAnnealingLR', dict(T_max=8, eta_min=1e-3)),
])
def test_resume_reproduces_the_uninterrupted_run(name, kwargs) -> None:
    def build() -> tuple[torch.nn.Parameter, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        weight = torch.nn.Parameter(torch.linspace(-1, 1, 4))
        optimizer = build_optimizer('Adam', [weight], lr=0.1)
        return weight, optimizer, get_scheduler_class(name)(optimizer, **kwargs)

    def train(weight, optimizer, scheduler, steps: int) -> list[float]:
        seen = []
        for _ in range(steps):
            optimizer.zero_grad()
            (weight ** 2).sum().backward()
            optimizer.step()
            scheduler.step()
            seen.append(optimizer.param_groups[0]['lr'])
        return seen

    weight, optimizer, scheduler = build()
    uninterrupted = train(weight, optimizer, scheduler, 14)
    final = weight.detach().clone()

    weight, optimizer, scheduler = build()
    first = train(weight, optimizer, scheduler, 6)
    buffer = io.BytesIO()
    torch.save({'w': weight.detach(), 'opt': optimizer.state_dict(), 'sched': scheduler.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    weight, optimizer, scheduler = build()
    with torch.no_grad():
        weight.copy_(saved['w'])
    optimizer.load_state_dict(saved['opt'])
    scheduler.load_state_dict(saved['sched'])
    resumed = first + train(weight, optimizer, scheduler, 8)
    assert resumed == uninterrupted
    assert torch.equal(weight.detach(), final)


@pytest.mark.parametrize('scheduler, arguments, named', [
    ('CosineAnnealingRestartLR', {'periods': [None]}, 'periods'),
    ('CosineAnnealingRestartLR', {'periods': None}, 'periods'),
    ('CosineAnnealingRestartLR', {'periods': [10], 'restart_weights': ['a']}, 'restart_weights'),
    ('CosineAnnealingRestartLR', {'periods': [10], 'eta_min': None}, 'eta_min'),
    ('CosineAnnealingRestartLR', {'periods': [0]}, 'periods'),
    ('MultiStepRestartLR', {'milestones': 5}, 'milestones'),
    ('MultiStepRestartLR', {'milestones': [5], 'gamma': None}, 'gamma'),
    ('MultiStepRestartLR', {'milestones': [5], 'restarts': [True]}, 'restarts'),
])
def test_restart_schedulers_name_a_wrong_argument(scheduler, arguments, named):
    """Their arguments come untyped from the option file: a wrong one is an OptionError naming it, never a
    TypeError inside the arithmetic (which srkit would report as its own bug)."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(OptionError, match=named):
        get_scheduler_class(scheduler)(optimizer, **arguments)
