"""What the framework needs to know about an architecture, declared next to its code.

An architecture registers itself with ``@ARCH_REGISTRY.register(meta=ArchSpec(...))``; tests, tiling,
mixed precision and checkpoint loading read the spec instead of a central list of special cases.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch

StateDict = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class ArchSpec:
    """Capabilities and input requirements of one architecture (or preset).

    scales: upscaling factors the architecture supports; empty means any positive integer.
    pad_multiple: input height and width must be multiples of this (callers pad, then crop).
    min_size: smallest input side the network accepts.
    fp16_safe / channels_last_safe: whether autocast fp16 and channels_last keep outputs correct.
    same_size_output: the output has the input's size (e.g. IMDN_AS), not input * scale.
    official_keys: maps an official checkpoint's state dict (after ``module.`` is stripped) to srkit's
        parameter names; None when the official names are already srkit's.
    subpixel_tail: the submodule(s) that map the final features to the image (conv + PixelShuffle ...),
        in call order; empty when the network has no such tail. A multi-scale upsampler (IGConvSR)
        replaces the first and drops the rest; the first one's first Conv2d gives the feature width.
    """

    scales: tuple[int, ...] = (2, 3, 4)
    pad_multiple: int = 1
    min_size: int = 1
    fp16_safe: bool = True
    channels_last_safe: bool = True
    same_size_output: bool = False
    official_keys: Callable[[StateDict], dict[str, torch.Tensor]] | None = None
    subpixel_tail: tuple[str, ...] = ()

    def supports_scale(self, scale: int) -> bool:
        return not self.scales or scale in self.scales


DEFAULT_SPEC = ArchSpec()
