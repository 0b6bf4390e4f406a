"""RCAN, RDN and their IGConv forms (RCANIGPlus, RDNIG, RDNIGPlus) against the authors' own code.

The golden fixture (tests/fixtures/rcan_rdn/, README.md there says how it was made) holds the official
networks' outputs: srkit's classes load the same weights strictly and must give the same outputs; the
published sizes must have the official key names, shapes and parameter counts. The registry-wide sweep
(tests/test_arch_registry.py) checks shapes, round trips, channels_last and the tiling claims.
"""
from __future__ import annotations

import functools
import gzip
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import shared_path

from srkit.archs import create
from srkit.archs.weights import load_pretrained
from srkit.core.errors import CheckpointError

FIXTURE = Path(__file__).resolve().parent / 'fixtures' / 'rcan_rdn'


def _make_official_golden() -> Any:
    """The fixture's generator script as a module (its ``seeded_state`` and ``SEEDED`` table; importing it
    runs none of the official code)."""
    spec = importlib.util.spec_from_file_location('rcan_rdn_make_official_golden', FIXTURE / 'make_official_golden.py')
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _make_official_golden()
# Published sizes: official listing name -> (srkit type, arguments). Parameter counts from the papers:
# RCAN x4 15.59 M (Zhang et al., ECCV 2018), RDN x4 22.27 M (config B: D=16, C=8, G=64).
PUBLISHED = {
    **{f'RCAN_x{s}': ('RCAN', {'scale': s}) for s in (2, 3, 4, 8)},
    **{f'RDN_x{s}': ('RDN', {'scale': s}) for s in (2, 3, 4)},
    'RCANIGPlus': ('RCANIGPlus', {}), 'RDNIG': ('RDNIG', {}), 'RDNIGPlus': ('RDNIGPlus', {}),
}
PAPER_MILLIONS = {'RCAN_x4': 15.59, 'RDN_x4': 22.27}


@pytest.fixture(scope='module')
def golden() -> dict[str, Any]:
    return torch.load(FIXTURE / 'official_golden.pt', map_location='cpu', weights_only=True)


@pytest.fixture(scope='module')
def listings() -> dict[str, list[list[Any]]]:
    return json.loads(gzip.decompress((FIXTURE / 'official_keys.json.gz').read_bytes()))


def _listing(net: torch.nn.Module) -> list[list[Any]]:
    return [[key, list(value.shape)] for key, value in net.state_dict().items()]


@functools.cache
def _summary(name: str, args: tuple[tuple[str, Any], ...] = ()) -> tuple[list[list[Any]], int, bool]:
    """(keys and shapes, parameter count, scale_in_forward) of a full-size network, built once per test run
    (a build takes ~0.3 s; the network itself is not kept: 15-23 M parameters each)."""
    net = create(name, **dict(args))
    return _listing(net), sum(p.numel() for p in net.parameters()), bool(net.scale_in_forward)


def _args(args: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(args.items()))


@pytest.mark.parametrize('scale', [2, 3, 4, 8])
def test_rcan_a_seed_gives_the_authors_initial_weights(golden, scale: int) -> None:
    torch.manual_seed(0)
    state = create('RCAN', scale, **golden['rcan_args']).state_dict()
    expected = golden['rcan'][scale]['init']
    assert list(state) == list(expected)
    for key, value in expected.items():
        assert torch.equal(state[key], value), key


@pytest.mark.parametrize('scale', [2, 3, 4, 8])
@torch.no_grad()
def test_rcan_computes_what_the_authors_rcan_computes(golden, scale: int) -> None:
    """The authors' RCAN (rgb_range 255) ran on input * 255; srkit's takes [0, 1] and gives its output / 255."""
    net = create('RCAN', scale, **golden['rcan_args']).eval()
    net.load_state_dict(golden['rcan'][scale]['init'], strict=True)
    torch.testing.assert_close(net(golden['input']), golden['rcan'][scale]['output'], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', list(GEN.SEEDED))
@torch.no_grad()
def test_computes_what_the_official_network_computes(golden, name: str) -> None:
    """RDN (EDSR-PyTorch) and the IGConv repository's RDNIG, RDNIGPlus and RCANIGPlus, with the seed-derived
    weights the official run used (the same generator, checked by each tensor's sum), loaded strictly."""
    _, type_name, args, scales, seed = GEN.SEEDED[name]
    expected = golden['seeded'][name]
    net = create(type_name, **args)
    state = GEN.seeded_state([(k, tuple(v.shape)) for k, v in net.state_dict().items()], seed)
    assert list(state) == list(expected['sums'])
    for key, value in state.items():
        assert float(value.double().sum()) == pytest.approx(expected['sums'][key], rel=1e-9, abs=1e-9), key
    net.load_state_dict(state, strict=True)
    net.eval()
    x = golden['input']
    for scale in scales:
        out = net(x) if type_name == 'RDN' else net(x, scale)
        torch.testing.assert_close(out, expected['outputs'][scale], rtol=1e-5, atol=1e-5)
    if 'train_outputs' in expected:  # RDNIGPlus with return_skip: (output, skip) in training mode
        net.train()
        for scale in scales:
            out, skip = net(x, scale)
            torch.testing.assert_close(out, expected['train_outputs'][scale][0], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(skip, expected['train_outputs'][scale][1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('listing_name', list(PUBLISHED))
def test_published_sizes_have_the_official_keys_and_shapes(listings, listing_name: str) -> None:
    """Key names, order and shapes as the official constructors build them: released checkpoints load strictly."""
    type_name, args = PUBLISHED[listing_name]
    listing, count, scale_in_forward = _summary(type_name, _args(args))
    assert listing == listings[listing_name]
    assert count == sum(torch.Size(shape).numel() for _, shape in listing)
    assert scale_in_forward == (type_name != 'RCAN' and type_name != 'RDN')  # what the lead's model code reads


@pytest.mark.parametrize('listing_name', list(PAPER_MILLIONS))
def test_parameter_counts_match_the_papers(listing_name: str) -> None:
    type_name, args = PUBLISHED[listing_name]
    assert round(_summary(type_name, _args(args))[1] / 1e6, 2) == PAPER_MILLIONS[listing_name]


def test_rcanigplus_ignores_return_skip_as_the_official_class_does() -> None:
    net = create('RCANIGPlus', return_skip=True).train()
    with torch.no_grad():
        assert isinstance(net(torch.rand(1, 3, 3, 2), 2), torch.Tensor)


def test_a_checkpoint_of_another_scale_is_refused_naming_the_tail(tmp_path: Path) -> None:
    small: dict[str, Any] = {'n_resgroups': 1, 'n_resblocks': 1, 'n_feats': 8, 'reduction': 2}
    path = tmp_path / 'rcan_x2.pt'
    torch.save(create('RCAN', 2, **small).state_dict(), path)
    with pytest.raises(CheckpointError, match=r'"tail\.0\.0\.weight" has shape \(32, 8, 3, 3\) in the checkpoint '
                                              r'but \(72, 8, 3, 3\) in the network'):
        load_pretrained(create('RCAN', 3, **small), path)


def _official_network_g() -> list[tuple[str, dict[str, Any]]]:
    root = shared_path('seed_options', 'IGConv', 'options')
    found = []
    for path in sorted([*root.rglob('RCAN/*.y*ml'), *root.rglob('RDN/*.y*ml')]):
        found.append((path.name, yaml.safe_load(path.read_text(encoding='utf-8'))['network_g']))
    return found


def test_the_igconv_option_files_build_the_official_networks(listings) -> None:
    """Every key of each official network_g, kept: the network has the official keys and shapes."""
    found = _official_network_g()
    assert len(found) == 4
    for file_name, network_g in found:
        args = dict(network_g)
        type_name = args.pop('type')
        assert _summary(type_name, _args(args))[0] == listings[type_name], file_name
