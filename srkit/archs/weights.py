"""Pretrained weights into srkit networks: official layouts adapted, the fit checked, then loaded.

Official files come in several wrappings: BasicSR's ``{'params_ema': ..., 'params': ...}``, a
DataParallel ``module.`` prefix, a whole model kept as one ``model`` attribute. ``srkit.core.checkpoint``
reads the file and finds the tensors (one list of wrapper keys); this module strips the prefixes, applies
the architecture's own key map (``ArchSpec.official_keys``) and is the one place that decides whether a
state dict fits a network, and says exactly why not.
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from srkit.archs.spec import arch_spec
from srkit.core.checkpoint import extract_state_dict, load_checkpoint_file
from srkit.core.errors import CheckpointError

__all__ = ['FitReport', 'adapt_official_state_dict', 'check_state_dict', 'fit_report', 'load_pretrained',
           'strip_prefix', 'float32_copy', 'check_equivalent']

Net = TypeVar('Net', bound=nn.Module)

logger = logging.getLogger('srkit')
_PREFIXES = ('module.', 'model.')


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Drop ``prefix`` from every key, but only when every key has it (a partial match is a real name)."""
    if state_dict and all(key.startswith(prefix) for key in state_dict):
        return {key[len(prefix):]: value for key, value in state_dict.items()}
    return dict(state_dict)


def adapt_official_state_dict(arch_name: str | None, checkpoint: Mapping[str, Any],
                              source: str = '<checkpoint>') -> dict[str, torch.Tensor]:
    """A checkpoint's tensors under srkit's names for the registered architecture ``arch_name``.

    Unwraps ``params_ema``/``params``/... (the EMA weights first: those are what papers report), strips
    ``module.`` then ``model.`` where every key carries it, then applies the architecture's
    ``official_keys`` (when ``arch_name`` is given and declares one).
    """
    adapted = extract_state_dict(checkpoint, None, source)
    for prefix in _PREFIXES:
        adapted = strip_prefix(adapted, prefix)
    official_keys = arch_spec(arch_name).official_keys if arch_name else None
    return dict(official_keys(adapted)) if official_keys is not None else adapted


@dataclass
class FitReport:
    """How a state dict differs from a network's: keys only the network has, only the file has, or
    both have with different shapes (``(key, file shape, network shape)``)."""

    missing: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)
    unexpected: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)
    misshaped: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.misshaped)

    def as_dict(self) -> dict[str, list[str]]:
        """Key names by kind, mis-shaped ones with both shapes (what ``load_pretrained`` returns and logs)."""
        return {'missing': [k for k, _ in self.missing], 'unexpected': [k for k, _ in self.unexpected],
                'mismatched': [f'{k}: checkpoint {theirs} vs network {ours}' for k, theirs, ours in self.misshaped]}

    def describe(self) -> str:
        """The first mis-shaped key with both shapes (it usually names the cause: the tail for a wrong scale,
        a block for a wrong preset), then the first missing and first unexpected key, with counts."""
        problems = []
        if self.misshaped:
            key, theirs, ours = self.misshaped[0]
            problems.append(f'"{key}" has shape {theirs} in the checkpoint but {ours} in the network '
                            f'({len(self.misshaped)} mis-shaped in all)')
        if self.missing:
            key, shape = self.missing[0]
            problems.append(f'{len(self.missing)} network keys are missing from the checkpoint, first "{key}" {shape}')
        if self.unexpected:
            key, shape = self.unexpected[0]
            problems.append(f'{len(self.unexpected)} checkpoint keys are not in the network, first "{key}" {shape}')
        return '; '.join(problems)


def fit_report(net: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> FitReport:
    own = net.state_dict()
    return FitReport(
        missing=[(k, tuple(v.shape)) for k, v in own.items() if k not in state_dict],
        unexpected=[(k, tuple(v.shape)) for k, v in state_dict.items() if k not in own],
        misshaped=[(k, tuple(state_dict[k].shape), tuple(v.shape)) for k, v in own.items()
                   if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)])


def check_state_dict(net: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str = 'The checkpoint',
                     target: str | None = None, hint: str = '') -> None:
    """Raise CheckpointError unless ``state_dict`` fits ``net`` exactly (the strict-load contract)."""
    report = fit_report(net, state_dict)
    if report:
        raise CheckpointError(f'{source} does not fit {target or type(net).__name__}: {report.describe()} '
                              f'(a checkpoint for another variant or scale?).{" " + hint if hint else ""}')


def load_pretrained(net: nn.Module, path: str | Path, *, param_key: str | None = 'params', strict: bool = True,
                    arch_type: str | None = None, hint: str = '') -> dict[str, list[str]]:
    """Load a checkpoint file (torch or ``.safetensors``, by suffix) into ``net``, adapting official layouts;
    return the keys that did not fit.

    With ``strict``, any difference is a CheckpointError naming the first mismatched key and both shapes,
    followed by ``hint`` (what the caller's user can do about it). Otherwise the matching keys are loaded
    and each kind of difference is logged once.
    """
    state = extract_state_dict(load_checkpoint_file(path), param_key, str(path))
    state = adapt_official_state_dict(arch_type, state, str(path))
    if strict:
        check_state_dict(net, state, source=f'Checkpoint {path}', target=arch_type, hint=hint)
    report = fit_report(net, state)
    skipped = {key for key, _, _ in report.misshaped}
    net.load_state_dict({k: v for k, v in state.items() if k not in skipped}, strict=False)
    for kind, keys in report.as_dict().items():
        if keys:
            logger.warning('Loading %s: %d %s keys, e.g. %s', path, len(keys), kind, keys[0])
    return report.as_dict()


def float32_copy(model: Net, state: Mapping[str, torch.Tensor], what: str) -> Net:
    """``model`` (just built for ``state``) holding ``state`` in float32 on the CPU, in eval mode: the copy a
    converter works on, so the caller's network is never changed. A misfit is a CheckpointError naming ``what``."""
    try:
        model.load_state_dict({k: v.detach().to('cpu', torch.float32) for k, v in state.items()}, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f'{what} state dict does not fit {type(model).__name__}: {exc}') from exc
    return model.eval()


@torch.no_grad()
def check_equivalent(reference: Callable[[torch.Tensor], torch.Tensor], candidate: nn.Module,
                     images: list[torch.Tensor], atol: float, what: str) -> float:
    """Largest |reference(x) - candidate(x)| over ``images`` in float64 (``reference`` takes float64 input; the
    candidate runs on a float64 copy); a converter's result is refused above ``atol``, or on NaN.

    float64 makes the check measure the transformation, not float32 rounding (which grows with activation
    size and is the same for any reordering of sums).
    """
    candidate64 = copy.deepcopy(candidate).to('cpu', torch.float64).eval()
    diffs = [(reference(x) - candidate64(x)).abs().max() for x in (image.to('cpu', torch.float64) for image in images)]
    worst = torch.stack(diffs).max().item()  # torch's max keeps a NaN, Python's would drop it
    if not worst <= atol:
        raise CheckpointError(f'{what}: the result is not equivalent to the network it came from (they differ '
                              f'by {worst:.3g}, allowed {atol:g}); refusing to use it.')
    return worst
