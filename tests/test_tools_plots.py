"""Plots from real artefacts: a tiny training run's log and TensorBoard events, test.py-style results."""
from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
from conftest import REPO
from PIL import Image
from training_helpers import tiny_options

from srkit.core.dist import DistContext
from srkit.core.errors import DataError, SrkitError
from srkit.engine.trainer import Trainer
from srkit.tools.plots import parse_training_log, read_tensorboard_scalars, tradeoff_points

pytest.importorskip('matplotlib')


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / 'scripts' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_real_figure(path, min_size=(400, 300)):
    """Opened as an image: big enough, and more than a blank canvas."""
    img = np.asarray(Image.open(path).convert('RGB'))
    assert img.shape[1] >= min_size[0] and img.shape[0] >= min_size[1]
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20
    assert (img < 128).mean() > 0.002  # lines, text and markers, not a single colour


@pytest.fixture(scope='module')
def experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp('run')
    Trainer(tiny_options(root, ['logger.use_tb_logger=true']), DistContext()).train()
    return root / 'exp'


def test_training_log_is_parsed_and_plotted(experiment, tmp_path):
    log = parse_training_log(experiment)
    assert [it for it, _ in log.lr] == [2, 4, 6, 8, 10, 12]  # print_freq 2, 12 iterations
    assert list(log.losses) == ['l_pixel'] and all(v > 0 for _, v in log.losses['l_pixel'])
    assert [it for it, _ in log.validation['tiny_val psnr']] == [6, 12]  # val_freq 6
    assert 'tiny_val psnr' in log.bicubic
    tb = read_tensorboard_scalars(experiment / 'tb_logger')
    assert [it for it, _ in tb.validation['tiny_val psnr']] == [6, 12]
    np.testing.assert_allclose([v for _, v in tb.validation['tiny_val psnr']],
                               [v for _, v in log.validation['tiny_val psnr']], atol=1e-4)  # the log rounds to 4 places
    load_script('plot_training_curves').main([str(experiment), '--out', str(tmp_path / 'curves.png')])
    assert_real_figure(tmp_path / 'curves.png')


def test_a_resumed_run_reads_every_log_and_later_lines_win(tmp_path):
    line = '2026-01-01 00:00:0{s} INFO: [iter {it:>2}/20] l_pix: {v} lr: 1.000e-03 | 1.0 it/s, eta 0:01'
    (tmp_path / 'train_x_20260101_000000.log').write_text('\n'.join(
        line.format(s=0, it=it, v=v) for it, v in ((5, 0.5), (10, 0.4))))
    (tmp_path / 'train_x_20260102_000000.log').write_text(line.format(s=1, it=10, v=0.3))
    assert parse_training_log(tmp_path).losses['l_pix'] == [(5, 0.5), (10, 0.3)]
    (tmp_path / 'other.log').write_text('nothing')
    with pytest.raises(DataError, match='no "\\[iter N/M\\]'):
        parse_training_log(tmp_path / 'other.log')


def write_results(folder, name, arch, scale, psnr):
    (folder / name).mkdir(parents=True)
    payload = {'name': name, 'arch': arch, 'scale': scale, 'weights': None,
               'datasets': [{'name': 'Set5', 'mean': {'psnr': psnr, 'ssim': 0.9}, 'per_image': []}]}
    (folder / name / 'results.json').write_text(json.dumps(payload))


def test_psnr_vs_macs_from_results(tmp_path):
    results = tmp_path / 'results'
    write_results(results, 'IMDN_x4', 'IMDN', 4, 32.18)
    write_results(results, 'ETDS_M5C16_x4', 'ETDSForInference_M5C16', 4, 30.87)
    write_results(results, 'IMDN_x2', 'IMDN', 2, 37.97)
    files = sorted(results.glob('*/results.json'))
    points = tradeoff_points(files, {('IMDN', 4): (715_000, 40_900_000_000),
                                     ('ETDSForInference_M5C16', 4): (21_400, 1)}, 'Set5', scale=4)
    assert [(p.label, p.psnr) for p in points] == [('ETDS_M5C16_x4', 30.87), ('IMDN_x4', 32.18)]
    with pytest.raises(DataError, match='no complexity row for IMDN x2'):
        tradeoff_points(files, {}, 'Set5', scale=2)
    with pytest.raises(DataError, match='No results of Set14'):
        tradeoff_points(files, {}, 'Set14')
    out = tmp_path / 'fig.png'
    load_script('plot_psnr_vs_macs').main([str(results), '--dataset', 'Set5', '--scale', '4', '--out', str(out)])
    assert_real_figure(out)


def test_missing_matplotlib_is_named(tmp_path, monkeypatch):
    from srkit.tools.plots import TradeoffPoint, plot_psnr_vs_macs
    monkeypatch.setitem(sys.modules, 'matplotlib', None)
    with pytest.raises(SrkitError, match='"matplotlib": pip install matplotlib'):
        plot_psnr_vs_macs([TradeoffPoint('a', 1, 1, 30.0)], tmp_path / 'x.png')
