"""Registry-wide sweep: every registered architecture and preset, at every scale its ArchSpec allows, built
through ``srkit.archs.create`` and checked against every claim its spec makes.

Nothing here names an architecture: registering one (with its ArchSpec) is what puts it under test.
"""
from __future__ import annotations

import copy
import functools
import inspect
import io
import logging
from collections.abc import Callable

import pytest
import torch
from torch import nn

from srkit.archs import ArchSpec, create
from srkit.core.errors import OptionError
from srkit.core.registry import ARCH_REGISTRY
from srkit.models.inference import predict, warn_if_tiling_inexact
from srkit.models.sr_model import to_channels_last

Runner = Callable[[torch.Tensor], torch.Tensor]

ANY_SCALES = (2, 3, 4)  # tried where a spec allows any scale (scales=())
SWEEP_HW = (8, 6)  # the sweep's input (H, W), rounded up to the spec's pad_multiple and min_size
TINY_HW = (8, 2)  # the same for networks over BIG_PARAMS parameters: 20M parameters take seconds per CPU forward
BIG_PARAMS = 5_000_000
EXACT_SIDES = (48, 80)  # a tiling-exact network's influence is measured on the first side it stays inside
INEXACT_SIDE, INEXACT_SIDE_BIG = 16, 4  # enough to show an influence reaching every border, cheaply
SEEDS = 5  # a random network ending in ReLUs can output a constant: then the next seed is tried
NAMES = ARCH_REGISTRY.names()
FP16_TOLERANCE = 1e-2  # of the output's range: float16 keeps about 3 significant digits (HiT_SRF, not
# fp16_safe, gives NaN at x2 under CPU float16 autocast)


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def spec_of(name: str) -> ArchSpec:
    """The registered spec; a default one where none is declared (test_declares_a_consistent_spec reports that)."""
    spec = ARCH_REGISTRY.meta(name)
    return spec if isinstance(spec, ArchSpec) else ArchSpec()


def scales_of(name: str) -> tuple[int, ...]:
    return spec_of(name).scales or ANY_SCALES


def _big_per_call_network(name: str) -> bool:
    """A network taking the scale per call (the same network at every scale) with over BIG_PARAMS parameters,
    counted on the meta device (no weights are drawn)."""
    spec = spec_of(name)
    if not spec.scale_in_forward:
        return False
    try:
        with torch.device('meta'):
            return count_params(create(name, **spec.example_args)) > BIG_PARAMS
    except Exception:  # a constructor that needs real values: swept at every scale
        return False


def sweep_scales(name: str) -> tuple[int, ...]:
    """Every scale the spec allows; for a big network that takes the scale per call, the first one only:
    it is one network whatever the scale (its golden tests run it at x2, x3 and x4 against its authors'
    code), and each of its sweeps costs seconds."""
    scales = scales_of(name)
    return scales[:1] if _big_per_call_network(name) else scales


SR_NAMES = [name for name in NAMES if not spec_of(name).discriminator]  # the scale and tiling claims are theirs
DISCRIMINATORS = [name for name in NAMES if spec_of(name).discriminator]
EVERY_SCALE = [pytest.param(name, scale, id=f'{name}-x{scale}') for name in SR_NAMES for scale in sweep_scales(name)]
FIRST_SCALE = [pytest.param(name, scales_of(name)[0], id=f'{name}-x{scales_of(name)[0]}') for name in SR_NAMES]


@functools.lru_cache(maxsize=3)
def _built(name: str, scale: int | None, seed: int) -> nn.Module:
    spec = spec_of(name)
    torch.manual_seed(seed)
    if scale is None:
        return create(name, **spec.example_args).eval()
    return create(name, scale, **spec.example_args).eval()


def build(name: str, scale: int, seed: int = 0) -> nn.Module:
    """The network as the factory builds it, in eval mode, with weights drawn from ``seed``.

    Building a 20-40M-parameter network costs seconds of weight initialisation, and the tests build the same
    one several times (a network taking the scale per call is the same at every scale), so a few recent
    builds are kept and each caller gets its own copy.
    """
    return copy.deepcopy(_built(name, None if spec_of(name).scale_in_forward else scale, seed))


def other_weights(net: nn.Module, name: str, scale: int) -> nn.Module:
    """A network of the same architecture whose weights differ from ``net``'s everywhere, for a state-dict
    round trip: a fresh build from another seed, or for a big network a copy with every floating-point
    tensor of its state dict shifted (the same test at a fraction of the cost)."""
    if count_params(net) <= BIG_PARAMS:
        return build(name, scale, seed=SEEDS)
    fresh = copy.deepcopy(net)
    with torch.no_grad():
        for tensor in fresh.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(1.0)
    return fresh


def runner(net: nn.Module, spec: ArchSpec, scale: int) -> Runner:
    """``net`` as ``predict`` calls it: the scale given per call where the spec says so, and only the SR image
    of a network that also returns auxiliary outputs (the first one)."""

    def run(x: torch.Tensor) -> torch.Tensor:
        out = net(x, scale) if spec.scale_in_forward else net(x)
        return out[0] if isinstance(out, (tuple, list)) else out

    return run


def out_scale(spec: ArchSpec, scale: int) -> int:
    return 1 if spec.same_size_output else scale


def fit(side: int, spec: ArchSpec) -> int:
    """``side`` rounded up to the spec's pad_multiple and min_size."""
    m = spec.pad_multiple
    return max(-(-side // m) * m, -(-spec.min_size // m) * m)


def build_lively(name: str, scale: int, make_input: Callable[[int], torch.Tensor]
                 ) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """(network, input, output) for the first seed whose output is not constant, so that a claim is tested
    on something. ``make_input`` gets the parameter count (big networks get small inputs)."""
    spec = spec_of(name)
    for seed in range(SEEDS):
        net = build(name, scale, seed)
        x = make_input(count_params(net))
        out = runner(net, spec, scale)(x)
        if out.amax() > out.amin():
            return net, x, out
    pytest.fail(f'{name} x{scale}: the output is constant for seeds 0-{SEEDS - 1}; nothing can be checked')


def seeded_rand(*shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(1234))


@pytest.mark.parametrize('name', NAMES)
def test_declares_a_consistent_spec(name):
    spec = ARCH_REGISTRY.meta(name)
    assert isinstance(spec, ArchSpec), f'{name} is registered without an ArchSpec (register(meta=ArchSpec(...)))'
    params = inspect.signature(ARCH_REGISTRY.get(name)).parameters
    if spec.scale_arg is not None:
        assert spec.scale_arg in params, f'{name}: scale_arg {spec.scale_arg!r} is not a constructor argument'
    assert not (spec.scale_in_forward and spec.scale_arg), 'the scale goes to the constructor or to forward'
    required = {n for n, p in params.items() if p.default is p.empty
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    assert required <= set(spec.example_args), f'{name}: example_args must give {sorted(required)}'
    assert all(spec.supports_scale(s) for s in spec.params), f'{name}: params declared for an unsupported scale'
    if spec.discriminator:
        assert spec.scale_arg is None and not spec.scale_in_forward and not spec.params, 'it takes no scale'
        assert callable(getattr(ARCH_REGISTRY.get(name), 'check_input_size', None)), \
            f'{name}: a discriminator says which input sizes it accepts (check_input_size(height, width))'


@pytest.mark.parametrize('name, scale', EVERY_SCALE)
@torch.no_grad()
def test_builds_runs_and_keeps_its_claims(name, scale):
    spec = spec_of(name)
    s = out_scale(spec, scale)

    def make_input(params: int) -> torch.Tensor:
        h, w = (fit(n, spec) for n in (TINY_HW if params > BIG_PARAMS else SWEEP_HW))
        return seeded_rand(1, 3, h, w)

    net, x, out = build_lively(name, scale, make_input)
    h, w = x.shape[-2:]
    assert out.shape == (1, 3, h * s, w * s)
    assert torch.isfinite(out).all()

    if spec.inference_form is not None:  # a new module computing the same function, faster
        form_out = runner(spec.inference_form(net), spec, scale)(x)
        assert (form_out - out).abs().max() <= 1e-5, 'inference_form changes the output'

    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    fresh = other_weights(net, name, scale)  # other weights, until the state dict replaces them
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    if count_params(net) <= BIG_PARAMS:
        assert torch.equal(runner(fresh, spec, scale)(x), out), 'a state-dict round trip changed the output'
    else:  # a copy of net with every saved tensor restored: equal tensors are the same function
        assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), net.state_dict().values()))

    if spec.channels_last_safe:
        to_channels_last(fresh)
        out_cl = runner(fresh, spec, scale)(x.contiguous(memory_format=torch.channels_last))
        assert (out_cl - out).abs().max() <= 1e-5, 'channels_last_safe, but channels_last changes the output'

    if spec.fp16_safe and scale == scales_of(name)[0]:  # float16 autocast: the CPU's op lists are CUDA's for
        with torch.autocast('cpu', dtype=torch.float16):  # convolutions, matrix products and attention
            half = runner(net, spec, scale)(x)
        assert torch.isfinite(half).all(), 'fp16_safe, but float16 autocast gives inf or NaN'
        error = (half.float() - out).abs().max() / (out.amax() - out.amin())
        assert error <= FP16_TOLERANCE, f'fp16_safe, but float16 autocast is {error:.1e} of the output range off'

    if spec.pad_multiple > 1:  # one pixel short of a multiple each way: predict pads back to (h, w), then crops
        odd = seeded_rand(1, 3, h - 1, w - 1)
        padded = predict(runner(net, spec, scale), odd, s, multiple=spec.pad_multiple, min_size=spec.min_size)
        assert padded.shape == (1, 3, (h - 1) * s, (w - 1) * s)

    if scale in spec.params:
        assert count_params(net) == spec.params[scale]


@pytest.mark.parametrize('name', DISCRIMINATORS)
@torch.no_grad()
def test_discriminator_scores_the_sizes_it_accepts(name):
    """Built from example_args with no scale; on a batch of an accepted size (the spec's pad_multiple and
    min_size) it returns finite logits, one per image (N, 1) or one per pixel (N, 1, H, W), that survive a
    state-dict round trip (and channels_last where claimed); a size one pixel off is refused by
    check_input_size and by forward with a ValueError naming the size."""
    spec = spec_of(name)
    h, w = (fit(n, spec) for n in SWEEP_HW)
    x = torch.cat([seeded_rand(1, 3, h, w), seeded_rand(1, 3, h, w).flip(-1)])
    for seed in range(SEEDS):
        torch.manual_seed(seed)
        net = create(name, **spec.example_args).eval()
        out = net(x)
        if out.amax() > out.amin():
            break
    else:
        pytest.fail(f'{name}: the output is constant for seeds 0-{SEEDS - 1}; nothing can be checked')
    assert out.shape in ((2, 1), (2, 1, h, w)), f'{name}: logits of shape {tuple(out.shape)} for {h}x{w} inputs'
    assert torch.isfinite(out).all()

    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(SEEDS)
    fresh = create(name, **spec.example_args).eval()
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(fresh(x), out), 'a state-dict round trip changed the output'

    if spec.channels_last_safe:  # relative to the logits' size: untrained, they can be huge (spectral norm's
        to_channels_last(fresh)  # u and v are only estimated in training)
        out_cl = fresh(x.contiguous(memory_format=torch.channels_last))
        tolerance = 1e-5 * max(1.0, float(out.abs().max()))
        assert (out_cl - out).abs().max() <= tolerance, 'channels_last_safe, but channels_last changes the output'

    net.check_input_size(h, w)
    for bad_h, bad_w in ((h + 1, w), (h, w + 1)):
        with pytest.raises(ValueError, match=f'{bad_h}x{bad_w}'):
            net.check_input_size(bad_h, bad_w)
        with pytest.raises(ValueError, match=f'{bad_h}x{bad_w}'):
            net(seeded_rand(1, 3, bad_h, bad_w))


def centre_pair(side: int) -> torch.Tensor:
    """A random side x side input and the same input with its centre pixel bumped, as one batch."""
    x = seeded_rand(1, 3, side, side)
    bumped = x.clone()
    bumped[..., side // 2, side // 2] += 1
    return torch.cat([x, bumped])


def measure_influence(name: str, scale: int, side: int
                      ) -> tuple[nn.Module, torch.Tensor, torch.Tensor, int, int]:
    """(network, input, its output, radius, borders reached (0-4)): how far, in LR pixels, changing the centre
    pixel of a side x side input (INEXACT_SIDE_BIG for a big network) changes the output.

    Outside the receptive field the two outputs are bitwise equal (the same ops on the same numbers), so
    any difference counts: a threshold such as 1e-6 misses both a deep network's faint edge and a change
    that reaches the whole image through a pooled statistic.
    """
    spec = spec_of(name)
    s = out_scale(spec, scale)

    def make_input(params: int) -> torch.Tensor:
        return centre_pair(fit(INEXACT_SIDE_BIG if params > BIG_PARAMS else side, spec))

    net, pair, out = build_lively(name, scale, make_input)
    n = pair.shape[-1]
    changed = (out[0] != out[1]).any(0).view(n, s, n, s).any(3).any(1)
    assert changed.any(), 'the centre pixel changes nothing: no radius can be measured'
    rows, cols = changed.nonzero(as_tuple=True)
    radius = int(torch.maximum((rows - n // 2).abs(), (cols - n // 2).abs()).max())
    borders = sum(bool(edge.any()) for edge in (changed[0], changed[-1], changed[:, 0], changed[:, -1]))
    return net, pair[:1], out[:1], radius, borders


@pytest.mark.parametrize('name, scale', FIRST_SCALE)
@torch.no_grad()
def test_tiling_claim(name, scale, caplog):
    """tiling_exact=True: one pixel's influence stays within a radius, and tiles that overlap by it give the
    untiled output. False: it reaches the whole image, and tiled inference is warned about (once)."""
    spec = spec_of(name)
    caplog.set_level(logging.WARNING, logger='srkit')
    if not spec.tiling_exact:
        net, x, _, radius, borders = measure_influence(name, scale, INEXACT_SIDE)
        assert borders == 4, f'tiling_exact=False, but the influence of one pixel stops at radius {radius}'
        for _ in range(2):
            warn_if_tiling_inexact(net, spec.tiling_exact, name, tile=x.shape[-1] // 2)
        assert [r.levelno for r in caplog.records] == [logging.WARNING] and 'tile_size 0' in caplog.text
        return
    for side in EXACT_SIDES:
        net, x, y, radius, borders = measure_influence(name, scale, side)
        if not borders:
            break
    side = x.shape[-1]
    assert not borders, f'tiling_exact=True, but one pixel changes the output {radius} pixels away'
    tiled = predict(runner(net, spec, scale), x, out_scale(spec, scale), multiple=spec.pad_multiple,
                    min_size=spec.min_size, tile=fit(side // 2, spec), overlap=fit(radius, spec))
    assert (tiled - y).abs().max() <= 1e-5, f'tiles overlapping by the radius {radius} differ from one pass'
    warn_if_tiling_inexact(net, spec.tiling_exact, name, tile=side // 2)
    assert not caplog.records


def _size_arguments(name: str) -> list[str]:
    """Constructor arguments with an integer default: channel counts, widths, depths, the scale ..."""
    params = inspect.signature(ARCH_REGISTRY.get(name)).parameters.values()
    return [p.name for p in params if type(p.default) is int]


@pytest.mark.parametrize('name', [n for n in NAMES if _size_arguments(n)])
@pytest.mark.parametrize('bad', [0, -5])
def test_impossible_sizes_are_the_users_mistake(name, bad):
    """0 or -5 for a size is refused with an OptionError naming it, or builds: never a torch RuntimeError."""
    spec = spec_of(name)
    for arg in _size_arguments(name):
        try:
            if arg == spec.scale_arg:
                create(name, bad, **spec.example_args)
            else:
                create(name, **{**spec.example_args, arg: bad})
        except OptionError as exc:
            assert arg in str(exc) or (arg == spec.scale_arg and str(bad) in str(exc)), str(exc)
