"""What the framework needs to know about an architecture, declared next to its code.

An architecture registers itself with ``@ARCH_REGISTRY.register(meta=ArchSpec(...))``; the factory
(``srkit.archs.create``), tiling, mixed precision, checkpoint loading and the registry-wide test
(tests/test_arch_registry.py, which checks every claim below for every registered name and scale) read
the spec instead of a central list of special cases.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any

import torch
from torch import nn

from srkit.core.registry import ARCH_REGISTRY

__all__ = ['ArchSpec', 'StateDict', 'arch_spec', 'require_positive']

StateDict = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class ArchSpec:
    """Capabilities and input requirements of one architecture (or preset).

    scales: upscaling factors the architecture supports; empty means any positive integer.
    scale_arg: the constructor argument that carries the scale (``upscale`` in BasicSR's EDSR, ``scale`` in
        EIMN's release, ...); None when the constructor takes none (the scale is fixed, or given per call).
    scale_in_forward: the network is called as ``net(x, scale)`` (one network for every scale, e.g. IGConvSR).
    pad_multiple: input height and width must be multiples of this (callers pad, then crop).
    min_size: smallest input side the network accepts.
    fp16_safe / channels_last_safe: whether autocast fp16 and channels_last keep outputs correct.
    tiling_exact: tiled inference with an overlap covering the receptive field equals the untiled output.
        False for networks that pool or scan the whole image (channel attention, Mamba), whose tiles see
        different global statistics: tiling then changes the result, and srkit warns when it is asked to.
    same_size_output: the output has the input's size (e.g. IMDN_AS), not input * scale.
    official_keys: maps an official checkpoint's state dict (after ``module.`` is stripped) to srkit's
        parameter names; None when the official names are already srkit's.
    subpixel_tail: the submodule(s) that map the final features to the image (conv + PixelShuffle ...),
        in call order; empty when the network has no such tail. A multi-scale upsampler (IGConvSR)
        replaces the first and drops the rest; the first one's first Conv2d gives the feature width.
    params: exact parameter counts by scale, where a published checkpoint fixes them (its tensors' sizes).
    example_args: arguments a caller must give because the constructor has no default for them (e.g.
        IGConvSR's encoder); the registry-wide test and the docs build the architecture with these.
    discriminator: a network that scores images (GAN training's network_d), not an SR network: it takes no
        scale and returns logits. The scale, tiling and tail fields do not apply; ``pad_multiple`` and
        ``min_size`` describe the input sizes it accepts (built with ``example_args``), which its
        ``check_input_size(height, width)`` enforces with a ValueError.
    inference_form: builds a NEW module (the network untouched, no tensor shared) computing the network's
        eval-mode function within 1e-5, faster (BatchNorm folded, fast kernels, in-place tails); None: none.
    """

    scales: tuple[int, ...] = (2, 3, 4)
    scale_arg: str | None = 'upscale'
    scale_in_forward: bool = False
    pad_multiple: int = 1
    min_size: int = 1
    fp16_safe: bool = True
    channels_last_safe: bool = True
    tiling_exact: bool = True
    same_size_output: bool = False
    official_keys: Callable[[StateDict], dict[str, torch.Tensor]] | None = None
    subpixel_tail: tuple[str, ...] = ()
    params: Mapping[int, int] = field(default_factory=dict)
    example_args: Mapping[str, Any] = field(default_factory=dict)
    discriminator: bool = False
    inference_form: Callable[[nn.Module], nn.Module] | None = None

    def supports_scale(self, scale: int) -> bool:
        return not self.scales or scale in self.scales


def arch_spec(name: str) -> ArchSpec:
    """The ArchSpec an architecture registered with (a default spec when it declared none)."""
    spec = ARCH_REGISTRY.meta(name)
    return spec if spec is not None else ArchSpec()


def require_positive(**sizes: int) -> None:
    """Refuse a size argument (channels, blocks, scale ...) that is not a positive integer, naming it.

    A ValueError is the user's mistake (``create`` reports it as an OptionError on the option); without this
    check torch would raise a RuntimeError about a negative dimension, which reads as a bug in srkit.
    """
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise ValueError(f'{name} must be a positive integer, got {value!r}')
