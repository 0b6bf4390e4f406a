"""Network architectures, one module per family (``*_arch.py``), registered in ARCH_REGISTRY.

Modules are imported lazily by the registry on the first look-up; see srkit.core.registry.
``create`` is the one way anything in srkit builds a network.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from srkit.archs.spec import ArchSpec, arch_spec
from srkit.config.typed_options import check_call_arguments, construct
from srkit.core.errors import OptionError
from srkit.core.registry import ARCH_REGISTRY

__all__ = ['ARCH_REGISTRY', 'ArchSpec', 'arch_spec', 'create']


def create(name: str, scale: int | None = None, /, *, option_key: str = 'network_g', **kwargs: Any) -> nn.Module:
    """The registered architecture (or preset) ``name`` built for ``scale``, e.g. ``create('EIMN_A', 4)``.

    The scale goes to the constructor argument the ArchSpec names (``upscale``, ``scale``, ...); a value
    given there too must agree. ``scale`` None keeps the constructor's default (or the network takes
    the scale per call). ``option_key``: the option the arguments came from, named in error messages.
    A scale the architecture does not support, or arguments it does not take or rejects, are
    OptionErrors; anything else its constructor raises is a bug and propagates.
    """
    factory = ARCH_REGISTRY.get(name)
    spec = arch_spec(name)
    if scale is not None and spec.discriminator:
        raise OptionError(f'{name} is a discriminator (network_d): it takes no scale, got {scale}.', key='scale')
    if scale is not None and not spec.supports_scale(scale):
        raise OptionError(f'Architecture {name} supports scales {list(spec.scales)}, not {scale}.', key='scale')
    if scale is not None and spec.scale_arg is not None:
        given = kwargs.setdefault(spec.scale_arg, scale)
        if given != scale:
            raise OptionError(f'Option "{option_key}.{spec.scale_arg}" is {given} but the scale is {scale}; '
                              'they must agree.', key=f'{option_key}.{spec.scale_arg}')
    kwargs = check_call_arguments(factory, kwargs, option_key, what=f'architecture {name}')
    return construct(option_key, factory, **kwargs)
