"""IGConv / IGConv+ (Lee et al., arXiv 2408.09674): one sub-pixel upsampler for every integer scale.

A sub-pixel tail stores one kernel per scale; IGConv stores none. For scale ``s`` it *generates* the
``(3 * s^2, C, k, k)`` kernel: every kernel entry (one of ``C * k^2`` rows) owns learnable Fourier
features (``freq`` and ``amplitude``, shape ``(C * k^2, implicit_dim, 1, 1)``) evaluated at the centres of the
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

Modules, parameter names, shapes and initialisation are the official code's (igconv/archs/arch_utils.py
of dslisleedh/IGConv at 1627959), so the authors' checkpoints load as released; tests/fixtures/igconv holds
outputs of that code for the same weights.

``IGConvSR`` composes IGConv(+) with the encoder of any registered architecture that ends in a sub-pixel
tail: the tail module(s) are swapped in place, so the host's own forward (EDSR's mean shift and
img_range included) still runs around the new tail. See docs/IGCONV.md.
"""
from __future__ import annotations

import copy
import logging
import math
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from srkit.archs.spec import ArchSpec, arch_spec, require_positive
from srkit.core.registry import ARCH_REGISTRY

logger = logging.getLogger('srkit')

__all__ = ['BakedIGSample', 'IGConv', 'IGConvSR', 'IGSample', 'SubPixelConv', 'geometric_ensemble',
           'implicit_grid_sample', 'instantiate_upsamplers', 'subpixel_tail']

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


def _check_sizes(kernel_size: int, implicit_dim: int, max_s: int) -> None:
    if kernel_size % 2 == 0 or implicit_dim % 2 or max_s < 1:
        raise ValueError(f'IGConv: kernel_size must be odd, implicit_dim even and max_s >= 1, got {kernel_size}, '
                         f'{implicit_dim}, {max_s}.')


class _ImplicitKernel(nn.Module):
    """The implicit grid shared by IGConv and IGSample, with the official module layout (so the authors'
    checkpoints load as released): ``freq`` and ``amplitude`` (C*k^2, D, 1, 1), ``phase`` a 1x1 conv from the
    scale ratio, ``query_kernel`` the MLP of 1x1 convs (``groups`` independent groups).

    ``kernel(s)`` -> ``(out * s^2, C, k, k)``: every kernel entry (one of C*k^2 rows) evaluates its Fourier
    features ``amplitude * [cos, sin](pi * (fx*x + fy*y + phase(2 / min(s, max_s))))`` at the centres of the
    s x s sub-pixel grid and the MLP maps them to ``out`` taps; channels ordered (out, row, column), the
    order ``pixel_shuffle`` reads. With two groups the official code gives group 0 the even and group 1 the
    odd frequencies (its ``(g d) -> (d g)`` rearrangement); ``interleave`` reproduces that order exactly,
    which the released IGSample weights depend on.
    """

    def __init__(self, dim: int, kernel_size: int, out_channels: int, implicit_dim: int, latent_layers: int,
                 max_s: int, geo_ensemble: bool, groups: int = 1, last_bias: bool = True) -> None:
        super().__init__()
        self.dim, self.kernel_size, self.out_channels = dim, kernel_size, out_channels
        self.implicit_dim, self.latent_layers = implicit_dim, latent_layers
        self.max_s, self.geo_ensemble, self.groups = max_s, geo_ensemble, groups
        rows = dim * kernel_size ** 2
        self.phase = nn.Conv2d(1, implicit_dim // 2, 1)
        self.freq = nn.Parameter(torch.randn(rows, implicit_dim, 1, 1) * 0.02)
        self.amplitude = nn.Parameter(torch.randn(rows, implicit_dim, 1, 1) * 0.02)
        layers: list[nn.Module] = []
        for _ in range(latent_layers):
            layers += [nn.Conv2d(implicit_dim, implicit_dim, 1, groups=groups), nn.ReLU()]
        layers.append(nn.Conv2d(implicit_dim, out_channels, 1, groups=groups, bias=last_bias))
        self.query_kernel = nn.Sequential(*layers)
        self._cached: tuple[tuple[Any, ...], torch.Tensor] | None = None
        self._warned: set[int] = set()  # scales above max_s already reported

    def kernel(self, scale: int) -> torch.Tensor:
        """The generated kernel for ``scale``. Where no gradient can flow to it (evaluation), the last one is
        kept until the scale or a parameter changes (an optimiser step, a loaded state dict, an EMA update all
        bump the version or move the storage): validation then pays for the generation once per scale."""
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
            return self._generate(scale)
        key = (scale, *((p.data_ptr(), p._version, p.dtype, p.device) for p in self.parameters()))
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, self._generate(scale))
        return self._cached[1]

    def _generate(self, scale: int) -> torch.Tensor:
        s = _check_scale(scale)
        if s > self.max_s and s not in self._warned:
            self._warned.add(s)
            logger.warning('IGConv: x%d is above max_s %d, the largest scale its phase input distinguishes: the '
                           'kernel is extrapolated (scales above max_s share the phase of x%d), not one it was '
                           'trained for.', s, self.max_s, self.max_s)
        freq = self.freq
        half = freq.shape[1] // 2
        x, y = _grid_centres(s, freq.device, freq.dtype)
        ratio = torch.full((1, 1, 1, 1), 2.0 / min(s, self.max_s), device=freq.device, dtype=freq.dtype)
        angle = math.pi * (freq[:, :half] * x + freq[:, half:] * y + self.phase(ratio))  # (rows, D/2, s, s)
        features = torch.cat([torch.cos(angle), torch.sin(angle)], dim=1)
        if self.groups == 2:  # official: (g d) -> (d g) with d = 2: group 0 even channels, group 1 odd ones
            features = features.unflatten(1, (-1, 2)).transpose(1, 2).flatten(1, 2)
        elif self.groups != 1:
            raise ValueError(f'IGConv: 1 or 2 groups, got {self.groups}')
        taps = self.query_kernel(features * self.amplitude)  # (rows, out, s, s)
        c, k, o = self.dim, self.kernel_size, self.out_channels
        weight = taps.reshape(c, k, k, o, s, s).permute(3, 4, 5, 0, 1, 2).reshape(o * s * s, c, k, k)
        return geometric_ensemble(weight) if self.geo_ensemble else weight


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


class IGConv(_ImplicitKernel):
    """Implicit-grid sub-pixel convolution: ``forward(features, scale)`` -> ``(N, 3, s*H, s*W)``.

    Constructor and state dict as the official ``IGConv`` (igconv/archs/arch_utils.py). With
    ``geo_ensemble`` the official code convolves with the 8 flipped/rotated kernels and averages the
    outputs; srkit convolves once with the averaged kernel (the same function: a convolution is linear in
    its kernel), as the official ``instantiate`` does.
    """

    def __init__(self, dim: int, kernel_size: int = 3, implicit_dim: int = 256, latent_layers: int = 4,
                 geo_ensemble: bool = True, max_s: int = 4) -> None:
        _check_sizes(kernel_size, implicit_dim, max_s)
        super().__init__(dim, kernel_size, 3, implicit_dim, latent_layers, max_s, geo_ensemble)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        weight = self.kernel(scale).to(x.dtype)
        return F.pixel_shuffle(F.conv2d(x, weight, padding=self.kernel_size // 2), scale)

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


class _OffsetKernel(_ImplicitKernel):
    """IGSample's implicit grid (the official ``IGConvDSSepRGB``): two groups of width ``implicit_dim`` each,
    group 0 predicting offsets and group 1 scopes, 12 taps without bias, small truncated-normal init.

    Initialisation as the official code: the offset rows are one (x, y) pair repeated for R, G and B, so
    rows 0..5 read x, y, x, y, x, y; the sampling step reads them (x/y, RGB), so the "same for RGB" the
    official comment intends does not hold exactly. Kept as released: trained weights depend only on the
    function, and a fresh model starts where the authors' does.
    """

    def __init__(self, dim: int, kernel_size: int, implicit_dim: int, latent_layers: int, geo_ensemble: bool,
                 max_s: int) -> None:
        super().__init__(dim, kernel_size, 12, 2 * implicit_dim, latent_layers, max_s, geo_ensemble, groups=2,
                         last_bias=False)
        with torch.no_grad():
            for p in self.query_kernel.parameters():
                nn.init.trunc_normal_(p, std=0.01)
            last = self.query_kernel[-1]
            assert isinstance(last, nn.Conv2d)
            offset = nn.init.trunc_normal_(torch.zeros(2, implicit_dim, 1, 1), std=0.01)
            last.weight.copy_(torch.cat([offset.repeat(3, 1, 1, 1), torch.zeros(6, implicit_dim, 1, 1)]))


class IGSample(nn.Module):
    """IGConv+'s input-dependent skip: ``forward(lr_rgb, features, scale)`` -> (N, 3, s*H, s*W).

    Constructor and state dict (``convs.*``) as the official ``IGSample``: the grouped implicit kernel
    conv'ed over the encoder features gives per-output-pixel offsets and scopes; the LR image is sampled
    there (``implicit_grid_sample``). A fresh IGSample is a slightly perturbed bilinear upsampler.
    """

    def __init__(self, dim: int, kernel_size: int = 3, implicit_dim: int = 128, latent_layers: int = 2,
                 geo_ensemble: bool = True, max_s: int = 4) -> None:
        super().__init__()
        _check_sizes(kernel_size, 2 * implicit_dim, max_s)  # two groups of implicit_dim each
        self.convs = _OffsetKernel(dim, kernel_size, implicit_dim, latent_layers, geo_ensemble, max_s)

    def forward(self, lr: torch.Tensor, features: torch.Tensor, scale: int) -> torch.Tensor:
        weight = self.convs.kernel(scale).to(features.dtype)
        raw = F.conv2d(features, weight, padding=self.convs.kernel_size // 2)
        return implicit_grid_sample(lr, raw, scale)

    @torch.no_grad()
    def instantiate(self, scale: int) -> BakedIGSample:
        return BakedIGSample(self.convs.kernel(scale), scale)


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


@torch.no_grad()
def instantiate_upsamplers(net: nn.Module, scale: int) -> nn.Module:
    """A copy of ``net`` with every IGConv / IGSample baked for x``scale`` (plain convs; IGSample keeps its
    sampling): the cost of a single-scale sub-pixel tail. The copy still takes the scale argument, and
    refuses any other scale."""
    _check_scale(scale)
    baked = copy.deepcopy(net)
    for name, module in list(baked.named_modules()):
        if isinstance(module, (IGConv, IGSample)):
            _replace(baked, name, module.instantiate(scale))
    return baked


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
    ``upsampler``: ``igconv`` (plain) or ``igconv_plus`` (geometric ensemble + IGSample skip, added to the
    host's output as the official IGConv+ networks add it). IGSample gets ``latent_layers // 2`` layers and
    ``implicit_dim // 2`` per group, as in the official code. ``skip_replaces_mean`` (IGConv+ only, off by
    default): srkit's variant that subtracts the host's mean shift where the skip is added, so an untrained
    network starts from the image instead of mean + image; it trains much faster on short CPU runs
    (docs/IGCONV.md), while the authors' checkpoints need the official sum.
    ``forward(x, scale)``; ``instantiate(s)`` returns a copy whose kernels are plain convs for x``s``
    and whose ``forward(x)`` needs no scale.
    """

    def __init__(self, encoder: dict[str, Any], upsampler: Literal['igconv', 'igconv_plus'] = 'igconv',
                 kernel_size: int = 3, implicit_dim: int = 256, latent_layers: int = 4, max_s: int = 4,
                 skip_replaces_mean: bool = False) -> None:
        super().__init__()
        require_positive(kernel_size=kernel_size, implicit_dim=implicit_dim, latent_layers=latent_layers, max_s=max_s)
        if upsampler not in ('igconv', 'igconv_plus'):
            raise ValueError(f'upsampler must be igconv or igconv_plus, got {upsampler!r}')
        self.encoder_type, self.encoder = _build_encoder(encoder)
        self.tail_names, width = subpixel_tail(self.encoder_type, self.encoder)
        plus = upsampler == 'igconv_plus'
        if skip_replaces_mean and not plus:
            raise ValueError('skip_replaces_mean applies to upsampler igconv_plus only (igconv has no skip)')
        self.skip_replaces_mean = skip_replaces_mean
        igconv = IGConv(width, kernel_size, implicit_dim, latent_layers, geo_ensemble=plus, max_s=max_s)
        _replace(self.encoder, self.tail_names[0], _TailSlot(igconv, keep_features=plus))
        for name in self.tail_names[1:]:
            _replace(self.encoder, name, nn.Identity())
        self.skip: IGSample | BakedIGSample | None = (
            IGSample(width, kernel_size, max(implicit_dim // 2, 1), max(latent_layers // 2, 1), max_s=max_s)
            if plus else None)
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
            host_mean = getattr(self.encoder, 'mean', None)
            if self.skip_replaces_mean and isinstance(host_mean, torch.Tensor):
                out = out - host_mean
            out = out + self.skip(x, features, scale)
        return out

    @torch.no_grad()
    def instantiate(self, scale: int) -> IGConvSR:
        """A copy for x``scale`` only: generated kernels baked into plain convs, ``forward(x)`` without a scale."""
        if self.fixed_scale is not None:
            raise ValueError(f'This network is already instantiated for x{self.fixed_scale}.')
        baked = instantiate_upsamplers(self, scale)
        assert isinstance(baked, IGConvSR)
        baked.fixed_scale = scale
        return baked
