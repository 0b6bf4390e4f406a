"""ATD, ATD-light and ATD with IGConv+ (srkit.archs.atd_arch).

Golden outputs of the authors' unchanged code and of the IGConv authors' ATD (tests/fixtures/atd/README.md
says how they were made), the initial weights a seed gives, the published sizes' state-dict layouts and
parameter counts, the attention through scaled_dot_product_attention against the explicit form, the caches,
the option files' network sections and the refusal of another scale's checkpoint. The registry-wide sweep
(tests/test_arch_registry.py) checks shapes, round trips, channels_last and the tiling claim of every name.
"""
from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import shared_path

from srkit.archs import arch_spec, create
from srkit.archs.atd_arch import (
    AC_MSA,
    ATD,
    WindowAttention,
    reflect_pad,
    relative_position_index,
    shift_window_mask,
    symmetric_pad,
    window_partition,
)
from srkit.archs.igconv_arch import IGConvSR
from srkit.archs.weights import load_pretrained
from srkit.core.errors import CheckpointError, OptionError

FIXTURES = Path(__file__).resolve().parent / 'fixtures' / 'atd'
LISTING = json.loads(gzip.decompress((FIXTURES / 'official_keys.json.gz').read_bytes()))
CASES = ['pixelshuffle_x2', 'pixelshuffle_x3', 'pixelshuffle_x4', 'pixelshuffledirect_x2', 'pixelshuffledirect_x3',
         'pixelshuffledirect_x4', 'nearest_conv_x4', 'igconv_plus', 'igconv']
TINY: dict[str, Any] = {'embed_dim': 8, 'depths': [2, 2], 'num_heads': [2, 2], 'window_size': 4, 'category_size': 20,
                        'num_tokens': 8, 'reducted_dim': 4, 'convffn_kernel_size': 3, 'mlp_ratio': 2.0}


@pytest.fixture(scope='module')
def golden() -> dict[str, Any]:
    return torch.load(FIXTURES / 'official_golden.pt', map_location='cpu', weights_only=True)


def count_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def fingerprint(state: dict[str, torch.Tensor]) -> torch.Tensor:
    """make_official_golden.fingerprint: each tensor's sum and position-weighted sum, in float64."""
    rows = []
    for value in state.values():
        flat = value.detach().double().flatten()
        weights = torch.linspace(1, 2, flat.numel(), dtype=torch.float64)
        rows.append(torch.stack([flat.sum(), (flat * weights).sum()]))
    return torch.stack(rows)


def decode(stored: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The state dict the authors' network ran with, from the fixture's packed form (see _moved there)."""
    packed = stored['packed2']
    codes = torch.stack([(packed >> shift) & 3 for shift in (0, 2, 4, 6)], dim=1).flatten()
    state, small_at, code_at = {}, 0, 0
    for key, shape, where in stored['layout']:
        n = math.prod(shape)
        if where == 'index':
            state[key] = stored['index'][key]
        elif where == 'small':
            state[key] = stored['small'][small_at:small_at + n].view(shape)
            small_at += n
        else:
            state[key] = ((codes[code_at:code_at + n].float() - 2) / 64).view(shape)
            code_at += n
    return state


def official_net(case: dict[str, Any]) -> ATD:
    """srkit's network for a golden case, holding the weights and buffers the authors' network ran with."""
    net = create('ATD', **case['args']).eval()
    state = decode(case['state'])
    assert list(net.state_dict()) == list(state), "the authors' names, in the authors' order"
    assert torch.equal(net.relative_position_index_SA, state['relative_position_index_SA'])
    net.load_state_dict(state, strict=True)
    assert isinstance(net, ATD)
    return net


@pytest.mark.parametrize('name', CASES)
def test_a_seed_gives_the_authors_initial_weights(golden, name: str) -> None:
    """Same modules built in the same order with the same initialisers: a run from scratch starts where the
    authors' (or the IGConv authors') does."""
    case = golden['cases'][name]
    torch.manual_seed(0)
    net = create('ATD', **case['args'])
    torch.testing.assert_close(fingerprint(net.state_dict()), case['init'], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('name', CASES)
@torch.no_grad()
def test_computes_what_the_authors_network_computes(golden, name: str) -> None:
    """On a 2 x 3 x 7 x 6 input (padded to the 4 x 4 windows) and, where stored, an 8 x 8 one (no padding);
    the IGConv cases at every stored scale, as the IGConv authors' test code calls their network."""
    case = golden['cases'][name]
    net = official_net(case)
    assert net.scale_in_forward == (case['source'] == 'igconv')
    for label, expected in case['eval'].items():
        key, scale = label.rsplit('_x', 1)
        x = golden['inputs'][key]
        out = net(x, int(scale)) if net.scale_in_forward else net(x)
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-5, msg=f'{name} {label}')


@torch.no_grad()
def test_igconv_plus_training_forward_returns_image_and_skip(golden) -> None:
    case = golden['cases']['igconv_plus']
    net = official_net(case).train()
    out, skip = net(golden['inputs']['even'], golden['train_scale'])
    torch.testing.assert_close(out, case['train']['out'], rtol=0, atol=1e-5)
    torch.testing.assert_close(skip, case['train']['skip'], rtol=0, atol=1e-5)
    net.return_skip = False
    assert isinstance(net(golden['inputs']['even'], 3), torch.Tensor)


# (listing, registered name, scale given to create, also build ``type: ATD`` with the listing's arguments)
PUBLISHED = [('ATD', 'ATD', s, False) for s in (2, 3, 4)] + [('ATD_light', 'ATD_light', s, True) for s in (2, 3, 4)] + [
    ('ATD_IGConvPlus', 'ATD_IGConvPlus', None, False)]


@pytest.mark.parametrize('listing, name, scale, as_written', PUBLISHED)
def test_published_sizes_have_the_authors_layout(listing: str, name: str, scale: int | None, as_written: bool) -> None:
    """Names, shapes, order and parameter count as the authors' code builds their option files' networks
    (meta device: no memory, no time). The registered ATD is ``type: ATD`` with their arguments (its
    example_args); ATD_light is checked both ways; the IGConv files' ``type: ATD`` sections below."""
    expected = LISTING[listing]
    by_scale = expected['by_scale'][str(scale or 2)]
    keys = {k: v for k, v in expected['keys'].items() if k not in by_scale['absent']} | by_scale['differs']
    order = [k for k in expected['keys'] if k in keys] + [k for k in by_scale['differs'] if k not in expected['keys']]
    with torch.device('meta'):
        nets = [create(name, scale, **arch_spec(name).example_args) if scale else create(name)]
        if as_written:
            nets.append(create('ATD', scale, **expected['args']))
    if name == 'ATD':
        assert arch_spec(name).example_args == {**expected['args'], 'depths': (6,) * 6, 'num_heads': (6,) * 6}
    for net in nets:
        assert [(k, list(v.shape)) for k, v in net.state_dict().items()] == [(k, keys[k]) for k in order]
        assert count_params(net) == by_scale['params'] == arch_spec(name).params[scale or 2]


def test_parameter_counts_match_the_paper() -> None:
    """ATD-light 769K at x4 (the paper's lightweight table); ATD 20.1M, which is the x2 network (20.11M; the
    x3 and x4 tails make it 20.30M and 20.26M)."""
    assert round(LISTING['ATD_light']['by_scale']['4']['params'] / 1000) == 769
    assert round(LISTING['ATD']['by_scale']['2']['params'] / 1e5) == 201
    assert arch_spec('ATD').params == {2: 20113217, 3: 20297857, 4: 20260929}


def explicit_window_attention(attn: WindowAttention, qkv: torch.Tensor, rpi: torch.Tensor,
                              mask: torch.Tensor | None) -> torch.Tensor:
    """The authors' form: (q * scale) @ k^T + bias (+ mask per window), softmax, @ v, proj."""
    b_, n, c3 = qkv.shape
    c, heads = c3 // 3, attn.num_heads
    q, k, v = qkv.reshape(b_, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    logits = (q * attn.scale) @ k.transpose(-2, -1)
    logits = logits + attn.relative_position_bias_table[rpi.view(-1)].view(n, n, -1).permute(2, 0, 1)
    if mask is not None:
        windows = mask.shape[0]
        logits = (logits.view(-1, windows, heads, n, n) + mask[None, :, None]).view(-1, heads, n, n)
    return attn.proj((logits.softmax(-1) @ v).transpose(1, 2).reshape(b_, n, c))


@pytest.mark.parametrize('shifted', [False, True])
@torch.no_grad()
def test_window_attention_through_sdpa_matches_the_explicit_form(shifted: bool) -> None:
    """At ATD's size (210 channels, 6 heads, 16 x 16 windows), 2 x 3 windows, batch 2."""
    torch.manual_seed(0)
    attn = WindowAttention(210, 16, 6)
    torch.nn.init.normal_(attn.relative_position_bias_table, std=1.0)
    rpi = relative_position_index(16)
    qkv = torch.randn(2 * 6, 256, 630)
    mask = shift_window_mask(32, 48, 16) if shifted else None
    assert attn(qkv[:6], rpi, mask).shape == (6, 256, 210)  # one image: the mask's windows are the batch
    assert (attn(qkv, rpi, mask) - explicit_window_attention(attn, qkv, rpi, mask)).abs().max() <= 1e-5


def explicit_category_attention(aca: AC_MSA, qkv: torch.Tensor, sim: torch.Tensor) -> torch.Tensor:
    """The authors' AC-MSA written out token by token: sort by category, groups of category_size (the last
    one completed with the mirrored last tokens), logit_scale * q @ k^T, softmax, @ v, unsort, proj."""
    b, n, c3 = qkv.shape
    c, heads = c3 // 3, aca.num_heads
    size = min(n, aca.category_size)
    order = torch.sort(sim.argmax(-1), dim=-1, stable=False).indices
    out = qkv.new_empty(b, n, c)
    scale = aca.logit_scale.clamp(max=math.log(100.0)).exp()
    for i in range(b):
        tokens = qkv[i, order[i]]
        pad = -n % size
        tokens = torch.cat([tokens, tokens[n - pad:].flip(0)])
        q, k, v = tokens.view(-1, size, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        y = ((q @ k.transpose(-2, -1)) * scale).softmax(-1) @ v
        out[i, order[i]] = y.permute(0, 2, 1, 3).reshape(-1, c)[:n]
    return aca.proj(out)


@pytest.mark.parametrize('n', [256, 200])
@torch.no_grad()
def test_category_attention_through_sdpa_matches_the_explicit_form(n: int) -> None:
    """ATD's size (210 channels, 6 heads, categories of 64 here); 200 tokens leave a mirrored remainder.

    logit_scale starts at 10, so unit-variance q and k make logits of std ~60, where float32 rounding of
    either form reaches 1e-5 (against float64, SDPA's error is the smaller one); tokens of std 0.5 (logits
    of std ~15) keep the forms within 1e-5 of each other.
    """
    torch.manual_seed(0)
    aca = AC_MSA(210, 6, 64)
    qkv, sim = torch.randn(2, n, 630) * 0.5, torch.rand(2, n, 128)
    assert (aca(qkv, sim) - explicit_category_attention(aca, qkv, sim)).abs().max() <= 1e-5
    qkv = qkv * 2
    exact = explicit_category_attention(aca.double(), qkv.double(), sim)
    sdpa = (aca(qkv.double(), sim) - exact).abs().max()  # float64 throughout: the reference's precision
    aca.float()
    assert (aca(qkv, sim).double() - exact).abs().max() <= (explicit_category_attention(aca, qkv, sim).double()
                                                             - exact).abs().max() + 1e-6
    assert sdpa <= 1e-12


def test_the_relative_bias_is_cached_until_the_table_changes() -> None:
    attn = WindowAttention(8, 4, 2)
    rpi = relative_position_index(4)
    with torch.no_grad():
        first = attn.attention_bias(rpi)
        assert attn.attention_bias(rpi) is first
        attn.load_state_dict({**attn.state_dict(), 'relative_position_bias_table': torch.ones(49, 2)})
        assert torch.equal(attn.attention_bias(rpi), torch.ones(2, 16, 16))
    attn.attention_bias(rpi).sum().backward()  # with autograd: gathered anew, so the gradient reaches the table
    assert attn.relative_position_bias_table.grad is not None


@torch.no_grad()
def test_the_shift_mask_is_computed_once_per_input_size() -> None:
    net = create('ATD', 2, **TINY, upsampler='pixelshuffledirect').eval()
    net(torch.rand(1, 3, 8, 8))
    net(torch.rand(1, 3, 7, 5))  # padded to 8 x 8 too: the same mask
    assert list(net._masks) == [(8, 8, torch.device('cpu'))]
    mask = net._masks[(8, 8, torch.device('cpu'))]
    net(torch.rand(2, 3, 8, 8))
    assert net._masks[(8, 8, torch.device('cpu'))] is mask
    # the authors' calculate_mask: regions [0, h - w), [h - w, h - w/2), [h - w/2, h) on each axis
    labels = torch.zeros(1, 8, 8, 1)
    for i, rows in enumerate((slice(0, -4), slice(-4, -2), slice(-2, None))):
        for j, cols in enumerate((slice(0, -4), slice(-4, -2), slice(-2, None))):
            labels[:, rows, cols] = 3 * i + j
    windows = window_partition(labels, 4).squeeze(-1)
    expected = (windows[:, None] - windows[:, :, None]).ne(0).float() * -100.0
    assert torch.equal(mask, expected)


def network_sections(*files: Path) -> list[tuple[str, dict[str, Any]]]:
    sections = []
    for path in files:
        section = dict(yaml.safe_load(path.read_text())['network_g'])
        sections.append((section.pop('type'), section))
    return sections


def test_the_igconv_option_files_build_as_written() -> None:
    """Every key of the IGConv repository's ATD network_g sections is accepted, nothing dropped."""
    folder = shared_path('seed_options', 'IGConv', 'options')
    files = sorted(folder.glob('*/ATD/*.yaml'))
    assert len(files) == 3
    for type_name, args in network_sections(*files):
        with torch.device('meta'):
            net = create(type_name, **args)
        assert isinstance(net, ATD) and net.scale_in_forward and not net.return_skip
        assert count_params(net) == LISTING['ATD_IGConvPlus']['by_scale']['2']['params']


@torch.no_grad()
def test_the_scale_goes_where_the_upsampler_needs_it() -> None:
    x = torch.rand(1, 3, 7, 9)
    plain = create('ATD', 3, **TINY, upsampler='pixelshuffledirect').eval()
    assert plain(x).shape == plain(x, 3).shape == (1, 3, 21, 27)
    with pytest.raises(ValueError, match='x3, not x2'):
        plain(x, 2)
    ig = create('ATD', **TINY, upsampler='igconv', implicit_dim=16, latent_layers=2).eval()
    assert ig(x, 2).shape == (1, 3, 14, 18) and ig(x, 5).shape == (1, 3, 35, 45)
    with pytest.raises(ValueError, match='needs the scale'):
        ig(x)


def test_padding_follows_each_authors_pipeline() -> None:
    """The ATD authors' network appends a mirrored copy (edge pixel repeated), repeated here where one copy
    is too short; the IGConv authors' test code reflects (edge not repeated), mirrored where it cannot."""
    x = torch.arange(3.0).view(1, 1, 1, 3)
    assert symmetric_pad(x, 1, 5).flatten().tolist() == [0, 1, 2, 2, 1]
    assert symmetric_pad(x, 1, 8).flatten().tolist() == [0, 1, 2, 2, 1, 0, 0, 1]
    assert reflect_pad(x, 1, 5).flatten().tolist() == [0, 1, 2, 1, 0]
    assert reflect_pad(x, 1, 6).flatten().tolist() == [0, 1, 2, 2, 1, 0]


@torch.no_grad()
def test_an_input_smaller_than_half_the_window_runs() -> None:
    """1 x 2 inputs in 4 x 4 windows (the authors' padding fails there), both padding modes."""
    x = torch.rand(1, 3, 1, 2)
    assert create('ATD', 2, **TINY, upsampler='pixelshuffle').eval()(x).shape == (1, 3, 2, 4)
    ig = create('ATD', **TINY, upsampler='igconv+igsample', implicit_dim=16, latent_layers=2).eval()
    assert ig(x, 3).shape == (1, 3, 3, 6)


def test_activation_checkpointing_changes_no_value_nor_gradient() -> None:
    torch.manual_seed(0)
    plain = create('ATD', 2, **TINY, upsampler='pixelshuffledirect')
    recomputed = create('ATD', 2, **TINY, upsampler='pixelshuffledirect', use_checkpoint=True)
    recomputed.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 8, 8)
    outs = [net(x) for net in (plain, recomputed)]
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    for out in outs:
        out.square().mean().backward()
    for (name, a), b in zip(plain.named_parameters(), recomputed.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-7, msg=name)


@pytest.mark.parametrize('args, message', [
    ({'upsampler': ''}, "the authors' default '' fails"),
    ({'upsampler': 'pixelshuffle', 'upscale': 5}, '2\\^n and 3'),
    ({'upsampler': 'nearest+conv', 'upscale': 2}, 'x4 only'),
    ({'upsampler': 'igconv', 'in_chans': 1}, 'output RGB'),
    ({'upsampler': 'igconv', 'max_s': 8}, 'ignores max_s'),
    ({'window_size': 5}, 'must be even'),
    ({'num_heads': [2, 3]}, 'multiple of every num_heads'),
    ({'depths': [2]}, 'as long'),
    ({'resi_connection': '2conv'}, 'resi_connection'),
])
def test_impossible_configurations_are_option_errors(args: dict[str, Any], message: str) -> None:
    with pytest.raises(OptionError, match=message):
        create('ATD', **{**TINY, 'upsampler': 'pixelshuffledirect', **args})


@torch.no_grad()
def test_igconvsr_can_host_both_tails() -> None:
    """The declared sub-pixel tails (pixelshuffle: conv_before_upsample, upsample, conv_last; ATD_light's
    pixelshuffledirect: upsample) are replaced by IGConv; the host's crop follows the output's size."""
    net = IGConvSR({'type': 'ATD', **TINY, 'upsampler': 'pixelshuffle'}, implicit_dim=16, latent_layers=2).eval()
    assert net(torch.rand(1, 3, 7, 9), 3).shape == (1, 3, 21, 27)
    assert arch_spec('ATD_light').subpixel_tail == ('upsample',)


def test_a_checkpoint_of_another_scale_is_refused_with_the_first_mismatch(tmp_path: Path) -> None:
    """The released files wrap the weights in ``params_ema`` (their option files' param_key_g) and load
    strictly; a x2 file in a x4 network is refused naming the tail and both shapes."""
    x2 = create('ATD', 2, **TINY, upsampler='pixelshuffledirect')
    torch.save({'params_ema': x2.state_dict()}, tmp_path / 'x2.pth')
    fresh = create('ATD', 2, **TINY, upsampler='pixelshuffledirect')
    assert load_pretrained(fresh, tmp_path / 'x2.pth', param_key='params_ema', strict=True)['missing'] == []
    for key, value in x2.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    x4 = create('ATD', 4, **TINY, upsampler='pixelshuffledirect')
    with pytest.raises(CheckpointError, match=r'"upsample.0.weight" has shape \(12, 8, 3, 3\) in the checkpoint '
                                              r'but \(48, 8, 3, 3\) in the network'):
        load_pretrained(x4, tmp_path / 'x2.pth', param_key='params_ema', strict=True)
