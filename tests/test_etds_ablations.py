"""ETDS's ablation networks: the official code's initial weights and outputs (a golden fixture), how they
start, which parameters ETDSModel freezes, and the widths they refuse."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.nn import functional as F

from srkit.archs import create
from srkit.core.errors import OptionError

ABLATIONS = ('ETDSOnlyET', 'ETDSAblationResidual', 'ETDSAblationAdvancedResidual')
TWO_STREAMS = ABLATIONS[1:]
# Small networks from the authors' own code (tests/fixtures/etds_ecbsr/README.md says how they were made).
GOLDEN = Path(__file__).resolve().parent / 'fixtures' / 'etds_ecbsr' / 'official_golden.pt'


@pytest.fixture(scope='module')
def golden() -> dict[str, Any]:
    return torch.load(GOLDEN, map_location='cpu', weights_only=True)


@pytest.mark.parametrize('name', ABLATIONS)
def test_a_seed_gives_the_official_initial_weights(golden, name: str) -> None:
    torch.manual_seed(0)
    ours = create(name, **golden['ablation_args']).state_dict()
    theirs = golden[f'{name}_init']
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        assert ours[key].shape == value.shape and torch.equal(ours[key], value), key


@pytest.mark.parametrize('name', ABLATIONS)
@torch.no_grad()
def test_computes_what_the_official_network_computes(golden, name: str) -> None:
    net = create(name, **golden['ablation_args']).eval()
    net.load_state_dict(golden[f'{name}_state'], strict=True)
    out = net(golden['input'])
    if name in TWO_STREAMS:
        out, low = out
        torch.testing.assert_close(low, golden[f'{name}_low'], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out, golden[f'{name}_output'], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', TWO_STREAMS)
@pytest.mark.parametrize('scale', [2, 3])
@torch.no_grad()
def test_the_residual_stream_starts_as_nearest_upsampling(name: str, scale: int) -> None:
    x = torch.rand(1, 3, 7, 6, generator=torch.Generator().manual_seed(0))
    _, low = create(name, scale, num_block=2, num_feat=12)(x)
    assert torch.equal(low, F.interpolate(x, scale_factor=scale, mode='nearest'))


@torch.no_grad()
def test_only_et_adds_the_upsampled_input() -> None:
    net = create('ETDSOnlyET', 3, num_block=1, num_feat=8)
    net.conv_last.weight.zero_()
    net.conv_last.bias.zero_()
    x = torch.rand(1, 3, 5, 4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(net(x), F.interpolate(x, scale_factor=3, mode='nearest'))


def test_etds_model_freezes_the_residual_stream_and_every_cross_stream_conv() -> None:
    """ETDSModel (like the official model) freezes every parameter with ``residual`` in its name."""
    expected = {'ETDSAblationResidual': ('conv_residual_first', 'residual_convs', 'conv_residual_last'),
                'ETDSAblationAdvancedResidual': ('conv_residual_first', 'residual_convs', 'add_residual_convs',
                                                 'advanced_residual_convs', 'conv_residual_last')}
    for name, modules in expected.items():
        names = [n for n, _ in create(name, 2).named_parameters()]
        assert {n for n in names if 'residual' in n} == {n for n in names if n.split('.')[0] in modules}


@pytest.mark.parametrize('name', ABLATIONS)
def test_widths_that_cannot_work_are_option_errors(name: str) -> None:
    with pytest.raises(OptionError, match='must exceed num_residual_feat'):
        create(name, 2, num_feat=3)
    with pytest.raises(OptionError, match='at least num_in_ch'):
        create(name, 2, num_residual_feat=2)
    with pytest.raises(OptionError, match='must equal num_in_ch'):
        create(name, 2, num_out_ch=1)
