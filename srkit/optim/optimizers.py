"""Optimizers by name: srkit's registry first, then any ``torch.optim`` optimizer class.

No if-chain: an option file's ``type: AdamW`` resolves through this one look-up, and an unknown name
fails with the closest valid one.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from srkit.core.registry import OPTIMIZER_REGISTRY

__all__ = ['get_optimizer_class', 'build_optimizer']

# The ones BasicSR-style option files use, registered so they are listed and looked up first.
for _cls in (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD):
    OPTIMIZER_REGISTRY.register(_cls)


def _torch_optimizers() -> dict[str, type]:
    return {name: obj for name, obj in vars(torch.optim).items()
            if isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer) and obj is not torch.optim.Optimizer}


OPTIMIZER_REGISTRY.set_fallback(_torch_optimizers)


def get_optimizer_class(name: str) -> type:
    """The optimizer class called ``name`` (srkit's registered ones, then any torch.optim class)."""
    return OPTIMIZER_REGISTRY.get(name)


def build_optimizer(name: str, params: Iterable[Any], **kwargs: Any) -> torch.optim.Optimizer:
    """Construct the optimizer ``name`` over ``params`` (tensors or param-group dicts).

    torch.optim checks some arguments by using them (``betas: []`` raises IndexError inside Adam): from a torch
    class such an error is the options' fault, so it becomes a ValueError, which reports it as the user's.
    """
    cls = get_optimizer_class(name)
    try:
        return cls(params, **kwargs)
    except (IndexError, TypeError) as exc:
        if not cls.__module__.startswith('torch.'):
            raise
        raise ValueError(f'torch.optim.{cls.__name__} refused these arguments ({type(exc).__name__}: {exc})') from None
