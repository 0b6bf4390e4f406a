"""The ETDS paper's baselines (ESPCN, FSRCNN, ABPN, ABPN_ET): the official code's initial weights and outputs
(a golden fixture), the official option files' network sections, the ABPN equivalent transformation, and the
released checkpoints through the official test files (where ../shared holds them).

The registry-wide sweep (tests/test_arch_registry.py) checks shapes, round trips, channels_last and tiling."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import shared_path

from srkit.archs import create
from srkit.archs.abpn_arch import ABPN, ABPN_ET
from srkit.archs.abpn_convert import abpn_hyperparams, convert_abpn, verify_abpn_conversion
from srkit.config.options import load_options
from srkit.core.errors import CheckpointError, OptionError
from srkit.engine.tester import run_test

NAMES = ['ESPCN', 'FSRCNN', 'ABPN', 'ABPN_ET']
# Small networks from the authors' own code (tests/fixtures/etds_baselines/README.md says how they were made).
GOLDEN = Path(__file__).resolve().parent / 'fixtures' / 'etds_baselines' / 'official_golden.pt'
# Parameter counts of the released checkpoints (ECNUSR/ETDS experiments/pretrained_models, commit 64ad1b8),
# by the checkpoint's stem: what each official option file's network must have to load its checkpoint.
RELEASED_PARAMS = {
    'ESPCN_x2': 26796, 'ESPCN_x3': 31131, 'ESPCN_x4': 37200,
    'FSRCNN_x2': 24683, 'FSRCNN_x3': 24683, 'FSRCNN_x4': 24683,
    'ABPN_M4C28_x2': 33464, 'ABPN_M4C28_x3': 42539, 'ABPN_M4C28_x4': 62048,
    'ABPN_M6C40_x2': 93400, 'ABPN_M6C40_x3': 104095, 'ABPN_M6C40_x4': 125872,
    'ABPN_ET_M4C28_x2': 44408, 'ABPN_ET_M4C28_x3': 54958, 'ABPN_ET_M4C28_x4': 77780,
    'ABPN_ET_M6C40_x2': 114288, 'ABPN_ET_M6C40_x3': 126350, 'ABPN_ET_M6C40_x4': 151548,
}
# Set5 PSNR (Y, crop = scale) at the end of each official training log (ECNUSR/ETDS experiments/<name>/*.log).
# The ABPN_ET checkpoints are the ABPN ones converted (the same files srkit's converter writes): same numbers.
LOG_SET5_PSNR = {
    'ESPCN_x2': 36.8565, 'ESPCN_x3': 32.8479, 'ESPCN_x4': 30.6581,
    'FSRCNN_x2': 36.9971, 'FSRCNN_x3': 33.0111, 'FSRCNN_x4': 30.7606,
    'ABPN_M4C28_x2': 37.3635, 'ABPN_M4C28_x3': 33.5293, 'ABPN_M4C28_x4': 31.3223,
    'ABPN_M6C40_x2': 37.5791, 'ABPN_M6C40_x3': 33.7054, 'ABPN_M6C40_x4': 31.6197,
}


@pytest.fixture(scope='module')
def golden() -> dict[str, Any]:
    return torch.load(GOLDEN, map_location='cpu', weights_only=True)


def count_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize('name', NAMES)
def test_a_seed_gives_the_official_initial_weights(golden, name: str) -> None:
    """Same parameter names, shapes and values: a run from scratch starts where the official one does."""
    torch.manual_seed(0)
    state = create(name, **golden['args'][name]).state_dict()
    expected = golden['init'][name]
    assert list(state) == list(expected)
    for key, value in expected.items():
        assert torch.equal(state[key], value), key


@pytest.mark.parametrize('name', NAMES)
@torch.no_grad()
def test_computes_what_the_official_network_computes(golden, name: str) -> None:
    net = create(name, **golden['args'][name]).eval()
    net.load_state_dict(golden['state'][name], strict=True)
    torch.testing.assert_close(net(golden['input']), golden['output'][name], rtol=1e-5, atol=1e-5)


def test_the_converter_writes_what_the_official_converter_writes(golden) -> None:
    plain = convert_abpn(golden['state']['ABPN'])
    expected = golden['state']['ABPN_ET']
    state = plain.state_dict()
    assert list(state) == list(expected)
    for key, value in expected.items():
        assert torch.equal(state[key], value), key


def _random_abpn(scale: int, num_feat: int, num_block: int, seed: int) -> ABPN:
    """Every weight and bias random and a tail bias of 0.3, so that outputs cross both ends of [0, 1]."""
    torch.manual_seed(seed)
    net = ABPN(num_feat=num_feat, num_block=num_block, scale=scale)
    with torch.no_grad():
        for conv in net.modules():
            if isinstance(conv, torch.nn.Conv2d):
                conv.weight.copy_(torch.randn_like(conv.weight) * (2 / conv.weight[0].numel()) ** 0.5)
                conv.bias.copy_(torch.randn_like(conv.bias) * 0.1)
    return net.eval()


@pytest.mark.parametrize('scale', [2, 3, 4])
@torch.no_grad()
def test_random_abpns_convert_to_clamped_equals(scale: int) -> None:
    abpn = _random_abpn(scale, num_feat=12, num_block=3, seed=scale)
    plain = convert_abpn(abpn)
    assert isinstance(plain, ABPN_ET)
    x = torch.rand(1, 3, 20, 16, generator=torch.Generator().manual_seed(scale))
    y = abpn(x)
    assert y.min() < 0 and y.max() > 1, 'the clamp must be exercised at both ends'
    assert (plain(x) - y.clamp(0, 1)).abs().max() <= 1e-5


def test_hyperparameters_are_read_from_the_shapes() -> None:
    state = ABPN(num_feat=40, num_block=6, scale=3).state_dict()
    assert abpn_hyperparams(state) == {'num_feat': 40, 'num_block': 6, 'scale': 3}


def test_an_abpn_et_state_dict_is_refused_with_the_reason() -> None:
    with pytest.raises(CheckpointError, match='ABPN_ET'):
        convert_abpn(ABPN_ET(num_feat=8, num_block=2, scale=2).state_dict())
    with pytest.raises(CheckpointError, match='backbone.0.weight'):
        convert_abpn({'conv_first.weight': torch.zeros(8, 3, 3, 3)})


def test_a_conversion_that_is_not_equivalent_is_refused() -> None:
    abpn = _random_abpn(2, num_feat=8, num_block=2, seed=0)
    plain = convert_abpn(abpn)
    with torch.no_grad():
        plain.backbone[0].bias[0] += 0.1
    with pytest.raises(CheckpointError, match='not equivalent'):
        verify_abpn_conversion(abpn, plain, [torch.rand(1, 3, 16, 16)])


def test_the_scale_argument_must_agree_with_the_scale() -> None:
    with pytest.raises(OptionError, match='network_g.scale'):
        create('ABPN', 2, num_feat=28, num_block=4, scale=3)


def _official_networks() -> list[tuple[str, dict[str, Any], int]]:
    """(checkpoint stem, network_g, scale) of every official option file of the four baselines."""
    root = shared_path('seed_options', 'ETDS', 'configs')
    found = []
    for path in sorted(root.rglob('*.yml')):
        opt = yaml.safe_load(path.read_text(encoding='utf-8'))
        if opt['network_g']['type'] in NAMES:
            found.append((path.stem.split('_', 1)[1], opt['network_g'], opt['scale']))
    return found


def test_official_option_files_build_networks_their_checkpoints_fit() -> None:
    """Each official file's network has the parameter count of the checkpoint of its name."""
    found = _official_networks()
    assert len(found) == 30  # 18 test files (one per released checkpoint) and 12 training files
    assert {stem for stem, _, _ in found} == set(RELEASED_PARAMS)
    for stem, network_g, scale in found:
        args = {k: v for k, v in network_g.items() if k != 'type'}
        assert count_params(create(network_g['type'], scale, **args)) == RELEASED_PARAMS[stem], stem


@pytest.mark.parametrize('stem', sorted(RELEASED_PARAMS))
def test_released_checkpoint_scores_what_its_training_log_says(stem: str, tmp_path: Path) -> None:
    """The official test file, as a user runs it (only paths changed), on Set5 with the released weights.

    srkit gives ESPCN_x3 32.8478 against the log's 32.8479 (rounding), every other one equal to 4 decimals.
    """
    family, scale = stem.split('_')[0], int(stem[-1])
    weights = shared_path('weights', 'ETDS', f'{stem}.pth')
    option_file = shared_path('seed_options', 'ETDS', 'configs', 'test', family, f'test_{stem}.yml')
    data = shared_path('data', 'Set5')
    overrides = [f'resume.network_g_path={weights}', f'path.results_root={tmp_path}', 'val.save_img=false',
                 'val.pbar=false', f'datasets={{test_1: {{name: Set5, type: PairedImageDataset, '
                 f'dataroot_gt: {data}/GTmod12, dataroot_lq: {data}/LRbicx{scale}}}}}']
    psnr = run_test(load_options(option_file, is_train=False, overrides=overrides))[0].mean['psnr']
    assert abs(psnr - LOG_SET5_PSNR[stem.replace('_ET', '')]) <= 2e-4


@pytest.mark.parametrize('stem', [s for s in sorted(RELEASED_PARAMS) if s.startswith('ABPN_M')])
def test_converting_a_released_abpn_gives_the_released_abpn_et(stem: str) -> None:
    """Bit for bit: the authors' ABPN_ET files are their ABPN files after this transformation."""
    def load(name: str) -> dict[str, torch.Tensor]:
        return torch.load(shared_path('weights', 'ETDS', f'{name}.pth'), map_location='cpu', weights_only=True)

    expected = load(stem.replace('ABPN_', 'ABPN_ET_'))
    state = convert_abpn(load(stem)).state_dict()
    assert list(state) == list(expected)
    for key, value in expected.items():
        assert torch.equal(state[key], value), key
