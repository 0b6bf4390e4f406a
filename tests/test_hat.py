"""HAT (HAT-S, HAT, HAT-L) and its IGConv / IGConv+ forms against the authors' code.

- Golden outputs of the authors' unchanged code (tests/fixtures/hat/README.md): the authors' state dicts load
  strictly into srkit's HAT, which computes the same outputs within 1e-5, at x2, x3, x4, for an input whose
  sides are not multiples of the window, and (IGConv+) in training mode with return_skip.
- Each published size has the authors' state-dict names and shapes and their parameter count (the count
  also against the paper's table); the IGConv authors' option files build through srkit's factory.
- Attention through scaled_dot_product_attention equals the explicit softmax form; masks and biases are
  cached. The registry-wide sweep (tests/test_arch_registry.py) checks shapes, round trips, channels_last,
  padding and tiling of every registered HAT name.
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

from srkit.archs import ARCH_REGISTRY, create, hat_arch
from srkit.archs.hat_arch import HAT, WindowAttention, relative_index_oca, relative_index_sa
from srkit.archs.weights import check_state_dict
from srkit.core.errors import CheckpointError, OptionError
from srkit.models.inference import predict

FIXTURES = Path(__file__).resolve().parent / 'fixtures' / 'hat'
PS_CASES = ['ps_x2', 'ps_x3', 'ps_x4']
IG_CASES = ['igconv', 'igconv_plus']
# Params (M) at x4 in the HAT paper (Chen et al., CVPR 2023; the authors' README table and the paper's
# comparison with HAT-L): HAT-S 9.6, HAT 20.8, HAT-L 40.8.
PAPER_PARAMS_M = {'HAT_S': 9.6, 'HAT': 20.8, 'HAT_L': 40.8}
TOL = 1e-5


def _recipe() -> Any:
    """``recipe_state`` of the fixture's generator: the golden weights are made, not stored (see its docstring)."""
    spec = importlib.util.spec_from_file_location('hat_golden_recipe', FIXTURES / 'make_official_golden.py')
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.recipe_state


@pytest.fixture(scope='module')
def golden() -> dict[str, Any]:
    return torch.load(FIXTURES / 'official_golden.pt', map_location='cpu', weights_only=True)


@pytest.fixture(scope='module')
def listings() -> dict[str, Any]:
    with gzip.open(FIXTURES / 'official_keys.json.gz', 'rt', encoding='utf-8') as f:
        return json.load(f)


def official_net(golden: dict[str, Any], case: str) -> HAT:
    """srkit's HAT with the case's arguments and the authors' state dict, loaded strictly."""
    torch.manual_seed(0)
    net = create('HAT', **golden['args'][case])
    assert isinstance(net, HAT)
    state = _recipe()(golden['keys'][case], golden['index'][case], golden['seed'][case])
    assert list(net.state_dict()) == list(state), 'the authors\' names, in their order'
    net.load_state_dict(state, strict=True)
    return net.eval()


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> float:
    assert actual.shape == expected.shape
    diff = (actual - expected).abs().max().item()
    assert diff <= TOL, diff
    return diff


@pytest.mark.parametrize('case', PS_CASES)
@torch.no_grad()
def test_pixelshuffle_computes_what_the_authors_hat_computes(golden, case: str) -> None:
    net = official_net(golden, case)
    assert net.scale_in_forward is False
    assert_close(net(golden['input']), golden['output'][case])
    # Sides not multiples of the window: the authors' test code reflect-pads and crops; so do the network
    # itself and srkit's predict with the window as the multiple.
    odd, scale = golden['odd_input'], golden['args'][case]['upscale']
    assert_close(net(odd), golden['odd_output'][case])
    padded = predict(net, odd, scale, multiple=golden['args'][case]['window_size'])
    assert_close(padded, golden['odd_output'][case])


@pytest.mark.parametrize('case', IG_CASES)
@torch.no_grad()
def test_igconv_forms_compute_what_the_igconv_authors_hat_computes(golden, case: str) -> None:
    net = official_net(golden, case)
    assert net.scale_in_forward is True
    for scale in (2, 3, 4):
        assert_close(net(golden['input'][:1], scale), golden['output'][case][scale])
        assert_close(net(golden['odd_input'], scale), golden['odd_output'][case][scale])
    if golden['args'][case].get('return_skip'):
        out, skip = net.train()(golden['input'][:1], 3)
        expected_out, expected_skip = golden['train']
        assert_close(out, expected_out)
        assert_close(skip, expected_skip)


def test_index_buffers_are_the_authors(golden) -> None:
    """A fresh network's relative-position indices are the authors' (negative OCA entries included)."""
    for case, args in golden['args'].items():
        window = args['window_size']
        overlap = int(window * args['overlap_ratio']) + window
        index = golden['index'][case]
        assert torch.equal(relative_index_sa(window), index['relative_position_index_SA'].long())
        assert torch.equal(relative_index_oca(window, overlap), index['relative_position_index_OCA'].long())


def _meta_build(name: str, scale: int | None = None, **kwargs: Any) -> torch.nn.Module:
    """The network's names and shapes without the cost of initialising 40 M parameters."""
    with torch.device('meta'):
        return create(name, scale, **kwargs)


def _shapes(net: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in net.state_dict().items()}


def count_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize('name', ['HAT_S', 'HAT', 'HAT_L'])
def test_published_sizes_have_the_authors_names_shapes_and_counts(listings, name: str) -> None:
    for scale in (2, 3, 4):
        listing = listings['listings'][f'{name}_x{scale}']
        if name == 'HAT':  # the class itself, with the authors' HAT_SRx{s}.yml arguments
            net = _meta_build('HAT', scale, **listings['args']['HAT'])
        else:
            net = _meta_build(name, scale)
        assert _shapes(net) == listing['shapes']
        assert list(net.state_dict()) == list(listing['shapes'])
        assert count_params(net) == listing['params']
        assert ARCH_REGISTRY.meta(name).params[scale] == listing['params']
    assert round(listings['listings'][f'{name}_x4']['params'] / 1e6, 1) == PAPER_PARAMS_M[name]


@pytest.mark.parametrize('name', ['HAT_IGConv', 'HAT_IGConvPlus'])
def test_ig_presets_have_the_igconv_authors_names_shapes_and_counts(listings, name: str) -> None:
    listing = listings['listings'][name]
    net = _meta_build(name)
    assert _shapes(net) == listing['shapes']
    assert count_params(net) == listing['params'] == ARCH_REGISTRY.meta(name).params[4]


def _igconv_option_files() -> list[Path]:
    root = shared_path('seed_options', 'IGConv', 'options')
    return sorted(p for p in root.rglob('*.yaml') if p.parent.name == 'HAT')


def test_igconv_option_files_build_the_igconv_plus_preset(listings) -> None:
    """Every network_g key of the IGConv authors' HAT files is accepted as it is (nothing dropped)."""
    files = _igconv_option_files()
    assert len(files) == 3
    for path in files:
        network_g = yaml.safe_load(path.read_text(encoding='utf-8'))['network_g']
        args = {k: v for k, v in network_g.items() if k != 'type'}
        net = _meta_build(network_g['type'], **args)
        assert isinstance(net, HAT) and net.scale_in_forward is True
        assert _shapes(net) == listings['listings']['HAT_IGConvPlus']['shapes'], path.name


@torch.no_grad()
def test_sdpa_attention_equals_the_explicit_softmax() -> None:
    """Shifted windows (bias + mask folded per window) and plain ones, batch of two."""
    torch.manual_seed(0)
    attn = WindowAttention(dim=8, window_size=4, num_heads=2).eval()
    torch.nn.init.normal_(attn.relative_position_bias_table, std=1.0)
    x = torch.randn(2 * 4, 16, 8)  # two images of 2x2 windows
    rpi = relative_index_sa(4)
    mask = hat_arch.shift_window_mask(8, 8, 4, 2)
    for m in (None, mask):
        b_, n, c = x.shape
        q, k, v = attn.qkv(x).reshape(b_, n, 3, 2, c // 2).permute(2, 0, 3, 1, 4)
        logits = (q * attn.scale) @ k.transpose(-2, -1)
        logits = logits + attn.relative_position_bias_table[rpi.view(-1)].view(n, n, -1).permute(2, 0, 1)
        if m is not None:
            logits = (logits.view(2, 4, 2, n, n) + m[None, :, None]).view(-1, 2, n, n)
        explicit = attn.proj((logits.softmax(-1) @ v).transpose(1, 2).reshape(b_, n, c))
        assert (attn(x, rpi, m) - explicit).abs().max() <= TOL


def _tiny(**kwargs: Any) -> HAT:
    args = {'upsampler': 'pixelshuffle', 'upscale': 2, 'img_size': 16, 'embed_dim': 8, 'depths': [2],
            'num_heads': [2], 'window_size': 4, 'compress_ratio': 2, 'squeeze_factor': 4, **kwargs}
    net = create('HAT', **args)
    assert isinstance(net, HAT)
    return net.eval()


@torch.no_grad()
def test_masks_and_biases_are_computed_once(monkeypatch) -> None:
    net = _tiny()
    calls: list[tuple[int, ...]] = []
    real = hat_arch.shift_window_mask

    def counted(*args: int) -> torch.Tensor:
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(hat_arch, 'shift_window_mask', counted)
    x = torch.rand(1, 3, 8, 12)
    first = net(x)
    group: Any = net.layers[0].residual_group
    attn = group.blocks[1].attn
    bias = attn.attention_bias(net.relative_position_index_SA)
    assert torch.equal(net(x), first)
    assert calls == [(8, 12, 4, 2)], 'one mask per input size'
    assert attn.attention_bias(net.relative_position_index_SA) is bias, 'kept while the table is unchanged'
    attn.relative_position_bias_table.add_(1.0)  # a new version of the table: a new bias
    assert not torch.equal(attn.attention_bias(net.relative_position_index_SA), bias)
    net(torch.rand(1, 3, 12, 8))
    assert len(calls) == 2


def test_training_gathers_the_bias_with_its_gradient() -> None:
    net = _tiny().train()
    net(torch.rand(1, 3, 8, 8)).mean().backward()
    group: Any = net.layers[0].residual_group
    grad = group.blocks[1].attn.relative_position_bias_table.grad
    assert grad is not None and grad.abs().sum() > 0
    assert group.overlap_attn.relative_position_bias_table.grad is not None


@torch.no_grad()
def test_autocast_float16_stays_close() -> None:
    torch.manual_seed(0)
    net = _tiny()
    x = torch.rand(1, 3, 8, 8)
    with torch.autocast('cpu', dtype=torch.float16):
        low = net(x)
    assert (low.float() - net(x)).abs().max() < 2e-2


def test_a_checkpoint_of_another_size_or_scale_is_refused_naming_the_key() -> None:
    net = _tiny()
    with pytest.raises(CheckpointError, match=r'"upsample.0.weight" has shape \(576, 64, 3, 3\).*\(256, 64, 3, 3\)'):
        check_state_dict(net, _tiny(upscale=3).state_dict())
    with pytest.raises(CheckpointError, match=r'"conv_first.weight" has shape \(12, 3, 3, 3\).*\(8, 3, 3, 3\)'):
        check_state_dict(net, _tiny(embed_dim=12, num_heads=[3], squeeze_factor=4).state_dict())


@pytest.mark.parametrize('bad, message', [
    ({'upsampler': ''}, "upsampler ''"),
    ({'upscale': 5}, 'upscale 5'),
    ({'num_heads': [3]}, 'multiple of every num_heads'),
    ({'depths': [2, 2]}, 'as long'),
    ({'img_size': 2}, 'smaller than window_size'),
    ({'window_size': 0}, 'window_size'),
])
def test_impossible_arguments_are_the_users_mistake(bad: dict[str, Any], message: str) -> None:
    with pytest.raises(OptionError, match=message):
        _tiny(**bad)


def test_the_ig_forms_need_the_scale_and_the_pixelshuffle_form_its_own() -> None:
    with pytest.raises(ValueError, match='needs the scale'):
        _tiny(upsampler='igconv', implicit_dim=8, latent_layers=1)(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match='x2, not x3'):
        _tiny()(torch.rand(1, 3, 8, 8), 3)


@torch.no_grad()
def test_igconvsr_can_host_the_pixelshuffle_hat() -> None:
    """The declared sub-pixel tail lets srkit's generic IGConvSR swap it for IGConv+ (any scale). Sides are
    window multiples: IGConvSR's IGSample reads the unpadded input beside the features of the padded one."""
    encoder = {'type': 'HAT', 'upsampler': 'pixelshuffle', 'img_size': 16, 'embed_dim': 8, 'depths': [2],
               'num_heads': [2], 'window_size': 4, 'compress_ratio': 2, 'squeeze_factor': 4}
    net = create('IGConvSR', encoder=encoder, upsampler='igconv_plus', implicit_dim=8, latent_layers=2).eval()
    for scale in (2, 3):
        assert net(torch.rand(1, 3, 8, 12), scale).shape == (1, 3, 8 * scale, 12 * scale)
