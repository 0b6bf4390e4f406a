"""Turning an official release's checkpoint into srkit's parameter names, and saying exactly why it
does not fit a network when it does not.

Official files come in several wrappings: BasicSR's ``{'params_ema': ..., 'params': ...}``, a
DataParallel ``module.`` prefix, a whole model kept as one ``model`` attribute. The generic steps undo
those; what is left is the architecture's business (``ArchSpec.official_keys``).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from srkit.archs import arch_spec
from srkit.utils.errors import CheckpointError

__all__ = ['adapt_official_state_dict', 'check_state_dict', 'strip_prefix', 'unwrap_state_dict']

_WRAPPER_KEYS = ('params_ema', 'params', 'state_dict')
_PREFIXES = ('module.', 'model.')


def unwrap_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint: the EMA weights when present (the ones papers report), else ``params``."""
    for key in _WRAPPER_KEYS:
        inner = checkpoint.get(key)
        if isinstance(inner, Mapping):
            return dict(inner)
    return dict(checkpoint)


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Drop ``prefix`` from every key, but only when every key has it (a partial match is a real name)."""
    if state_dict and all(key.startswith(prefix) for key in state_dict):
        return {key[len(prefix):]: value for key, value in state_dict.items()}
    return dict(state_dict)


def adapt_official_state_dict(arch_name: str, state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """An official checkpoint's state dict under the registered architecture ``arch_name``'s names.

    Unwraps ``params_ema``/``params``, strips ``module.`` then ``model.`` where every key carries it,
    then applies the architecture's ``official_keys`` (if it declares one).
    """
    adapted = unwrap_state_dict(state_dict)
    for prefix in _PREFIXES:
        adapted = strip_prefix(adapted, prefix)
    official_keys = arch_spec(arch_name).official_keys
    return dict(official_keys(adapted)) if official_keys is not None else adapted


def check_state_dict(net: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Raise CheckpointError unless ``state_dict`` fits ``net`` exactly (the strict-load contract).

    The message leads with the first mismatched key and both shapes, which usually names the cause
    (wrong scale: the tail; wrong preset: a missing block), then counts the rest.
    """
    expected = net.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    misshaped = [key for key in expected if key in state_dict
                 and tuple(state_dict[key].shape) != tuple(expected[key].shape)]
    if not (missing or unexpected or misshaped):
        return
    problems = []
    if misshaped:
        key = misshaped[0]
        problems.append(f'"{key}" has shape {tuple(state_dict[key].shape)} in the checkpoint but '
                        f'{tuple(expected[key].shape)} in the network ({len(misshaped)} mis-shaped in all)')
    if missing:
        problems.append(f'{len(missing)} network keys are missing from the checkpoint, first "{missing[0]}" '
                        f'{tuple(expected[missing[0]].shape)}')
    if unexpected:
        problems.append(f'{len(unexpected)} checkpoint keys are not in the network, first "{unexpected[0]}" '
                        f'{tuple(state_dict[unexpected[0]].shape)}')
    raise CheckpointError(f'The checkpoint does not fit {type(net).__name__}: ' + '; '.join(problems) + '.')
