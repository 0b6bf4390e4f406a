"""HiT-SRF and its IGConv forms: the authors' code's outputs, initial weights and state-dict layouts (golden
fixtures, tests/fixtures/hit_srf/README.md), the released and IGConv option files, srkit's faster forms of the
position bias and the spatial correlation against the authors' explicit ones, the bias cache, padding of any
input size, and refusals.

The registry-wide sweep (tests/test_arch_registry.py) checks shapes, round trips, channels_last, tiling and the
parameter counts of HiT_SRF, HiT_SRF_IGConv and HiT_SRF_IGConvPlus.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import shared_path
from torch.nn import functional as F

from srkit.archs import create
from srkit.archs.hit_srf_arch import SCC, HiT_SRF, reflect_pad
from srkit.archs.weights import check_state_dict
from srkit.core.errors import CheckpointError, OptionError

FIXTURES = Path(__file__).resolve().parent / 'fixtures' / 'hit_srf'
PLAIN, IG = ('x2', 'x3', 'x4'), ('igconv', 'igconv+igsample')
# The authors' options/Test/test_HiT_SRF_x4.yml network_g (their x2/x3 files differ in upscale only).
RELEASED_X4 = {'upscale': 4, 'in_chans': 3, 'img_size': 64, 'base_win_size': [8, 8], 'img_range': 1.0,
               'depths': [6, 6, 6, 6], 'embed_dim': 60, 'num_heads': [6, 6, 6, 6], 'expansion_factor': 2,
               'resi_connection': '1conv', 'hier_win_ratios': [0.5, 1, 2, 4, 6, 8], 'upsampler': 'pixelshuffledirect'}
TINY: dict[str, Any] = {'embed_dim': 16, 'depths': [2], 'num_heads': [2], 'base_win_size': [2, 2],
                        'hier_win_ratios': [1, 4], 'img_size': 8}


@pytest.fixture(scope='module')
def golden() -> dict[str, Any]:
    return torch.load(FIXTURES / 'official_golden.pt', map_location='cpu', weights_only=True)


@pytest.fixture(scope='module')
def listing() -> dict[str, Any]:
    return json.loads((FIXTURES / 'official_keys.json').read_text(encoding='utf-8'))


def official_net(golden: dict[str, Any], name: str) -> HiT_SRF:
    net = HiT_SRF(**golden['args'][name])
    net.load_state_dict({**golden['body'], **golden['tails'][name]}, strict=True)
    return net.eval()


def shapes(net: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in net.state_dict().items()}


@pytest.mark.parametrize('name', PLAIN)
@torch.no_grad()
def test_computes_what_the_authors_hit_srf_computes(golden: dict[str, Any], name: str) -> None:
    """Windows 2..32 on a 9x11 input: one-step and two-step padding, spatial_linear over 1..64 pixels.
    The differences are float32 rounding (in float64 srkit and the authors' code agree to 1e-14)."""
    out = official_net(golden, name)(golden['input'])
    torch.testing.assert_close(out, golden['output'][name], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', IG)
@torch.no_grad()
def test_computes_what_the_igconv_hit_srf_computes(golden: dict[str, Any], name: str) -> None:
    net = official_net(golden, name)
    assert net.scale_in_forward
    for scale, expected in golden['output'][name].items():
        torch.testing.assert_close(net(golden['input'][:1], scale), expected, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_igconv_plus_training_forward_returns_image_and_skip(golden: dict[str, Any]) -> None:
    net = official_net(golden, 'igconv+igsample').train()
    image, skip = net(golden['input'][:1], 3)
    torch.testing.assert_close(image, golden['plus_train'][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(skip, golden['plus_train'][1], rtol=1e-5, atol=1e-5)
    net.return_skip = False
    assert isinstance(net(golden['input'][:1], 3), torch.Tensor)


def test_a_seed_gives_the_authors_initial_weights(golden: dict[str, Any]) -> None:
    """Body, '3conv' residual convs, IGConv and IGSample: the same layers created in the same order."""
    torch.manual_seed(0)
    state = HiT_SRF(**golden['args']['init']).state_dict()
    assert list(state) == list(golden['init'])
    for key, value in golden['init'].items():
        assert torch.equal(state[key], value), key


@pytest.mark.parametrize('name', ['HiT_SRF_x2', 'HiT_SRF_x3', 'HiT_SRF_x4', 'HiT_SRF_IGConv', 'HiT_SRF_IGConvPlus'])
def test_published_networks_have_the_authors_keys_and_shapes(listing: dict[str, Any], name: str) -> None:
    """What the released checkpoints hold (no buffers: the authors keep none in their state dicts)."""
    net = create('HiT_SRF', int(name[-1])) if name[-2] == 'x' else create(name)
    assert shapes(net) == {**listing['body'], **listing['tails'][name]}
    assert sum(p.numel() for p in net.parameters()) == listing['params'][name]


def test_the_released_option_file_builds_the_papers_866k_network(listing: dict[str, Any]) -> None:
    """HiT-SRF x4: 866K parameters (the paper's table and the authors' README); expansion_factor is accepted."""
    net = create('HiT_SRF', 4, **RELEASED_X4)
    count = sum(p.numel() for p in net.parameters())
    assert count == listing['params']['HiT_SRF_x4'] and round(count / 1000) == 866


def _igconv_option_files() -> list[Path]:
    root = shared_path('seed_options', 'IGConv', 'options')
    return sorted(root.glob('*/HiT_SR*/*.yaml'))


def test_igconv_option_files_build_the_published_igconv_networks(listing: dict[str, Any]) -> None:
    """Every network_g key of IGConv's four HiT-SRF files is accepted (nothing dropped); each builds the
    network of its preset, IGConv or IGConv+."""
    files = _igconv_option_files()
    assert len(files) == 4
    for path in files:
        args = dict(yaml.safe_load(path.read_text(encoding='utf-8'))['network_g'])
        assert args.pop('type') == 'HiT_SRF'
        net = create('HiT_SRF', **args)
        preset = 'HiT_SRF_IGConvPlus' if args['upsampler'] == 'igconv+igsample' else 'HiT_SRF_IGConv'
        assert shapes(net) == {**listing['body'], **listing['tails'][preset]}, path.name
        assert net.scale_in_forward and not (preset == 'HiT_SRF_IGConvPlus' and net.return_skip)


def _random_scc(window: tuple[int, int], base: tuple[int, int], dim: int = 32, heads: int = 2) -> SCC:
    torch.manual_seed(sum(window))
    scc = SCC(dim, base, window, heads)
    with torch.no_grad():
        for p in scc.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return scc.eval()


def explicit_bias(scc: SCC) -> torch.Tensor:
    """The authors' form: the MLP on every offset, an (L, L) gather, the mean over each cell's pixels."""
    (h, w), (mh, mw) = scc.window_size, scc.base_win_size
    dy, dx = torch.arange(1 - h, h), torch.arange(1 - w, w)
    table = scc.pos(torch.stack(torch.meshgrid(dy, dx, indexing='ij')).flatten(1).t().float())
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij')
    ys, xs = ys.flatten(), xs.flatten()
    index = (ys[:, None] - ys[None] + h - 1) * (2 * w - 1) + (xs[:, None] - xs[None] + w - 1)
    gathered = table[index].view(h * w, mh, h // mh, mw, w // mw, -1).permute(0, 1, 3, 5, 2, 4)
    return gathered.reshape(h * w, mh * mw, scc.num_heads, -1).mean(-1).permute(2, 0, 1)


WINDOWS = [((4, 4), (8, 8)), ((8, 8), (8, 8)), ((16, 16), (8, 8)), ((24, 24), (8, 8)), ((8, 16), (4, 8))]


@pytest.mark.parametrize('window, base', WINDOWS)
@torch.no_grad()
def test_pooled_position_bias_is_the_authors_gathered_mean(window: tuple[int, int], base: tuple[int, int]) -> None:
    scc = _random_scc(window, base)
    torch.testing.assert_close(scc.position_bias(), explicit_bias(scc), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('window, base', WINDOWS)
@torch.no_grad()
def test_reassociated_spatial_correlation_is_the_explicit_form(window: tuple[int, int],
                                                               base: tuple[int, int]) -> None:
    """srkit computes ``q (v^T v / s) + bias v``; the authors ``(q v^T / s + bias) v``. (HiT-SR's correlation
    has no softmax, so scaled_dot_product_attention cannot compute it.)"""
    scc = _random_scc(window, base)
    length = window[0] * window[1]
    q, v = torch.randn(3, length, 16), torch.randn(3, length, 16)
    q_heads, v_heads = scc.heads(q, v)
    corr = q_heads @ v_heads.transpose(-2, -1) / scc.scale + explicit_bias(scc)
    expected = (corr @ v_heads).transpose(1, 2).reshape(3, length, 16)
    out = scc._spatial(q, v)
    assert (out - expected).abs().max() <= 1e-5 * max(1.0, expected.abs().max().item())


def test_position_bias_is_cached_in_inference_until_a_parameter_changes() -> None:
    scc = _random_scc((16, 16), (8, 8))
    with torch.no_grad():
        first = scc.position_bias()
        assert scc.position_bias() is first
        scc.pos.pos3[2].bias.add_(1.0)  # an in-place update (an optimizer step, EMA, load_state_dict)
        changed = scc.position_bias()
        assert changed is not first and torch.allclose(changed, first + 1.0, atol=1e-5)
        scc.double()
        assert scc.position_bias().dtype == torch.float64
    with_grad = scc.position_bias()
    assert with_grad.requires_grad and with_grad is not scc.position_bias()


def test_reflect_padding_is_the_authors_where_they_pad_and_goes_on_below() -> None:
    x = torch.rand(1, 2, 5, 7)
    assert torch.equal(reflect_pad(x, 4, 6), F.pad(x, (0, 6, 0, 4), mode='reflect'))  # one step
    two_step = reflect_pad(x, 9, 0)  # the authors: reflect by 4, then by 5
    assert torch.equal(two_step, F.pad(F.pad(x, (0, 0, 0, 4), mode='reflect'), (0, 0, 0, 5), mode='reflect'))
    assert reflect_pad(x, 60, 57).shape[-2:] == (65, 64)  # the authors' F.pad raises here
    assert torch.equal(reflect_pad(x[..., :1, :], 3, 0), x[..., :1, :].expand(1, 2, 4, 7))


@pytest.mark.parametrize('hw', [(1, 1), (3, 2), (5, 9)])
@torch.no_grad()
def test_any_input_size_runs(hw: tuple[int, int]) -> None:
    """Windows up to 8x8 on inputs down to 1x1 (the authors' code accepts none of these)."""
    net = HiT_SRF(**TINY, upscale=3).eval()
    out = net(torch.rand(2, 3, *hw))
    assert out.shape == (2, 3, hw[0] * 3, hw[1] * 3) and torch.isfinite(out).all()


@pytest.mark.parametrize('upsampler, scale, out_scale', [('pixelshuffle', 3, 3), ('pixelshuffle', 4, 4),
                                                         ('nearest+conv', 4, 4), ('', 1, 1), (None, 2, 1)])
@torch.no_grad()
def test_the_authors_other_tails(upsampler: str | None, scale: int, out_scale: int) -> None:
    net = HiT_SRF(**TINY, upscale=scale, upsampler=upsampler).eval()
    assert net(torch.rand(1, 3, 6, 5)).shape == (1, 3, 6 * out_scale, 5 * out_scale)


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    torch.manual_seed(0)
    plain = HiT_SRF(**TINY, upscale=2)
    checkpointed = HiT_SRF(**TINY, upscale=2, use_checkpoint=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 6, 6)
    for net in (plain, checkpointed):
        net(x).square().mean().backward()
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        assert a.grad is not None and b.grad is not None
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_igconv_forms_need_the_scale() -> None:
    net = HiT_SRF(**TINY, upsampler='igconv', implicit_dim=8, latent_layers=1).eval()
    with pytest.raises(ValueError, match=r'net\(x, scale\)'):
        net(torch.rand(1, 3, 4, 4))


@pytest.mark.parametrize('args, named', [
    ({'upsampler': 'pixelshufle'}, 'upsampler'),
    ({'resi_connection': '2conv'}, 'resi_connection'),
    ({'hier_win_ratios': [1, 1.5]}, 'window'),
    ({'num_heads': [3]}, 'embed_dim'),
    ({'depths': [3]}, 'hier_win_ratios'),
    ({'upsampler': 'nearest+conv', 'upscale': 2}, 'x4'),
])
def test_impossible_configurations_are_the_users_mistake(args: dict[str, Any], named: str) -> None:
    with pytest.raises(OptionError, match=named):
        create('HiT_SRF', **{**TINY, **args})


def test_a_checkpoint_of_another_scale_or_upsampler_is_refused_with_the_key_and_shapes() -> None:
    x2 = HiT_SRF(**TINY, upscale=2).state_dict()
    with pytest.raises(CheckpointError, match=r'"upsample\.0\.weight" has shape \(12, 16, 3, 3\) in the checkpoint '
                                              r'but \(27, 16, 3, 3\) in the network'):
        check_state_dict(HiT_SRF(**TINY, upscale=3), x2)
    with pytest.raises(CheckpointError, match=r'missing from the checkpoint, first "upsample\.freq"'):
        check_state_dict(HiT_SRF(**TINY, upsampler='igconv', implicit_dim=8, latent_layers=1), x2)
