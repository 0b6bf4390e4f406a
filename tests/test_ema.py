"""ModelEMA: closed-form averages, copied buffers, isolation from the live model, DDP unwrapping."""
from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch import nn

from srkit.core.errors import OptionError
from srkit.models.ema import ModelEMA


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


def set_params(model: nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)


def test_updates_follow_the_closed_form() -> None:
    model = net()
    ema = ModelEMA(model, decay=0.9)
    start = [p.detach().clone() for p in model.parameters()]
    set_params(model, 2.0)
    for _ in range(3):
        ema.update(model)
    # With the live weights held at p: ema_k = p + decay^k * (ema_0 - p).
    for averaged, initial in zip(ema.module.parameters(), start):
        assert torch.allclose(averaged, 2.0 + 0.9 ** 3 * (initial - 2.0), atol=1e-6)
    set_params(model, -1.0)
    ema.update(model)
    for averaged, initial in zip(ema.module.parameters(), start):
        assert torch.allclose(averaged, 0.9 * (2.0 + 0.9 ** 3 * (initial - 2.0)) + 0.1 * -1.0, atol=1e-6)


def test_buffers_are_copied_not_averaged() -> None:
    model = net()
    ema = ModelEMA(model, decay=0.5)
    model.train()
    model(torch.rand(2, 3, 8, 8))  # moves running stats and num_batches_tracked
    ema.update(model)
    bn_live, bn_ema = model[1], ema.module[1]
    assert torch.equal(bn_ema.running_mean, bn_live.running_mean)
    assert torch.equal(bn_ema.running_var, bn_live.running_var)
    assert bn_ema.num_batches_tracked.item() == 1


def test_average_is_frozen_in_eval_mode_and_separate_from_the_live_model() -> None:
    model = net()
    ema = ModelEMA(model)
    assert not ema.module.training
    assert not any(p.requires_grad for p in ema.module.parameters())
    assert all(p.requires_grad for p in model.parameters())
    set_params(model, 5.0)
    assert not any(torch.equal(p, torch.full_like(p, 5.0)) for p in ema.module.parameters())


def test_state_dict_round_trip() -> None:
    model = net()
    ema = ModelEMA(model, decay=0.7)
    set_params(model, 1.0)
    ema.update(model)
    other = ModelEMA(net(), decay=0.7)
    other.load_state_dict(ema.state_dict())
    for key, value in ema.state_dict().items():
        assert torch.equal(other.state_dict()[key], value)


def test_bad_decay_is_an_option_error() -> None:
    with pytest.raises(OptionError, match='decay'):
        ModelEMA(net(), decay=1.5)


def test_ddp_wrapped_model_is_unwrapped(tmp_path) -> None:
    dist.init_process_group('gloo', init_method=f'file://{tmp_path / "store"}', rank=0, world_size=1)
    try:
        bare = net()
        wrapped = nn.parallel.DistributedDataParallel(net())
        ema_bare, ema_wrapped = ModelEMA(bare, decay=0.8), ModelEMA(wrapped, decay=0.8)
        assert set(ema_wrapped.state_dict()) == set(bare.state_dict())  # no 'module.' prefix
        set_params(bare, 3.0)
        set_params(wrapped, 3.0)
        ema_bare.update(bare)
        ema_wrapped.update(wrapped)
        for key, value in ema_bare.state_dict().items():
            assert torch.equal(ema_wrapped.state_dict()[key], value)
    finally:
        dist.destroy_process_group()
