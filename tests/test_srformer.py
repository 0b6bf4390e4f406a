"""SRFormer and SRFormer-light (srkit.archs.srformer_arch), with the IGConv repository's igconv upsamplers.

Golden outputs of the authors' unchanged code (tests/fixtures/srformer/README.md says how they were made),
the published sizes' state-dict layouts and parameter counts, the attention through
scaled_dot_product_attention against the explicit form, the caches, the option files' network sections
and the refusal of another preset's checkpoint. The registry-wide sweep (tests/test_arch_registry.py)
checks shapes, round trips, channels_last, padding and the tiling claim of every registered name.
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
from srkit.archs.igconv_arch import IGConvSR
from srkit.archs.srformer_arch import PSA, SRFormer, cached_window_mask, shifted_window_mask
from srkit.archs.weights import load_pretrained
from srkit.core.errors import CheckpointError, OptionError

FIXTURES = Path(__file__).resolve().parent / 'fixtures' / 'srformer'
PRESETS = json.loads(gzip.decompress((FIXTURES / 'official_presets.json.gz').read_bytes()))
# listing name -> (registered name, scale given to create)
REGISTERED = {**{f'SRFormer_x{s}': ('SRFormer', s) for s in (2, 3, 4)},
              **{f'SRFormer_light_x{s}': ('SRFormer_light', s) for s in (2, 3, 4)},
              'SRFormer_IGConv': ('SRFormer_IGConv', None), 'SRFormer_IGConvPlus': ('SRFormer_IGConvPlus', None)}
TINY = dict(img_size=12, embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=6, mlp_ratio=2.0)


@pytest.fixture(scope='module')
def golden() -> dict[str, Any]:
    return torch.load(FIXTURES / 'official_golden.pt', map_location='cpu', weights_only=True)


def seeded_parameters(shapes: list[tuple[str, list[int]]], seed: int) -> dict[str, torch.Tensor]:
    """The parameters the golden run used (the same draws as make_official_golden.seeded_parameters)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in shapes:
        bound = math.prod(shape[1:]) ** -0.5 if len(shape) > 1 else 0.5
        out[name] = (torch.rand(shape, generator=gen) * 2 - 1) * bound
    return out


@pytest.fixture
def shapes_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip the random initialisation, most of the time a 10M-parameter build takes: layouts and counts
    need shapes, not values."""
    for name in ('kaiming_uniform_', 'uniform_', 'normal_', 'trunc_normal_'):
        monkeypatch.setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)


def count_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def official_net(case: dict[str, Any]) -> SRFormer:
    """srkit's network for a golden case, holding the weights and buffers the authors' network ran with."""
    net = create('SRFormer', **case['args']).eval()
    assert list(net.state_dict()) == case['keys'], 'the authors\' names, in the authors\' order'
    params = seeded_parameters(case['param_shapes'], case['seed'])
    checksum = sum((p.double() * (i + 1)).sum() for i, p in enumerate(params.values()))
    assert float(checksum) == pytest.approx(case['checksum'], rel=1e-12), 'not the weights the golden run used'
    net.load_state_dict({**params, **case['buffers']}, strict=True)
    assert isinstance(net, SRFormer)
    return net


CASES = ['pixelshuffle_x2', 'pixelshuffle_x3', 'pixelshuffle_x4', 'pixelshuffledirect_x2', 'pixelshuffledirect_x3',
         'pixelshuffledirect_x4', 'nearest_conv_x4', 'denoise_x1', 'igconv', 'igconv_plus']


@pytest.mark.parametrize('name', CASES)
@torch.no_grad()
def test_computes_what_the_authors_network_computes(golden, name: str) -> None:
    """Both inputs: the img_size one (the stored attn_mask is used) and 11 x 13 (padded, masks computed)."""
    case = golden['cases'][name]
    net = official_net(case)
    for i, x in enumerate(case['inputs']):
        if 'scales' not in case:
            torch.testing.assert_close(net(x), case['outputs'][i], rtol=0, atol=1e-5)
            continue
        for scale in case['scales']:
            torch.testing.assert_close(net(x, scale), case['outputs'][scale][i], rtol=0, atol=1e-5)


@torch.no_grad()
def test_igconv_plus_training_forward_returns_image_and_skip(golden) -> None:
    case = golden['cases']['igconv_plus']
    net = official_net(case).train()  # drop_path_rate 0 and no dropout: deterministic
    out, skip = net(case['inputs'][1], 3)
    torch.testing.assert_close(out, case['train_outputs'][0], rtol=0, atol=1e-5)
    torch.testing.assert_close(skip, case['train_outputs'][1], rtol=0, atol=1e-5)
    net.return_skip = False
    assert isinstance(net(case['inputs'][1], 3), torch.Tensor)


@pytest.mark.parametrize('listing', sorted(REGISTERED))
def test_published_sizes_have_the_authors_layout(listing: str, shapes_only: None) -> None:
    """Names, shapes, order and parameter count as the authors' code builds the released configurations
    (their test option files)."""
    name, scale = REGISTERED[listing]
    expected = PRESETS[listing]
    net = create(name, scale, **arch_spec(name).example_args) if scale else create(name)
    assert [[k, list(v.shape)] for k, v in net.state_dict().items()] == expected['state']
    assert count_params(net) == expected['params']
    spec = arch_spec(name)
    assert spec.params[scale or 4] == expected['params']


def test_parameter_counts_match_the_paper(shapes_only: None) -> None:
    """SRFormer-light: 853K / 861K / 873K at x2 / x3 / x4 (paper Table 5, lightweight SR). SRFormer: 10.40M
    at x2 (the README's comparison with SwinIR, 11.75M), which is the 24 x 24-window training configuration
    of options/train/SRFormer; the released DF2K checkpoints use 22 x 22 windows (options/test, and the
    authors' issue #11), 19,008 bias-table entries fewer: 10.38M."""
    light = {s: PRESETS[f'SRFormer_light_x{s}']['params'] for s in (2, 3, 4)}
    assert {s: round(n / 1000) for s, n in light.items()} == {2: 853, 3: 861, 4: 873}
    trained = create('SRFormer', 2, **{**arch_spec('SRFormer').example_args, 'img_size': 48, 'window_size': 24})
    assert round(count_params(trained) / 1e6, 2) == 10.40
    assert PRESETS['SRFormer_x2']['params'] == count_params(trained) - 36 * 6 * (23 ** 2 - 21 ** 2)


def explicit_psa(psa: PSA, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The authors' attention written out: q * scale @ k^T + bias (+ mask per window), softmax, @ v."""
    b_, n, c = x.shape
    ph, pw = psa.permuted_window_size
    heads = psa.num_heads
    kv = psa.kv(x).reshape(b_, ph, 2, pw, 2, 2, c // 4).permute(0, 1, 3, 5, 2, 4, 6)
    k, v = kv.reshape(b_, n // 4, 2, heads, c // heads).permute(2, 0, 3, 1, 4)
    q = psa.q(x).reshape(b_, n, heads, c // heads).transpose(1, 2) * psa.scale
    index = psa.aligned_relative_position_index.view(-1)
    bias = psa.relative_position_bias_table[index].view(n, n // 4, -1).permute(2, 0, 1)
    attn = q @ k.transpose(-2, -1) + bias
    if mask is not None:
        windows = mask.shape[0]
        attn = (attn.view(-1, windows, heads, n, n // 4) + mask[None, :, None]).view(-1, heads, n, n // 4)
    return psa.proj((attn.softmax(-1) @ v).transpose(1, 2).reshape(b_, n, c))


@pytest.mark.parametrize('masked', ['none', 'shifted', 'arbitrary'])
@torch.no_grad()
def test_sdpa_attention_matches_the_explicit_form(masked: str) -> None:
    """At the classical size (180 channels, 6 heads, 22 x 22 windows), a 2 x 3 window grid, batch 2; the
    shifted mask takes the border-window path, a mask non-zero inside the fallback (everything masked)."""
    torch.manual_seed(0)
    psa = PSA(180, (22, 22), 6).eval()
    torch.nn.init.normal_(psa.relative_position_bias_table, std=1.0)
    grid = (2, 3)
    x = torch.randn(2 * 6, 22 * 22, 180)
    mask = None
    if masked == 'shifted':
        mask = shifted_window_mask(44, 66, 22, 11)
    elif masked == 'arbitrary':
        mask = torch.where(torch.rand(6, 484, 121) < 0.3, -100.0, 0.0)
    out = psa(x, mask, grid)
    assert (out - explicit_psa(psa, x, mask)).abs().max() <= 1e-5


def test_relative_bias_is_cached_until_the_table_changes() -> None:
    psa = PSA(16, (4, 4), 2)
    with torch.no_grad():
        first = psa.relative_bias()
        assert psa.relative_bias() is first
        psa.load_state_dict({**psa.state_dict(), 'relative_position_bias_table': torch.ones(9, 2)})
        assert torch.equal(psa.relative_bias(), torch.ones(2, 16, 4))
    psa.relative_bias().sum().backward()  # trained: gathered anew, so the gradient reaches the table
    assert psa.relative_position_bias_table.grad is not None


def test_window_masks_are_computed_once_per_size_and_the_stored_one_is_kept() -> None:
    net = SRFormer(**TINY, upscale=2, upsampler='pixelshuffledirect')
    block = net.layers[0].residual_group.blocks[1]
    assert block.shift_size == 3 and block.attn_mask is not None
    assert block.window_mask((12, 12), torch.device('cpu')) is block.attn_mask  # the checkpoint's buffer
    other = block.window_mask((18, 24), torch.device('cpu'))
    assert block.window_mask((18, 24), torch.device('cpu')) is other
    assert other is cached_window_mask(18, 24, 6, 3, torch.device('cpu'))
    assert net.layers[0].residual_group.blocks[0].window_mask((18, 24), torch.device('cpu')) is None


def test_training_reaches_every_parameter_and_checkpointing_changes_nothing() -> None:
    """A training step through the SDPA path (bias gathered anew, border windows masked) reaches the bias
    tables; activation checkpointing (``use_checkpoint``) gives the same gradients."""
    x = torch.rand(2, 3, 11, 13)
    grads = []
    for use_checkpoint in (False, True):
        torch.manual_seed(0)
        net = SRFormer(**TINY, upscale=2, upsampler='pixelshuffledirect', drop_path_rate=0.0,
                       use_checkpoint=use_checkpoint).train()
        net(x).mean().backward()
        missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum()]
        assert not missing
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)


def network_sections(*files: Path) -> list[tuple[str, dict[str, Any]]]:
    sections = []
    for path in files:
        section = dict(yaml.safe_load(path.read_text())['network_g'])
        sections.append((section.pop('type'), section))
    return sections


def test_the_igconv_option_files_build_as_written(shapes_only: None) -> None:
    """Every key of the IGConv repository's SRFormer network_g sections is accepted, nothing dropped."""
    folder = shared_path('seed_options', 'IGConv', 'options')
    files = sorted(folder.glob('*/SRFormer/*.yaml'))
    assert len(files) == 4
    for type_name, args in network_sections(*files):
        net = create(type_name, **args)
        assert isinstance(net, SRFormer) and net.scale_in_forward
        expected = 'SRFormer_IGConvPlus' if args['upsampler'] == 'igconv+igsample' else 'SRFormer_IGConv'
        assert count_params(net) == PRESETS[expected]['params']


def test_the_authors_option_sections_build(shapes_only: None) -> None:
    """The authors' test option files' network_g sections (classical and light), as the listing stores them."""
    for listing in ('SRFormer_x3', 'SRFormer_light_x2'):
        args = dict(PRESETS[listing]['args'])
        net = create('SRFormer', **args)
        assert count_params(net) == PRESETS[listing]['params'] and not net.scale_in_forward


@torch.no_grad()
def test_the_scale_goes_where_the_upsampler_needs_it() -> None:
    x = torch.rand(1, 3, 7, 9)
    plain = SRFormer(**TINY, upscale=3, upsampler='pixelshuffledirect').eval()
    assert plain(x).shape == plain(x, 3).shape == (1, 3, 21, 27)
    with pytest.raises(ValueError, match='x3, not x2'):
        plain(x, 2)
    ig = SRFormer(**TINY, upsampler='igconv', implicit_dim=16, latent_layers=2).eval()
    assert ig(x, 2).shape == (1, 3, 14, 18) and ig(x, 5).shape == (1, 3, 35, 45)
    with pytest.raises(ValueError, match='needs the scale'):
        ig(x)


@torch.no_grad()
def test_an_input_smaller_than_the_padding_runs() -> None:
    """A 2 x 3 input padded to the 6 x 6 window cannot be reflected (the authors' code fails): replicated."""
    net = SRFormer(**TINY, upscale=2, upsampler='pixelshuffledirect').eval()
    assert net(torch.rand(1, 3, 2, 3)).shape == (1, 3, 4, 6)


@pytest.mark.parametrize('args, message', [
    ({'window_size': 7}, 'window_size must be even'),
    ({'embed_dim': 18}, 'multiple of 4'),
    ({'num_heads': [2, 3]}, 'multiple of 4 and of every num_heads'),
    ({'depths': [2]}, 'one length'),
    ({'upscale': 5, 'upsampler': 'pixelshuffle'}, '2\\^n or 3'),
    ({'upscale': 2, 'upsampler': 'nearest+conv'}, 'must be 4'),
    ({'in_chans': 1, 'upsampler': 'igconv'}, 'outputs RGB'),
])
def test_impossible_configurations_are_option_errors(args: dict[str, Any], message: str) -> None:
    with pytest.raises(OptionError, match=message):
        create('SRFormer', **{**TINY, 'upsampler': 'pixelshuffledirect', **args})


@torch.no_grad()
def test_igconvsr_can_host_the_classical_tail() -> None:
    """The declared sub-pixel tail (conv_before_upsample, upsample, conv_last) is replaced by IGConv; the
    host's crop follows the output, so any scale comes back whole."""
    net = IGConvSR({'type': 'SRFormer', **TINY, 'upsampler': 'pixelshuffle'}, implicit_dim=16,
                   latent_layers=2).eval()
    assert net(torch.rand(1, 3, 7, 9), 3).shape == (1, 3, 21, 27)


def test_a_checkpoint_of_another_scale_is_refused_with_the_first_mismatch(tmp_path: Path) -> None:
    """Released files wrap the weights in ``params`` or ``params_ema``; both load strictly. A x2 file in a
    x4 network is refused naming the tail and both shapes."""
    x2 = create('SRFormer', 2, **TINY, upsampler='pixelshuffledirect')
    for wrapper in ('params', 'params_ema'):
        torch.save({wrapper: x2.state_dict()}, tmp_path / f'{wrapper}.pth')
        fresh = create('SRFormer', 2, **TINY, upsampler='pixelshuffledirect')
        assert load_pretrained(fresh, tmp_path / f'{wrapper}.pth', param_key=wrapper, strict=True)['missing'] == []
        for key, value in x2.state_dict().items():
            assert torch.equal(fresh.state_dict()[key], value), key
    x4 = create('SRFormer', 4, **TINY, upsampler='pixelshuffledirect')
    with pytest.raises(CheckpointError, match=r'"upsample.0.weight" has shape \(12, 16, 3, 3\) in the checkpoint '
                                              r'but \(48, 16, 3, 3\) in the network'):
        load_pretrained(x4, tmp_path / 'params.pth', strict=True)
