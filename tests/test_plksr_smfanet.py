"""PLKSR, SMFANet and their IGConv forms (PLKSRIGPlus, SMFANetIG, SMFANetIGPlus) against the authors' code:
the same initial weights from a seed, the same outputs for the same weights (tests/fixtures/plksr_smfanet,
README.md there says how it was made), the published sizes' parameter names, shapes and counts, and the
network sections of IGConv's option files.

The registry-wide sweep (tests/test_arch_registry.py) checks shapes, round trips, channels_last and tiling."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import shared_path

from srkit.archs import arch_spec, create
from srkit.archs.weights import load_pretrained
from srkit.core.errors import CheckpointError, OptionError
from srkit.models.inference import predict

FIXTURES = Path(__file__).resolve().parent / 'fixtures' / 'plksr_smfanet'
MULTI_SCALE = ('PLKSRIGPlus', 'SMFANetIG', 'SMFANetIGPlus')
# Published parameter counts, in thousands, by scale: SMFANet's paper (ECCV 2024), Table 1 (SMFANet) and
# Table 2 (SMFANet+). PLKSR's paper tabulates latency and memory, not parameters: its counts are checked
# against the authors' code only (sizes.json).
PAPER_THOUSANDS = {'SMFANet': {2: 186, 3: 191, 4: 197}, 'SMFANet_plus': {2: 480, 3: 487, 4: 496}}
# What each IGConv option file's network has: the authors' classes built with that section (sizes.json).
OPTION_PARAMS = {'PLKSRIGPlus': 8280259, 'SMFANetIG': 960483, 'SMFANetIGPlus': 1249507}


@pytest.fixture(scope='module')
def golden() -> dict[str, Any]:
    return torch.load(FIXTURES / 'official_golden.pt', map_location='cpu', weights_only=True)


@pytest.fixture(scope='module')
def sizes() -> dict[str, Any]:
    return json.loads((FIXTURES / 'sizes.json').read_text(encoding='utf-8'))


def count_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def assert_near(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """Within 1e-5 of the official output (a plain check: torch.testing.assert_close imports
    torch.distributed on its first call, seconds of this file's budget)."""
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max() <= 1e-5


def _run(net: torch.nn.Module, type_name: str, x: torch.Tensor, scale: int) -> Any:
    return net(x, scale) if type_name in MULTI_SCALE else net(x)


@pytest.mark.parametrize('type_name', ['PLKSR', 'PLKSRIGPlus', 'SMFANet', 'SMFANetIG', 'SMFANetIGPlus'])
def test_a_seed_gives_the_official_initial_weights(golden, type_name: str) -> None:
    """Same names, order, shapes and values: a run from scratch starts where the official one does."""
    args, expected = golden['init'][type_name]
    torch.manual_seed(0)
    state = create(type_name, **args).state_dict()
    assert list(state) == list(expected)
    for key, value in expected.items():
        assert torch.equal(state[key], value), key


@pytest.mark.parametrize('case', range(10))
@torch.no_grad()
def test_computes_what_the_official_network_computes(golden, case: int) -> None:
    """Each scale in eval mode (srkit writes into its own intermediates there, as the releases do) and the
    training-mode forward (concatenations; ``(image, skip)`` for SMFANetIGPlus with return_skip)."""
    entry = golden['cases'][case]
    x = golden['input']
    net = create(entry['type'], **entry['args'])
    net.load_state_dict(entry['state'], strict=True)
    net.eval()
    for scale, expected in entry['eval'].items():
        assert_near(_run(net, entry['type'], x, scale), expected)
    net.train()
    out = _run(net, entry['type'], x, entry['train_scale'])
    expected = entry['train']
    if isinstance(expected, (tuple, list)):
        assert isinstance(out, tuple) and len(out) == len(expected)
        for ours, theirs in zip(out, expected):
            assert_near(ours, theirs)
    else:
        assert_near(out, expected)
    assert torch.equal(x, golden['input']), 'the input was written into'


def _published(name: str, scale: str, meta: dict[str, Any]) -> torch.nn.Module:
    """srkit's preset ``name`` (or, for the IGConv forms, the class with the option file's section)."""
    return create(meta['type'], **meta['args']) if scale == 'any' else create(name, int(scale))


@pytest.mark.parametrize('name', ['PLKSR', 'PLKSR_tiny', 'SMFANet', 'SMFANet_plus', *MULTI_SCALE])
def test_published_sizes_have_the_official_names_shapes_and_counts(sizes, name: str) -> None:
    meta = sizes[name]
    for scale, listing in meta['scales'].items():
        net = _published(name, scale, meta)
        assert [[k, list(v.shape)] for k, v in net.state_dict().items()] == listing['shapes'], (name, scale)
        assert count_params(net) == listing['params']
        if scale != 'any':
            assert arch_spec(name).params[int(scale)] == listing['params']
        if name in PAPER_THOUSANDS:
            assert round(listing['params'] / 1000) == PAPER_THOUSANDS[name][int(scale)]


def _option_sections() -> list[tuple[str, dict[str, Any]]]:
    root = shared_path('seed_options', 'IGConv', 'options')
    found = []
    for path in sorted([*root.glob('*/PLKSR/*.yaml'), *root.glob('*/SMFANet/*.yaml')]):
        found.append((str(path.relative_to(root)), yaml.safe_load(path.read_text(encoding='utf-8'))['network_g']))
    return found


def test_igconv_option_files_build_the_released_networks() -> None:
    """Every key of each network_g section is taken as it is, and the network has the authors' size."""
    found = _option_sections()
    assert len(found) == 6  # PLKSR: one training and one test file; SMFANet: two of each
    for path, section in found:
        args = {k: v for k, v in section.items() if k != 'type'}
        net = create(section['type'], **args)
        assert count_params(net) == OPTION_PARAMS[section['type']], path
        assert net.scale_in_forward


def test_return_skip_and_the_scale() -> None:
    net = create('SMFANetIGPlus', dim=8, n_blocks=1, implicit_dim=16, latent_layers=2, return_skip=False).train()
    x = torch.rand(1, 3, 8, 8)
    assert isinstance(net(x, 2), torch.Tensor)  # the option files' return_skip: false
    with pytest.raises(ValueError, match='scale'):
        create('SMFANetIG', dim=8, n_blocks=1, implicit_dim=16, latent_layers=2)(x)


@torch.no_grad()
def test_smfanet_pads_inputs_smaller_than_its_pooling() -> None:
    """SMFA pools to 1/8 of the size, so srkit's predict pads a smaller input to 8 and crops back."""
    net = create('SMFANet', 2, dim=8, n_blocks=1).eval()
    spec = arch_spec('SMFANet')
    out = predict(net, torch.rand(1, 3, 5, 11), 2, multiple=spec.pad_multiple, min_size=spec.min_size)
    assert out.shape == (1, 3, 10, 22)


def test_a_checkpoint_of_another_scale_or_preset_is_refused(tmp_path: Path) -> None:
    path = tmp_path / 'smfanet_x2.pth'
    torch.save({'params': create('SMFANet', 2).state_dict()}, path)
    with pytest.raises(CheckpointError, match=r'"to_img.0.weight" has shape \(12, 36, 3, 3\) in the checkpoint '
                                              r'but \(48, 36, 3, 3\)'):
        load_pretrained(create('SMFANet', 4), path)
    with pytest.raises(CheckpointError, match=r'"to_feat.weight" has shape \(36, 3, 3, 3\) in the checkpoint '
                                              r'but \(48, 3, 3, 3\)'):
        load_pretrained(create('SMFANet_plus', 2), path)


@pytest.mark.parametrize('args, message', [
    ({'ccm_type': 'XCCM'}, 'ccm_type'), ({'lk_type': 'Big'}, 'lk_type'), ({'kernel_size': 8}, 'kernel_size'),
    ({'lk_type': 'RectSparsePLK', 'kernel_size': 7}, 'kernel_size'), ({'split_ratio': 0.01}, 'split_ratio')])
def test_impossible_plksr_options_are_the_users_mistake(args: dict[str, Any], message: str) -> None:
    with pytest.raises(OptionError, match=message):
        create('PLKSR', 2, **{'dim': 8, 'n_blocks': 1, **args})
