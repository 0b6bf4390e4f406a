"""IGConv / IGConv+ (Lee et al., arXiv 2408.09674): one sub-pixel upsampler for every integer scale.

A sub-pixel tail stores one kernel per scale; IGConv stores none. For scale ``s`` it *generates* the
``(3 * s^2, C, k, k)`` kernel: every kernel entry (one of ``C * k^2`` rows) owns learnable Fourier
features (``freq`` and ``amplitude``, shape ``(C * k^2, implicit_dim)``) evaluated at the centres of the
``s x s`` sub-pixel grid in [-1, 1], plus a phase learnt from ``2 / min(s, max_s)``; ``cos``/``sin`` of
``pi * (fx * x + fy * y + phase)``, scaled by the amplitude, go through an MLP of 1x1 convs (the
"implicit grid" of the paper) that outputs the three RGB taps. ``instantiate(s)`` bakes the kernel into a
plain conv + pixel shuffle, so deployment costs exactly a single-scale sub-pixel tail.

IGConv+ adds (1) the geometric ensemble: the generated kernel averaged over the 8 flips/rotations of its
k x k window. The official code convolves with the 8 kernels and averages the outputs; a convolution is
linear in its kernel, so convolving once with the averaged kernel is the same function at 1/8 of the cost
(the official check_geo_rep.py shows the equivalence); (2) IGSample, a DySample-like skip: implicit-grid
generated offset and scope kernels move the sampling point of each output pixel, and the LR RGB image is
sampled bilinearly there and added to the output; (3) the FFT loss, a training option (``fft_opt:
{type: FFTLoss}``), not part of the network.

``IGConvSR`` composes IGConv(+) with the encoder of any registered architecture that ends in a sub-pixel
tail: the tail module(s) are swapped in place, so the host's own forward (EDSR's mean shift and
img_range included) still runs around the new tail. See docs/IGCONV.md.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from srkit.archs.spec import ArchSpec, arch_spec, require_positive
from srkit.core.registry import ARCH_REGISTRY

__all__ = ['IGConv', 'IGConvSR', 'IGSample', 'ImplicitKernel', 'SubPixelConv', 'geometric_ensemble',
           'implicit_grid_sample', 'subpixel_tail']

def geometric_ensemble(kernel: torch.Tensor) -> torch.Tensor:
    """Mean of ``kernel`` (..., k, k) over the 8 flips/rotations of its window (the dihedral group D4).

    The result is invariant to every one of them, so a conv with it treats an image and its flipped or
    rotated copy alike; that is the equivariance the paper buys without 8 forward passes.
    """
    rotated = torch.rot90(kernel, -1, (-2, -1))
    views = [kernel, rotated]
    views += [v.flip(-1) for v in (kernel, rotated)] + [v.flip(-2) for v in (kernel, rotated)]
    views += [v.flip(-2, -1) for v in (kernel, rotated)]
    return torch.stack(views).mean(0)


def _grid_centres(scale: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(2, s, s): x then y of each sub-pixel centre in [-1, 1] (LIIF's make_coord)."""
    centres = -1 + (2 * torch.arange(scale, device=device, dtype=dtype) + 1) / scale
    y, x = torch.meshgrid(centres, centres, indexing='ij')
    return torch.stack([x, y])


def _check_scale(scale: Any) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f'IGConv: the scale must be a positive integer, got {scale!r}.')
    return scale


class ImplicitKernel(nn.Module):
    """Generates a ``(out_channels * s^2, in_channels, k, k)`` sub-pixel kernel for any integer scale ``s``.

    ``groups`` splits the Fourier features and the MLP into independent groups (IGSample uses two: one
    predicts offsets, one scopes); the output channels are ordered (channel, sub-pixel row, sub-pixel
    column), the order ``pixel_shuffle`` expects.
    """

    def __init__(self, in_channels: int, kernel_size: int, out_channels: int, implicit_dim: int = 256,
                 latent_layers: int = 4, groups: int = 1, max_s: int = 4, geo_ensemble: bool = False,
                 bias: bool = True) -> None:
        super().__init__()
        if implicit_dim % (2 * groups) or out_channels % groups:
            raise ValueError(f'ImplicitKernel: implicit_dim ({implicit_dim}) must split into {groups} group(s) of '
                             f'cos/sin pairs and out_channels ({out_channels}) into {groups} group(s).')
        if kernel_size % 2 == 0 or max_s < 1:
            raise ValueError(f'ImplicitKernel: kernel_size must be odd and max_s >= 1, got {kernel_size}, {max_s}.')
        self.in_channels, self.kernel_size, self.out_channels = in_channels, kernel_size, out_channels
        self.groups, self.max_s, self.geo_ensemble = groups, max_s, geo_ensemble
        rows = in_channels * kernel_size ** 2
        # Columns [:D/2] are the x frequencies, [D/2:] the y frequencies; amplitude scales each cos/sin feature.
        self.freq = nn.Parameter(torch.randn(rows, implicit_dim) * 0.02)
        self.amplitude = nn.Parameter(torch.randn(rows, implicit_dim) * 0.02)
        self.phase = nn.Linear(1, implicit_dim // 2)
        layers: list[nn.Module] = []
        for _ in range(latent_layers):
            layers += [nn.Conv2d(implicit_dim, implicit_dim, 1, groups=groups), nn.ReLU()]
        layers.append(nn.Conv2d(implicit_dim, out_channels, 1, groups=groups, bias=bias))
        self.mlp = nn.Sequential(*layers)

    def forward(self, scale: int) -> torch.Tensor:
        s = _check_scale(scale)
        half = self.freq.shape[1] // 2
        x, y = _grid_centres(s, self.freq.device, self.freq.dtype)
        angle = self.freq[:, :half, None, None] * x + self.freq[:, half:, None, None] * y  # (rows, D/2, s, s)
        ratio = torch.full((1,), 2.0 / min(s, self.max_s), device=self.freq.device, dtype=self.freq.dtype)
        angle = math.pi * (angle + self.phase(ratio)[:, None, None])
        angle = angle.unflatten(1, (self.groups, -1))  # each group: its own frequencies, cos then sin
        features = torch.cat([torch.cos(angle), torch.sin(angle)], dim=2).flatten(1, 2)
        taps = self.mlp(features * self.amplitude[:, :, None, None])  # (rows, out, s, s)
        c, k, o = self.in_channels, self.kernel_size, self.out_channels
        kernel = taps.reshape(c, k, k, o, s, s).permute(3, 4, 5, 0, 1, 2).reshape(o * s * s, c, k, k)
        return geometric_ensemble(kernel) if self.geo_ensemble else kernel


class SubPixelConv(nn.Sequential):
    """A plain conv (no bias) + pixel shuffle: an IGConv baked for one scale by ``instantiate``.

    It accepts the ``scale`` argument IGConv takes (and refuses another one) so it can stand where the
    dynamic module stood.
    """

    def __init__(self, weight: torch.Tensor, scale: int) -> None:
        out_ch, in_ch, k, _ = weight.shape
        conv = nn.Conv2d(in_ch, out_ch, k, padding=k // 2, bias=False)
        conv.weight = nn.Parameter(weight.detach().clone())
        super().__init__(conv, nn.PixelShuffle(scale))
        self.scale = scale

    def forward(self, x: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        if scale is not None and scale != self.scale:
            raise ValueError(f'This upsampler was instantiated for x{self.scale}, not x{scale}.')
        return super().forward(x)


class IGConv(nn.Module):
    """Implicit-grid sub-pixel convolution: ``forward(features, scale)`` -> ``(N, 3, s*H, s*W)``."""

    def __init__(self, in_channels: int, kernel_size: int = 3, implicit_dim: int = 256, latent_layers: int = 4,
                 max_s: int = 4, geo_ensemble: bool = False, out_channels: int = 3) -> None:
        super().__init__()
        self.kernel = ImplicitKernel(in_channels, kernel_size, out_channels, implicit_dim, latent_layers,
                                     max_s=max_s, geo_ensemble=geo_ensemble)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        weight = self.kernel(scale).to(x.dtype)
        return F.pixel_shuffle(F.conv2d(x, weight, padding=self.kernel.kernel_size // 2), scale)

    @torch.no_grad()
    def instantiate(self, scale: int) -> SubPixelConv:
        """The same function at ``scale`` as a plain conv + pixel shuffle (the ensemble is baked in)."""
        return SubPixelConv(self.kernel(scale), scale)


def implicit_grid_sample(lr: torch.Tensor, raw: torch.Tensor, scale: int) -> torch.Tensor:
    """IGSample's sampling step: ``lr`` (N, 3, H, W) read at offset positions -> (N, 3, s*H, s*W).

    ``raw`` (N, 12 * s^2, H, W) holds offsets then scopes, each ordered (x/y, RGB, sub-pixel row, column).
    Output pixel (I, J) samples ``lr`` at ((J + 0.5) / s, (I + 0.5) / s) + offset * sigmoid(scope) / 2 in
    LR pixel units (DySample's dynamic scope): zero offsets give bilinear upsampling.
    """
    n, _, h, w = lr.shape
    offset, scope = raw.chunk(2, dim=1)
    offset = F.pixel_shuffle(offset * torch.sigmoid(scope) * 0.5, scale).unflatten(1, (2, 3))
    hr_h, hr_w = h * scale, w * scale
    xs = (torch.arange(hr_w, device=lr.device, dtype=lr.dtype) + 0.5) / scale
    ys = (torch.arange(hr_h, device=lr.device, dtype=lr.dtype) + 0.5) / scale
    gx = 2 * (xs + offset[:, 0]) / w - 1
    gy = 2 * (ys[:, None] + offset[:, 1]) / h - 1
    grid = torch.stack([gx, gy], dim=-1).flatten(0, 1)  # (N * 3, sH, sW, 2)
    out = F.grid_sample(lr.reshape(n * 3, 1, h, w), grid, mode='bilinear', padding_mode='border',
                        align_corners=False)
    return out.view(n, 3, hr_h, hr_w)


class IGSample(nn.Module):
    """IGConv+'s input-dependent skip: ``forward(lr_rgb, features, scale)`` -> (N, 3, s*H, s*W).

    One grouped implicit kernel (group 0: offsets, group 1: scopes; no bias, small truncated-normal
    init) conv'ed over the encoder features gives per-output-pixel offsets; see ``implicit_grid_sample``.
    As in the official code the offset taps start equal for R, G and B and the scope taps at zero, so a
    fresh IGSample is a slightly perturbed bilinear upsampler.
    """

    def __init__(self, in_channels: int, kernel_size: int = 3, implicit_dim: int = 256, latent_layers: int = 2,
                 max_s: int = 4, geo_ensemble: bool = True) -> None:
        super().__init__()
        self.kernel = ImplicitKernel(in_channels, kernel_size, 12, implicit_dim, latent_layers, groups=2,
                                     max_s=max_s, geo_ensemble=geo_ensemble, bias=False)
        with torch.no_grad():
            for p in self.kernel.mlp.parameters():
                nn.init.trunc_normal_(p, std=0.01)
            last_conv = self.kernel.mlp[-1]
            assert isinstance(last_conv, nn.Conv2d)
            last = last_conv.weight  # (12, D/2, 1, 1): rows (x/y, RGB) offsets, then scopes
            per_axis = nn.init.trunc_normal_(torch.empty(2, 1, *last.shape[1:]), std=0.01)
            last[:6] = per_axis.expand(2, 3, *last.shape[1:]).reshape(6, *last.shape[1:])
            last[6:] = 0

    def forward(self, lr: torch.Tensor, features: torch.Tensor, scale: int) -> torch.Tensor:
        weight = self.kernel(scale).to(features.dtype)
        raw = F.conv2d(features, weight, padding=self.kernel.kernel_size // 2)
        return implicit_grid_sample(lr, raw, scale)

    @torch.no_grad()
    def instantiate(self, scale: int) -> BakedIGSample:
        return BakedIGSample(self.kernel(scale), scale)


class BakedIGSample(nn.Module):
    """IGSample for one scale: its offset/scope kernel stored as a plain conv (the sampling stays dynamic)."""

    def __init__(self, weight: torch.Tensor, scale: int) -> None:
        super().__init__()
        out_ch, in_ch, k, _ = weight.shape
        self.conv = nn.Conv2d(in_ch, out_ch, k, padding=k // 2, bias=False)
        self.conv.weight = nn.Parameter(weight.detach().clone())
        self.scale = scale

    def forward(self, lr: torch.Tensor, features: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        if scale is not None and scale != self.scale:
            raise ValueError(f'This IGSample was instantiated for x{self.scale}, not x{scale}.')
        return implicit_grid_sample(lr, self.conv(features), self.scale)


class _TailSlot(nn.Module):
    """Stands where the host's sub-pixel tail was.

    The host's forward calls it with the features only; IGConvSR sets ``scale`` before each call, and the
    slot keeps the features it saw when IGSample needs them (released right after the call).
    """

    def __init__(self, upsampler: nn.Module, keep_features: bool) -> None:
        super().__init__()
        self.upsampler = upsampler
        self.keep_features = keep_features
        self.scale: int | None = None
        self.features: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale is None:
            raise RuntimeError('The IGConv tail was called outside IGConvSR.forward (no scale set).')
        if self.keep_features:
            self.features = x
        return self.upsampler(x, self.scale)

    def release(self) -> torch.Tensor | None:
        features, self.features, self.scale = self.features, None, None
        return features


def subpixel_tail(type_name: str, net: nn.Module) -> tuple[tuple[str, ...], int]:
    """(tail submodule names, width of the features that feed the tail) of a built host network."""
    names = arch_spec(type_name).subpixel_tail
    if not names:
        hosts = [n for n in ARCH_REGISTRY.names() if arch_spec(n).subpixel_tail]
        raise ValueError(f'the encoder {type_name} declares no sub-pixel tail, so IGConv cannot replace it '
                         f'(hosts that do: {", ".join(hosts)})')
    first = net.get_submodule(names[0])
    convs = [m for m in ([first] + list(first.modules())) if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f'{type_name}: its declared tail "{names[0]}" has no Conv2d to read the feature width from')
    return tuple(names), convs[0].in_channels


def _build_encoder(encoder: dict[str, Any]) -> tuple[str, nn.Module]:
    """Build the host through the factory, at its default scale (its tail is replaced anyway)."""
    from srkit.archs import create

    args = dict(encoder)
    type_name = args.pop('type', None)
    if not isinstance(type_name, str):
        raise ValueError('the encoder needs a "type": a registered architecture, e.g. EDSR_baseline')
    if type_name == 'IGConvSR':
        raise ValueError('IGConvSR cannot be its own encoder')
    scale_arg = arch_spec(type_name).scale_arg
    if scale_arg in args:
        raise ValueError(f'encoder.{scale_arg} is not an option: the scale is chosen per call of IGConvSR')
    return type_name, create(type_name, option_key='network_g.encoder', **args)


def _replace(net: nn.Module, dotted: str, module: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition('.')
    setattr(net.get_submodule(parent_name) if parent_name else net, child, module)


# Tiling is as exact as the encoder's, which the spec of IGConvSR cannot know: claimed inexact. The example
# encoder pools (IMDN's contrast-aware channel attention), so the claim holds for what the sweep builds.
@ARCH_REGISTRY.register(meta=ArchSpec(scales=(), scale_arg=None, scale_in_forward=True, tiling_exact=False,
                                      example_args={'encoder': {'type': 'IMDN', 'nf': 16, 'num_modules': 2}}))
class IGConvSR(nn.Module):
    """Any registered host with a sub-pixel tail, made multi-scale by IGConv (or IGConv+).

    ``encoder``: the host's ``network_g``-style mapping (``type`` plus its arguments, without a scale).
    ``upsampler``: ``igconv`` (plain) or ``igconv_plus`` (geometric ensemble + IGSample skip).
    IGSample gets ``latent_layers // 2`` layers and the same total implicit width, as in the paper's code.
    ``forward(x, scale)``; ``instantiate(s)`` returns a copy whose kernels are plain convs for x``s``
    and whose ``forward(x)`` needs no scale.
    """

    def __init__(self, encoder: dict[str, Any], upsampler: Literal['igconv', 'igconv_plus'] = 'igconv',
                 kernel_size: int = 3, implicit_dim: int = 256, latent_layers: int = 4, max_s: int = 4) -> None:
        super().__init__()
        require_positive(kernel_size=kernel_size, implicit_dim=implicit_dim, latent_layers=latent_layers, max_s=max_s)
        if upsampler not in ('igconv', 'igconv_plus'):
            raise ValueError(f'upsampler must be igconv or igconv_plus, got {upsampler!r}')
        self.encoder_type, self.encoder = _build_encoder(encoder)
        self.tail_names, width = subpixel_tail(self.encoder_type, self.encoder)
        plus = upsampler == 'igconv_plus'
        igconv = IGConv(width, kernel_size, implicit_dim, latent_layers, max_s, geo_ensemble=plus)
        _replace(self.encoder, self.tail_names[0], _TailSlot(igconv, keep_features=plus))
        for name in self.tail_names[1:]:
            _replace(self.encoder, name, nn.Identity())
        self.skip: IGSample | BakedIGSample | None = (
            IGSample(width, kernel_size, implicit_dim, latent_layers // 2, max_s) if plus else None)
        self.fixed_scale: int | None = None

    def _slot(self) -> _TailSlot:
        slot = self.encoder.get_submodule(self.tail_names[0])
        assert isinstance(slot, _TailSlot)
        return slot

    def forward(self, x: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        if self.fixed_scale is not None:
            if scale not in (None, self.fixed_scale):
                raise ValueError(f'This network was instantiated for x{self.fixed_scale}, not x{scale}.')
            scale = self.fixed_scale
        if scale is None:
            raise ValueError('IGConvSR.forward needs the scale: forward(x, scale).')
        slot = self._slot()
        slot.scale = _check_scale(scale)
        try:
            out = self.encoder(x)
        finally:
            features = slot.release()
        if self.skip is not None:
            # The skip is the base image: a host that adds its mean shift back after the tail (EDSR, MMA)
            # would otherwise start from mean + image, which a bias-free generated tail cannot cancel.
            host_mean = getattr(self.encoder, 'mean', None)
            if isinstance(host_mean, torch.Tensor):
                out = out - host_mean
            out = out + self.skip(x, features, scale)
        return out

    @torch.no_grad()
    def instantiate(self, scale: int) -> IGConvSR:
        """A copy for x``scale`` only: generated kernels baked into plain convs, ``forward(x)`` without a scale."""
        if self.fixed_scale is not None:
            raise ValueError(f'This network is already instantiated for x{self.fixed_scale}.')
        baked = copy.deepcopy(self)
        slot = baked._slot()
        assert isinstance(slot.upsampler, IGConv)  # not instantiated yet, so still the dynamic module
        slot.upsampler = slot.upsampler.instantiate(_check_scale(scale))
        if isinstance(baked.skip, IGSample):
            baked.skip = baked.skip.instantiate(scale)
        baked.fixed_scale = scale
        return baked
