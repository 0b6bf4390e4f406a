"""SwinIR, its presets and SwinIRMS (the IGConv repository's multi-scale SwinIR) against the authors' code.

Golden outputs of small networks (tests/fixtures/swinir/README.md says how they were made), the published
networks' key names, shapes and parameter counts, the attention through scaled_dot_product_attention against
the explicit form, the shift-mask cache, and the official option file. The registry-wide sweep
(tests/test_arch_registry.py) checks shapes, round trips, channels_last, padding and tiling claims.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import shared_path

from srkit.archs import create
from srkit.archs.swinir_arch import MASK_CACHE_SIZES, SwinIR, WindowAttention, shifted_window_mask
from srkit.archs.weights import check_state_dict
from srkit.core.errors import CheckpointError, OptionError

FIXTURES = Path(__file__).resolve().parent / 'fixtures' / 'swinir'

# The SwinIR paper (arXiv 2108.10257) counts parameters without the relative-position bias tables
# ((2*8-1)^2 * 6 heads per block): SwinIR-S 878K / 886K / 897K (Table 3, lightweight SR) and the classical
# SwinIR 11.8M at x4. The released files (and srkit) hold the tables too.
PAPER_LIGHTWEIGHT = {2: 878_000, 3: 886_000, 4: 897_000}
TABLE_PARAMS = 15 * 15 * 6


@pytest.fixture(scope='module')
def golden() -> dict[str, Any]:
    return torch.load(FIXTURES / 'official_golden.pt', map_location='cpu', weights_only=True)


@pytest.fixture(scope='module')
def official_keys() -> dict[str, Any]:
    return json.loads((FIXTURES / 'official_keys.json').read_text(encoding='utf-8'))


def widen(value: torch.Tensor) -> torch.Tensor:
    """A stored tensor as the float32 the official code ran with (int8: multiples of 1/512; see the README)."""
    if value.dtype == torch.int8:
        return value.float() / 512
    return value.float() if value.is_floating_point() else value


def build(golden: dict[str, Any], name: str) -> torch.nn.Module:
    args = dict(golden['args'][name])
    net = create(args.pop('type'), **args).eval()
    net.load_state_dict({k: widen(v) for k, v in golden['state'][name].items()}, strict=True)
    return net


def count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize('name', ['classical', 'lightweight', 'realworld', 'restoration', 'igconv', 'igconv_plus'])
@torch.no_grad()
def test_computes_what_the_authors_network_computes(golden, name: str) -> None:
    """Same keys in the same order (buffers included), and every stored output within 1e-5: at the img_size
    (the stored attn_mask), at another size (the mask rebuilt), and at a size the window does not divide."""
    net = build(golden, name)
    assert list(net.state_dict()) == list(golden['state'][name])
    channels = golden['args'][name].get('in_chans', 3)
    for key, expected in golden['out'][name].items():
        source, _, scale = key.partition('@')
        x = golden['inputs'][source][:, :channels]
        out = net(x, int(scale)) if scale else net(x)
        assert out.shape == expected.shape, key
        assert (out - expected).abs().max() <= 1e-5, key


def test_igconv_plus_returns_image_and_skip_in_training(golden) -> None:
    net = build(golden, 'igconv_plus').train()
    with torch.no_grad():
        image, skip = net(golden['inputs']['other'], 2)
    expected_image, expected_skip = golden['train']
    assert (image - expected_image).abs().max() <= 1e-5 and (skip - expected_skip).abs().max() <= 1e-5
    net.return_skip = False
    with torch.no_grad():
        assert isinstance(net(golden['inputs']['other'], 2), torch.Tensor)


def test_a_seed_gives_the_authors_initial_weights(golden) -> None:
    args = dict(golden['args']['igconv_plus'])
    torch.manual_seed(0)
    state = create(args.pop('type'), **args).state_dict()
    for key, value in golden['init']['igconv_plus'].items():
        assert torch.equal(state[key], value), key


def test_stored_masks_are_the_computed_ones_and_cached_per_size(golden) -> None:
    net = build(golden, 'classical')
    assert isinstance(net, SwinIR)
    stored = net.layers[0].residual_group.blocks[1].attn_mask
    assert torch.equal(stored, widen(golden['state']['classical']['layers.0.residual_group.blocks.1.attn_mask']))
    assert torch.equal(net.shift_mask(8, 8, torch.device('cpu')), stored)
    with torch.no_grad():
        for _ in range(2):
            net(golden['inputs']['img'])
            net(golden['inputs']['other'])
    assert list(net._masks) == [(8, 8, torch.device('cpu')), (8, 12, torch.device('cpu'))]
    first = net.shift_mask(8, 12, torch.device('cpu'))
    assert net.shift_mask(8, 12, torch.device('cpu')) is first  # built once
    for side in range(12, 12 + 4 * (MASK_CACHE_SIZES + 1), 4):
        net.shift_mask(side, side, torch.device('cpu'))
    assert len(net._masks) == MASK_CACHE_SIZES  # bounded: validation images come in many sizes


def explicit_attention(attn: WindowAttention, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The authors' form: softmax(q * scale @ k^T + bias (+ mask per window)) @ v, then proj."""
    b_, n, c = x.shape
    q, k, v = attn.qkv(x).reshape(b_, n, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    scores = (q * attn.scale) @ k.transpose(-2, -1) + attn.relative_position_bias().unsqueeze(0)
    if mask is not None:
        nw = mask.shape[0]
        scores = (scores.view(b_ // nw, nw, attn.num_heads, n, n) + mask[None, :, None]).view(b_, -1, n, n)
    return attn.proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(b_, n, c))


@pytest.mark.parametrize('shifted', [False, True])
@torch.no_grad()
def test_sdpa_attention_equals_the_explicit_form(shifted: bool) -> None:
    torch.manual_seed(0)
    attn = WindowAttention(24, 4, 3).eval()
    torch.nn.init.normal_(attn.relative_position_bias_table, std=1.0)
    mask = shifted_window_mask(12, 8, 4, 2) if shifted else None
    x = torch.randn(2 * 6, 16, 24) * 3  # batch 2, 6 windows of 4x4
    assert (attn(x, mask) - explicit_attention(attn, x, mask)).abs().max() <= 1e-5


def test_gradient_checkpointing_changes_nothing(golden) -> None:
    x = golden['inputs']['img']
    results = []
    for use_checkpoint in (False, True):
        args = {**golden['args']['lightweight'], 'use_checkpoint': use_checkpoint, 'drop_path_rate': 0.0}
        args.pop('type')
        net = create('SwinIR', **args).train()
        net.load_state_dict({k: widen(v) for k, v in golden['state']['lightweight'].items()})
        out = net(x)
        out.square().mean().backward()
        results.append((out.detach(), net.conv_first.weight.grad))
    assert torch.allclose(results[0][0], results[1][0]) and torch.allclose(results[0][1], results[1][1])


@pytest.fixture(scope='module')
def published() -> dict[tuple[str, int], torch.nn.Module]:
    return {(name, s): create(name, s) for name, scales in (('SwinIR_M', (2, 3, 4, 8)), ('SwinIR_S', (2, 3, 4)))
            for s in scales}


def test_published_networks_have_the_released_keys_shapes_and_counts(published, official_keys) -> None:
    for (name, scale), net in published.items():
        listing = official_keys[name]
        expected = {**listing['common'], **listing['by_scale'][str(scale)]}
        assert {k: list(v.shape) for k, v in net.state_dict().items()} == expected, (name, scale)
        assert count(net) == listing['params'][str(scale)], (name, scale)


def test_parameter_counts_match_the_paper(published) -> None:
    """Without the bias tables (which the paper leaves out): SwinIR-S rounds to Table 3's 878K / 886K /
    897K, and the classical x4 network has 11.85M (the paper: 11.8M)."""
    for scale, paper in PAPER_LIGHTWEIGHT.items():
        assert round(count(published['SwinIR_S', scale]) - 24 * TABLE_PARAMS, -3) == paper
    assert 11.8e6 <= count(published['SwinIR_M', 4]) - 36 * TABLE_PARAMS < 11.9e6


def test_a_checkpoint_of_another_scale_or_img_size_is_refused_with_the_key(published) -> None:
    with pytest.raises(CheckpointError, match=r'"upsample\.0\.weight" has shape \(27, 60, 3, 3\).*\(12, 60, 3, 3\)'):
        check_state_dict(published['SwinIR_S', 2], published['SwinIR_S', 3].state_dict())
    s48 = create('SwinIR_S', 2, img_size=48).state_dict()  # a DIV2K_s48w8-style file: only its masks differ
    with pytest.raises(CheckpointError, match=r'attn_mask" has shape \(36, 64, 64\).*\(64, 64, 64\)'):
        check_state_dict(published['SwinIR_S', 2], s48)


def test_the_official_option_file_builds_its_network(official_keys) -> None:
    """IGConv's options/test/SwinIR/SwinIR_IGConvPlus_DIV2K.yaml, network_g as written."""
    path = shared_path('seed_options', 'IGConv', 'options', 'test', 'SwinIR', 'SwinIR_IGConvPlus_DIV2K.yaml')
    network_g = dict(yaml.safe_load(path.read_text(encoding='utf-8'))['network_g'])
    net = create(network_g.pop('type'), **network_g)
    listing = official_keys['SwinIRMS_option']
    assert {k: list(v.shape) for k, v in net.state_dict().items()} == listing['keys']
    assert count(net) == listing['params'] and net.scale_in_forward


def test_misuse_is_reported() -> None:
    with pytest.raises(OptionError, match='pixelshuffle'):
        create('SwinIR', 2, upsampler='pixelshufle')
    with pytest.raises(OptionError, match='num_heads'):
        create('SwinIR', 2, depths=[2, 2], num_heads=[2])
    with pytest.raises(OptionError, match='nearest'):
        create('SwinIR', 3, upsampler='nearest+conv')
    net = create('SwinIRMS', img_size=8, window_size=4, embed_dim=8, depths=[1], num_heads=[2], implicit_dim=8,
                 latent_layers=1).eval()
    with pytest.raises(ValueError, match='needs the scale'):
        net(torch.rand(1, 3, 8, 8))
