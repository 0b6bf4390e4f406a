"""LPIPS and DISTS: the authors' scores reproduced (tests/fixtures/lpips_dists/README.md says how they were made),
weight files that are missing or wrong refused with what to get, at start-up through check_metrics."""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest
import torch

from srkit.config.options import _check_metric
from srkit.config.typed_options import Component
from srkit.core.errors import CheckpointError, OptionError
from srkit.metrics._backbones import TORCHVISION_FILES
from srkit.metrics.dists import calculate_dists
from srkit.metrics.lpips import calculate_lpips
from srkit.models.evaluator import check_metrics

FIXTURES = Path(__file__).resolve().parent / 'fixtures' / 'lpips_dists'
LIN = {'alex': str(FIXTURES / 'lpips_alex_lin.pth'), 'vgg': str(FIXTURES / 'lpips_vgg_lin.pth')}
ALPHA_BETA = str(FIXTURES / 'dists_alpha_beta.pt')
ARCH = {'alex': 'alexnet', 'vgg': 'vgg16'}


def _seeded_backbones() -> ModuleType:
    spec = importlib.util.spec_from_file_location('lpips_dists_seeded_backbones', FIXTURES / 'seeded_backbones.py')
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def golden() -> dict:
    return torch.load(FIXTURES / 'official_golden.pt', weights_only=True)


@pytest.fixture(scope='module')
def backbones(tmp_path_factory, golden) -> dict[str, str]:
    """The seeded torchvision files the fixture was made with (regenerated: checksums as stored), named as
    torchvision names them and, like them, carrying a classifier that the metrics do not use."""
    recipe = _seeded_backbones()
    folder = tmp_path_factory.mktemp('torchvision')
    paths = {}
    for arch in ('alexnet', 'vgg16'):
        state = recipe.seeded_state_dict(arch)
        assert recipe.checksum(state) == pytest.approx(golden['backbone_checksum'][arch], rel=1e-12)
        state['classifier.6.bias'] = torch.zeros(1000)
        paths[arch] = str(folder / TORCHVISION_FILES[arch])
        torch.save(state, paths[arch])
    return paths


@pytest.fixture
def empty_hub(tmp_path, monkeypatch) -> Path:
    """torch's hub cache, where the metrics look for torchvision's file when none is given: empty here."""
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    return tmp_path / 'hub' / 'checkpoints'


def _pair(golden: dict) -> tuple[torch.Tensor, torch.Tensor]:
    return golden['sr'].double(), golden['gt'].double()


@pytest.mark.parametrize('net', ['alex', 'vgg'])
def test_lpips_matches_the_authors(net, golden, backbones):
    """Measured: within 1.5e-8 of lpips.LPIPS(net, version 0.1) for both images of the batch."""
    scores = calculate_lpips(*_pair(golden), net=net, weights=LIN[net], backbone_weights=backbones[ARCH[net]])
    assert scores.dtype == torch.float64 and scores.shape == (2,)
    torch.testing.assert_close(scores, golden[f'lpips_{net}'].double(), atol=1e-5, rtol=0)


def test_dists_matches_the_authors(golden, backbones):
    """Measured: within 1.2e-7 (float32 resolution of 1 - similarity) of DISTS_pt.DISTS."""
    scores = calculate_dists(*_pair(golden), weights=ALPHA_BETA, backbone_weights=backbones['vgg16'])
    assert scores.shape == (2,)
    torch.testing.assert_close(scores, golden['dists'].double(), atol=1e-5, rtol=0)


def test_identical_images_score_zero(golden, backbones):
    gt = golden['gt'].double()
    for net in ('alex', 'vgg'):
        assert calculate_lpips(gt, gt, net=net, weights=LIN[net], backbone_weights=backbones[ARCH[net]]).eq(0).all()
    dists = calculate_dists(gt, gt, weights=ALPHA_BETA, backbone_weights=backbones['vgg16'])
    assert dists.abs().max() < 1e-6


def test_crop_border_and_gray_images(golden, backbones):
    """crop_border scores the inner image; a gray image is scored as gray RGB (what a saved gray PNG shows)."""
    sr, gt = _pair(golden)
    files = {'weights': LIN['alex'], 'backbone_weights': backbones['alexnet']}
    cropped = calculate_lpips(sr, gt, crop_border=4, **files)
    assert torch.equal(cropped, calculate_lpips(sr[..., 4:-4, 4:-4], gt[..., 4:-4, 4:-4], **files))
    assert not torch.equal(cropped, calculate_lpips(sr, gt, **files))
    gray = calculate_lpips(sr[:, :1], gt[:, :1], **files)
    torch.testing.assert_close(gray, calculate_lpips(sr[:, :1].repeat(1, 3, 1, 1), gt[:, :1].repeat(1, 3, 1, 1),
                                                     **files))


@pytest.mark.parametrize('net', ['alex', 'vgg'])
def test_too_small_images_are_refused(net, backbones):
    """The fifth layer needs 31 pixels (AlexNet) / 16 (VGG16); one fewer fails with a ValueError, not in torch."""
    side = {'alex': 31, 'vgg': 16}[net]
    files = {'net': net, 'weights': LIN[net], 'backbone_weights': backbones[ARCH[net]]}
    assert calculate_lpips(torch.zeros(1, 3, side, side + 5), torch.zeros(1, 3, side, side + 5), **files).shape == (1,)
    small = torch.zeros(1, 3, side + 5, side - 1)
    with pytest.raises(ValueError, match=f'at least {side}x{side} pixels'):
        calculate_lpips(small, small, **files)


@pytest.mark.parametrize('metric, arguments, torchvision_file', [
    (calculate_lpips, {'net': 'alex'}, 'alexnet-owt-7be5be79.pth'),
    (calculate_lpips, {'net': 'vgg'}, 'vgg16-397923af.pth'),
    (calculate_dists, {}, 'vgg16-397923af.pth'),
])
def test_missing_files_are_named(metric, arguments, torchvision_file, empty_hub):
    blank = torch.zeros(1, 3, 32, 32)
    with pytest.raises(ValueError) as raised:
        metric(blank, blank, **arguments)
    message = str(raised.value)
    assert 'option weights is not set' in message
    assert "option backbone_weights is not set: it must be torchvision's" in message
    assert torchvision_file in message and str(empty_hub) in message
    with pytest.raises(ValueError) as raised:
        metric(blank, blank, **arguments, weights='nowhere.pth', backbone_weights='nowhere_either.pth')
    assert '"nowhere.pth" is not a file' in str(raised.value)
    assert 'nowhere_either.pth" is not a file' in str(raised.value) and torchvision_file in str(raised.value)


def test_torchvision_file_in_the_hub_cache_is_used(golden, backbones, empty_hub):
    empty_hub.mkdir(parents=True)
    shutil.copy(backbones['vgg16'], empty_hub / 'vgg16-397923af.pth')
    scores = calculate_dists(*_pair(golden), weights=ALPHA_BETA)
    torch.testing.assert_close(scores, golden['dists'].double(), atol=1e-5, rtol=0)


def test_wrong_weight_files_are_refused(backbones):
    blank = torch.zeros(1, 3, 32, 32)
    with pytest.raises(CheckpointError, match='lin-layer file for net vgg.*check net'):
        calculate_lpips(blank, blank, net='vgg', weights=LIN['alex'], backbone_weights=backbones['vgg16'])
    with pytest.raises(CheckpointError, match="must be torchvision's alexnet file"):
        calculate_lpips(blank, blank, net='alex', weights=LIN['alex'], backbone_weights=backbones['vgg16'])
    with pytest.raises(CheckpointError, match="must be torchvision's vgg16 file"):
        calculate_dists(blank, blank, weights=ALPHA_BETA, backbone_weights=backbones['alexnet'])
    with pytest.raises(CheckpointError, match='"alpha" is missing'):
        calculate_dists(blank, blank, weights=LIN['vgg'], backbone_weights=backbones['vgg16'])
    with pytest.raises(ValueError, match='unknown net "vgg16"'):
        calculate_lpips(blank, blank, net='vgg16', weights=LIN['vgg'], backbone_weights=backbones['vgg16'])


def test_networks_are_built_once_per_files(tmp_path, backbones, monkeypatch):
    weights = shutil.copy(LIN['alex'], tmp_path / 'alex.pth')  # new files: nothing cached for them yet
    backbone = shutil.copy(backbones['alexnet'], tmp_path / 'alexnet.pth')
    loaded = []
    load = torch.load

    def counted_load(path, *args, **kwargs):
        loaded.append(str(path))
        return load(path, *args, **kwargs)

    monkeypatch.setattr(torch, 'load', counted_load)
    blank = torch.zeros(1, 3, 32, 32)
    for _ in range(2):
        calculate_lpips(blank, blank, weights=str(weights), backbone_weights=str(backbone))
    assert sorted(loaded) == sorted([str(weights), str(backbone)])


@pytest.mark.parametrize('metric_type, torchvision_file', [('lpips', 'alexnet-owt-7be5be79.pth'),
                                                          ('dists', 'vgg16-397923af.pth')])
def test_start_up_refuses_a_metric_without_weights(metric_type, torchvision_file, empty_hub):
    dataset = [{'gt': torch.zeros(3, 32, 32), 'gt_path': 'hr/0001.png'}]
    metrics = {'perceptual': _check_metric('perceptual', Component(metric_type, {'better': 'lower'}))}
    with pytest.raises(OptionError) as raised:
        check_metrics(metrics, dataset, 'Set5')
    assert raised.value.key == 'val.metrics.perceptual'
    assert 'option weights is not set' in str(raised.value) and torchvision_file in str(raised.value)


def test_start_up_accepts_the_option_files(backbones):
    """The option keys as a user writes them (strings), through the option check and check_metrics."""
    dataset = [{'gt': torch.zeros(3, 40, 36), 'gt_path': 'hr/0001.png'}]
    metrics = {key: _check_metric(key, Component(key, {**files, 'better': 'lower'})) for key, files in (
        ('lpips', {'net': 'vgg', 'weights': LIN['vgg'], 'backbone_weights': backbones['vgg16']}),
        ('dists', {'weights': ALPHA_BETA, 'backbone_weights': backbones['vgg16']}))}
    check_metrics(metrics, dataset, 'Set5', crop_border=4)
