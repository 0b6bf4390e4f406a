"""The demo option files: the scikit-image photographs are prepared, trained on, beat bicubic, and are
evaluated by test.py. The run is shortened to 400 of its 1000 iterations; the full demo's figures (time,
PSNR vs bicubic) are in docs/BENCHMARKS.md."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from srkit.data.demo_dataset import DEMO_IMAGES

REPO = Path(__file__).resolve().parents[1]
TRAIN_OPT = 'options/train/Demo/train_EDSR_tiny_x2_demo.yml'
TEST_OPT = 'options/test/Demo/test_EDSR_tiny_x2_demo.yml'


@pytest.mark.slow
def test_demo_trains_beats_bicubic_and_test_py_evaluates(tmp_path):
    train = subprocess.run(
        [sys.executable, str(REPO / 'srkit/train.py'), '-opt', str(REPO / TRAIN_OPT),
         '--force_yml', 'train.total_iter=400', 'val.val_freq=400', 'logger.save_checkpoint_freq=400'],
        cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert train.returncode == 0, train.stderr[-3000:]
    assert 'Preparing the demo dataset from scikit-image' in train.stdout
    validation = r'Validation DemoVal @ iter 400 \(EMA weights, decay 0\.99\): psnr: ([\d.]+)'
    psnr = float(re.search(validation, train.stdout).group(1))
    bicubic = float(re.search(r'Validation DemoVal, bicubic baseline: psnr: ([\d.]+)', train.stdout).group(1))
    assert psnr > bicubic + 0.5, f'demo {psnr:.2f} dB vs bicubic {bicubic:.2f} dB'

    train_names = {p.stem for p in (tmp_path / 'datasets/demo/train').glob('*.png')}
    val_names = {p.stem for p in (tmp_path / 'datasets/demo/val').glob('*.png')}
    assert train_names == {n for n, _, _ in DEMO_IMAGES['train']} and val_names == {n for n, _, _ in DEMO_IMAGES['val']}
    assert not train_names & val_names

    test = subprocess.run(
        [sys.executable, str(REPO / 'srkit/test.py'), '-opt', str(REPO / TEST_OPT)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert test.returncode == 0, test.stderr[-3000:]
    results = json.loads((tmp_path / 'results/demo_EDSR_tiny_x2/results.json').read_text())
    rows = results['datasets'][0]['per_image']
    assert {r['image'] for r in rows} == val_names
    assert results['datasets'][0]['mean']['psnr'] > bicubic + 0.5  # test.py agrees with validation
    assert len(list((tmp_path / 'results/demo_EDSR_tiny_x2/visualization/DemoVal').glob('*.png'))) == 2
