"""Networks for the tools, from an architecture name or an option file, with their weights loaded.

One place decides what ``--model`` means, so infer.py, visual comparisons and complexity tables accept
the same things and refuse the same mistakes with the same messages.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from srkit.archs import ArchSpec, arch_spec
from srkit.archs.weights import load_pretrained
from srkit.config.options import Options, load_yaml, resolve_network
from srkit.config.typed_options import parse_dataclass
from srkit.core.dist import select_device
from srkit.core.errors import OptionError
from srkit.models.sr_model import build_network

__all__ = ['LoadedModel', 'load_model']

OPTION_SUFFIXES = ('.yml', '.yaml')


@dataclass
class LoadedModel:
    """A network in eval mode on its device (its architecture's inference form where it has one), with what running
    it on whole images needs to know."""

    net: nn.Module
    arch: str
    scale: int
    spec: ArchSpec
    weights: str | None
    device: torch.device

    @property
    def out_scale(self) -> int:
        """How much larger the output is than the input (1 for same-size models such as IMDN_AS)."""
        return 1 if self.spec.same_size_output else self.scale


def _options(name: str, scale: int, network_g: Mapping[str, Any], source: str,
             path: Mapping[str, Any] | None = None) -> Options:
    """Options holding only a network (and its paths), checked as option files are checked."""
    try:
        options = parse_dataclass(Options, {'name': name, 'scale': scale, 'network_g': dict(network_g),
                                            'path': dict(path or {})})
        resolve_network(options)
    except OptionError as exc:
        raise exc.in_file(source) from None
    return options


def is_option_file(model: str) -> bool:
    return Path(model).suffix.lower() in OPTION_SUFFIXES


def load_model(model: str, *, weights: str | None = None, scale: int | None = None, device: str = 'cpu',
               param_key: str | None = None) -> LoadedModel:
    """``model`` is an architecture name (``scale`` required) or an option file (its network_g, scale and
    path.pretrain_network_g; ``weights`` and ``scale`` may be given too and must agree).

    ``param_key`` None takes ``params_ema`` when the file has it, else ``params`` (or a raw state dict).
    A checkpoint that does not fit is refused with the first mismatched key and both shapes.
    """
    if is_option_file(model):
        data = load_yaml(model)
        file_scale = data.get('scale')
        if scale is not None and file_scale is not None and scale != file_scale:
            raise OptionError(f'--scale {scale} disagrees with {model}, whose scale is {file_scale}.')
        if 'network_g' not in data or file_scale is None:
            raise OptionError(f'{model}: an option file for a model needs "scale" and "network_g".')
        options = _options(str(data.get('name', Path(model).stem)), file_scale, data['network_g'], model,
                           data.get('path'))
        weights = weights or options.path.pretrain_network_g
        param_key = param_key or (options.path.param_key_g if weights == options.path.pretrain_network_g else None)
    else:
        if scale is None:
            raise OptionError(f'--model {model} is an architecture name: give its upscaling factor with --scale.')
        options = _options('tools', scale, {'type': model}, f'--model {model}')
    arch = options.network_g.type
    net = build_network(options)
    if weights:
        load_pretrained(net, weights, param_key=param_key, strict=True, arch_type=arch,
                        hint='Check that --model (or the option file) and --scale match the checkpoint.')
    elif any(True for _ in net.parameters()):
        raise OptionError(f'--model {model}: {arch} has learned parameters; give its checkpoint with --weights.')
    dev = select_device(device, source='--device')
    spec = arch_spec(arch)
    net = net.to(dev).eval()
    if spec.inference_form is not None:  # the same function within 1e-5, faster (ArchSpec.inference_form)
        with torch.no_grad():
            net = spec.inference_form(net).eval()
    return LoadedModel(net, arch, options.scale, spec, weights, dev)
