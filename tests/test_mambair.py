"""MambaIR and MambaIR-light (classic / lightweight SR) and their IGConv forms: the authors' code's outputs
(a golden fixture), the published configurations' parameter names, shapes and counts, srkit's scan against
the sequential reference, the IGConv authors' option files, and refusals.

The registry-wide sweep (tests/test_arch_registry.py) checks shapes, round trips, channels_last and the
inexact-tiling claim of every preset; tests/fixtures/mambair/README.md says how the fixture was made.
"""
from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import shared_path

from srkit.archs import arch_spec, create
from srkit.archs.mambair_arch import SS2D, MambaIR
from srkit.archs.weights import load_pretrained
from srkit.core.errors import CheckpointError, OptionError
from srkit.ops.selective_scan import selective_scan_reference

FIXTURES = Path(__file__).resolve().parent / 'fixtures' / 'mambair'
_spec = importlib.util.spec_from_file_location('mambair_golden_maker', FIXTURES / 'make_official_golden.py')
assert _spec is not None and _spec.loader is not None
_maker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_maker)  # only seeded_state is used: the authors' code is imported in its main()
seeded_state = _maker.seeded_state

GOLDEN = torch.load(FIXTURES / 'official_golden.pt', map_location='cpu', weights_only=True)
with gzip.open(FIXTURES / 'official_keys.json.gz', 'rt') as _f:
    PUBLISHED: dict[str, dict[str, Any]] = json.load(_f)
TOLERANCE = 1e-5


def listing(net: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in net.state_dict().items()}


def count_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def golden_net(name: str) -> MambaIR:
    case = GOLDEN['cases'][name]
    net = create('MambaIR', **case['args']).eval()
    assert listing(net) == case['listing'], 'names or shapes differ from the authors\' network'
    net.load_state_dict(seeded_state(case['listing'], case['seed']), strict=True)
    return net


@pytest.mark.parametrize('name', sorted(GOLDEN['cases']))
@torch.no_grad()
def test_computes_what_the_authors_network_computes(name: str) -> None:
    net, expected = golden_net(name), GOLDEN['cases'][name]['out']
    x = GOLDEN['input']
    if isinstance(expected, dict):  # the IGConv forms: one network, the scale per call
        for scale, out in expected.items():
            assert (net(x, scale) - out).abs().max() <= TOLERANCE, f'x{scale}'
    else:
        assert (net(x) - expected).abs().max() <= TOLERANCE


@torch.no_grad()
def test_igconv_plus_returns_the_skip_in_training() -> None:
    net = golden_net('igconv+igsample').train()
    image, skip = net(GOLDEN['input'], 3)
    expected_image, expected_skip = GOLDEN['igplus_train']
    assert (image - expected_image).abs().max() <= TOLERANCE
    assert (skip - expected_skip).abs().max() <= TOLERANCE
    net.return_skip = False
    assert isinstance(net(GOLDEN['input'], 3), torch.Tensor)


@pytest.mark.parametrize('shape', [(2, 9, 7), (1, 1, 20), (1, 16, 16)])
@torch.no_grad()
def test_the_scan_matches_the_sequential_reference(shape: tuple[int, int, int]) -> None:
    """srkit's scan (mamba_ssm's kernel where installed) against selective_scan_fn's definition, over all
    four directions, at Mamba's initial dynamics made different per channel and direction; 20 to 256
    tokens cross the fast scan's 16-token blocks."""
    torch.manual_seed(0)
    ss2d = SS2D(30, d_state=6, expand=1.5)
    for p in (ss2d.A_logs, ss2d.Ds, ss2d.dt_projs_bias):
        p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(*shape, 30)
    inner = torch.randn(shape[0], ss2d.d_inner, *shape[1:])
    fast, fast_scan = ss2d(x), ss2d._scan(inner)
    ss2d.selective_scan = selective_scan_reference
    assert (fast_scan - ss2d._scan(inner)).abs().max() <= TOLERANCE
    assert (fast - ss2d(x)).abs().max() <= TOLERANCE


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_presets_are_the_published_networks(scale: int) -> None:
    """Names, shapes and counts of the authors' networks from their test option files (which their
    released checkpoints load into strictly)."""
    for preset, published in (('MambaIR', f'MambaIR_x{scale}'), ('MambaIR_light', f'MambaIR_light_x{scale}')):
        net = create(preset, scale)
        assert listing(net) == PUBLISHED[published]['listing'], published
        assert count_params(net) == PUBLISHED[published]['params'] == arch_spec(preset).params[scale]


def test_igconv_presets_are_the_igconv_option_files_networks() -> None:
    for preset in ('MambaIR_IGConv', 'MambaIR_IGConvPlus', 'MambaIR_light_IGConv', 'MambaIR_light_IGConvPlus'):
        net = create(preset)
        assert net.scale_in_forward
        assert listing(net) == PUBLISHED[preset]['listing'], preset
        assert count_params(net) == PUBLISHED[preset]['params'] == arch_spec(preset).params[2]


def test_the_authors_option_arguments_build() -> None:
    """The authors' network_g sections (as stored with the listings; one scale per size, the tail is checked
    above), plus window_size, interval and num_heads, which some of their training files carry and their
    constructor swallows."""
    extra = {'window_size': 8, 'interval': [4, 4, 4, 4], 'num_heads': [6, 6, 6, 6]}
    for name in ('MambaIR_x4', 'MambaIR_light_x3'):
        published = PUBLISHED[name]
        assert listing(create('MambaIR', **published['args'], **extra)) == published['listing'], name


def _igconv_option_files() -> list[Path]:
    root = shared_path('seed_options', 'IGConv', 'options')
    return sorted(p for p in root.rglob('*.yaml') if 'MambaIR' in p.parent.name)


def test_igconv_option_files_build_the_published_networks() -> None:
    """Every IGConv MambaIR option file's network_g, nothing dropped, builds the network of its checkpoint
    (train and test files repeat a network: each distinct one is built once)."""
    files = _igconv_option_files()
    assert len(files) == 10
    networks: dict[str, tuple[str, dict[str, Any]]] = {}
    for path in files:
        network_g = dict(yaml.safe_load(path.read_text(encoding='utf-8'))['network_g'])
        size = 'MambaIR_light' if 'Light' in path.parent.name else 'MambaIR'
        published = size + ('_IGConvPlus' if 'Plus' in path.stem else '_IGConv')
        networks.setdefault(json.dumps(network_g, sort_keys=True), (published, network_g))
    assert len(networks) == 5  # the S8 model differs from IGConvPlus by max_s only
    for published, network_g in networks.values():
        args = dict(network_g)
        net = create(args.pop('type'), **args)
        assert listing(net) == PUBLISHED[published]['listing'], network_g
        assert net.scale_in_forward and not net.return_skip


def test_a_checkpoint_of_another_scale_or_preset_is_refused(tmp_path: Path) -> None:
    path = tmp_path / 'light_x3.pth'
    torch.save({'params': create('MambaIR_light', 3).state_dict()}, path)
    with pytest.raises(CheckpointError, match=r'"upsample.0.weight" has shape \(27, 60, 3, 3\) in the checkpoint '
                                              r'but \(12, 60, 3, 3\) in the network'):
        load_pretrained(create('MambaIR_light', 2), path, arch_type='MambaIR_light')
    with pytest.raises(CheckpointError, match=r'conv_first.weight" has shape \(60, 3, 3, 3\) in the checkpoint '
                                              r'but \(30, 3, 3, 3\)'):
        load_pretrained(create('MambaIR_light', 3, embed_dim=30, depths=[1]), path, arch_type='MambaIR_light')


@torch.no_grad()
def test_the_scale_is_checked_per_call() -> None:
    ig = create('MambaIR', embed_dim=30, depths=[1], upsampler='igconv', implicit_dim=8, latent_layers=1)
    plain = create('MambaIR', 2, embed_dim=30, depths=[1])
    x = torch.rand(1, 3, 4, 4)
    with pytest.raises(ValueError, match=r'net\(x, scale\)'):
        ig(x)
    with pytest.raises(ValueError, match='built for x2, not x3'):
        plain(x, 3)
    assert plain(x, 2).shape == ig(x, 2).shape == (1, 3, 8, 8)
    assert not plain.scale_in_forward


@pytest.mark.parametrize('args, message', [
    ({'embed_dim': 16}, 'embed_dim must be at least 30'),
    ({'upsampler': 'pixelshufle'}, 'Did you mean "pixelshuffle"'),
    ({'resi_connection': '2conv'}, 'resi_connection'),
    ({'depths': [2, 0]}, r'depths\[1\]'),
    ({'upscale': 5}, '2\\^n and 3'),
])
def test_impossible_arguments_are_the_users_mistake(args: dict[str, Any], message: str) -> None:
    with pytest.raises(OptionError, match=message):
        create('MambaIR', **{'embed_dim': 30, 'depths': [1], **args})


def test_checkpointing_changes_nothing_but_memory() -> None:
    torch.manual_seed(0)
    plain = create('MambaIR_light', 2, embed_dim=30, depths=[2], drop_path_rate=0.0).train()
    checkpointed = create('MambaIR_light', 2, embed_dim=30, depths=[2], drop_path_rate=0.0, use_checkpoint=True)
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.train()
    x = torch.rand(1, 3, 5, 6)
    plain(x).square().sum().backward()
    checkpointed(x).square().sum().backward()
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        assert a.grad is not None and b.grad is not None and torch.allclose(a.grad, b.grad, atol=1e-6), name


@torch.no_grad()
def test_fp16_autocast_keeps_the_output() -> None:
    """The spec's fp16_safe: the scan and LayerNorms run in float32 under autocast, as the authors' code."""
    for name, args in (('MambaIR', {'embed_dim': 30, 'depths': [2]}), ('MambaIR_light_IGConvPlus', {'depths': [2]})):
        assert arch_spec(name).fp16_safe
        torch.manual_seed(0)
        net = create(name, **args).eval()
        x = torch.rand(1, 3, 8, 7)
        inputs = (x, 3) if net.scale_in_forward else (x,)
        ref = net(*inputs)
        with torch.autocast('cpu', dtype=torch.float16):
            half = net(*inputs)
        assert (half.float() - ref).abs().max() < 1e-2, name  # 8-bit images differ by at most ~2 levels
