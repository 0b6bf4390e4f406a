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
    assert [it for it, _ in log.validation['tiny_val (raw weights) psnr']] == [6, 12]  # beside the young EMA
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


# The x4 models of the zoo (Set5): IMDN_x4 sits below EIMN_A_x4's big bubble, Plain_M6C32_x4 and ETDS_M6C32_x4
# almost on each other beside ETDS_M4C32_x4. Labels alternating above and below their bubbles put
# "ETDS_M6C32_x4" on Plain's bubble here.
CROWDED = [('IMDN_x4', 715_176, 40_885_865_472, 32.1802), ('EIMN_A_x4', 880_870, 47_789_135_872, 32.5242),
           ('ETDS_M5C16_x4', 21_360, 1_219_276_800, 30.8712), ('ETDS_M4C32_x4', 54_112, 3_102_105_600, 31.1895),
           ('Plain_M6C32_x4', 70_256, 4_031_078_400, 31.3246), ('ETDS_M6C32_x4', 72_608, 4_163_788_800, 31.4053),
           ('ETDS_M7C48_x4', 169_968, 9_762_508_800, 31.6888)]


@pytest.mark.parametrize('log_x', [None, False])
def test_labels_of_crowded_points_overlap_no_label_and_no_bubble(tmp_path, log_x):
    from itertools import combinations

    import matplotlib.pyplot as plt

    from srkit.tools.plots import TradeoffPoint, plot_psnr_vs_macs, psnr_vs_macs_figure
    points = [TradeoffPoint(name, macs, params, psnr) for name, params, macs, psnr in CROWDED]
    fig = psnr_vs_macs_figure(points, log_x=log_x)
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    labels = {text.get_text().split()[0]: text.get_window_extent(renderer) for text in ax.texts}
    assert sorted(labels) == sorted(p.label for p in points)
    bubbles = []  # (x0, y0, x1, y1) of each marker, in pixels
    for collection in ax.collections:
        (x, y), = ax.transData.transform(collection.get_offsets())
        radius = collection.get_sizes()[0] ** 0.5 / 2 * fig.dpi / 72
        bubbles.append((x - radius, y - radius, x + radius, y + radius))
    plain, etds = bubbles[2], bubbles[3]  # drawn by Multi-Adds: M5C16, M4C32, Plain_M6C32, ETDS_M6C32, ...
    assert abs(plain[0] - etds[0]) < labels['Plain_M6C32_x4'].width  # crowded: centred labels would collide
    assert [(a, b) for (a, box_a), (b, box_b) in combinations(labels.items(), 2) if box_a.overlaps(box_b)] == []
    assert [name for name, box in labels.items() for x0, y0, x1, y1 in bubbles
            if box.x0 < x1 and x0 < box.x1 and box.y0 < y1 and y0 < box.y1] == []
    frame = ax.get_window_extent(renderer)
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1 for b in labels.values())
    plt.close(fig)
    plot_psnr_vs_macs(points, tmp_path / 'crowded.png', log_x=log_x)
    assert_real_figure(tmp_path / 'crowded.png')


def test_missing_matplotlib_is_named(tmp_path, monkeypatch):
    from srkit.tools.plots import TradeoffPoint, plot_psnr_vs_macs
    monkeypatch.setitem(sys.modules, 'matplotlib', None)
    with pytest.raises(SrkitError, match='"matplotlib": pip install matplotlib'):
        plot_psnr_vs_macs([TradeoffPoint('a', 1, 1, 30.0)], tmp_path / 'x.png')
