"""Entry points on bad input: one clear message naming the file or key, a non-zero exit, no traceback."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from script_helpers import Finished, run_in_process
from training_helpers import TINY_TRAIN, make_images

from srkit.archs import create

REPO = Path(__file__).resolve().parents[1]


def run(script: str, opt: Path, *extra: str, cwd: Path) -> Finished:
    """``python srkit/<script> -opt opt *extra``, run in this process (the --help test runs the files themselves)."""
    return run_in_process(script, ['-opt', str(opt), *extra], cwd)


def assert_clean_failure(result: Finished, *fragments: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert 'Traceback' not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.fixture
def tiny_yml(tmp_path):
    make_images(tmp_path / 'hr', 3)
    make_images(tmp_path / 'val', 1, seed=1)
    path = tmp_path / 'tiny.yml'
    path.write_text(TINY_TRAIN.format(root=tmp_path))
    return path


def test_option_errors(tmp_path, tiny_yml):
    bad = tmp_path / 'bad.yml'
    bad.write_text('name: x\n  scale: 2\n')
    assert_clean_failure(run('train.py', bad, cwd=tmp_path), 'bad.yml', 'malformed YAML')
    result = run('train.py', tiny_yml, '--force_yml', 'train.optim_g.lrr=0.1', cwd=tmp_path)
    assert_clean_failure(result, 'tiny.yml', '"train.optim_g.lrr"', 'Did you mean "train.optim_g.lr"')


def test_missing_data_root(tmp_path, tiny_yml):
    result = run('train.py', tiny_yml, '--force_yml', f'datasets.train.dataroot_gt={tmp_path}/nope', cwd=tmp_path)
    assert_clean_failure(result, str(tmp_path / 'nope'))


def test_lr_hr_mismatch_names_both_files(tmp_path):
    make_images(tmp_path / 'gt', 1, size=(48, 48))
    make_images(tmp_path / 'lq', 1, size=(20, 24))
    opt = tmp_path / 'test.yml'
    opt.write_text(f'''
name: mismatch
scale: 2
datasets:
  test_1: {{name: pairs, type: PairedImageDataset, dataroot_gt: {tmp_path}/gt, dataroot_lq: {tmp_path}/lq}}
network_g: {{type: EDSR_tiny, upscale: 2}}
path: {{results_root: {tmp_path}/results}}
val:
  metrics: {{psnr: {{type: calculate_psnr, crop_border: 2}}}}
''')
    result = run('test.py', opt, cwd=tmp_path)
    assert_clean_failure(result, 'img00.png', '48', '20')


def test_checkpoint_for_another_scale_is_refused(tmp_path):
    from srkit.core.registry import ARCH_REGISTRY
    torch.save({'params': ARCH_REGISTRY.get('EDSR_tiny')(upscale=4).state_dict()}, tmp_path / 'x4.pth')
    make_images(tmp_path / 'hr', 1)
    opt = tmp_path / 'test.yml'
    opt.write_text(f'''
name: wrong_scale
scale: 2
datasets:
  test_1: {{name: hr, type: HRBicubicDataset, dataroot_gt: {tmp_path}/hr}}
network_g: {{type: EDSR_tiny, upscale: 2}}
path: {{pretrain_network_g: {tmp_path}/x4.pth, results_root: {tmp_path}/results}}
''')
    result = run('test.py', opt, cwd=tmp_path)
    assert_clean_failure(result, 'x4.pth', 'upsample.2.weight', 'a checkpoint for another variant or scale')


def test_corrupt_training_image_names_the_file(tmp_path, tiny_yml):
    (tmp_path / 'hr' / 'img01.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\x00' * 40)
    result = run('train.py', tiny_yml, '--force_yml', 'datasets.train.num_worker_per_gpu=1', cwd=tmp_path)
    assert_clean_failure(result, 'img01.png')


def test_test_py_writes_tables_and_never_overwrites(tmp_path):
    from srkit.core.registry import ARCH_REGISTRY
    torch.manual_seed(0)
    torch.save({'params': ARCH_REGISTRY.get('EDSR_tiny')(upscale=2).state_dict()}, tmp_path / 'w.pth')
    make_images(tmp_path / 'hr', 2)
    opt = tmp_path / 'test.yml'
    opt.write_text(f'''
name: tables
scale: 2
datasets:
  test_1: {{name: setA, type: HRBicubicDataset, dataroot_gt: {tmp_path}/hr}}
network_g: {{type: EDSR_tiny, upscale: 2}}
path: {{pretrain_network_g: {tmp_path}/w.pth, results_root: {tmp_path}/results}}
val:
  save_img: true
  metrics:
    psnr: {{type: calculate_psnr, crop_border: 2, test_y_channel: true}}
    ssim: {{type: calculate_ssim, crop_border: 2, test_y_channel: true}}
''')
    first = run('test.py', opt, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    import json
    data = json.loads((tmp_path / 'results' / 'results.json').read_text())
    rows = data['datasets'][0]['per_image']
    assert [r['image'] for r in rows] == ['img00', 'img01']
    assert data['datasets'][0]['mean']['psnr'] == pytest.approx(np.mean([r['psnr'] for r in rows]))
    assert '| setA |' in (tmp_path / 'results' / 'results.md').read_text()
    assert (tmp_path / 'results' / 'results.csv').read_text().startswith('dataset,image,psnr,ssim')
    assert len(list((tmp_path / 'results' / 'visualization' / 'setA').glob('*.png'))) == 2
    second = run('test.py', opt, cwd=tmp_path)
    assert second.returncode == 0
    assert len([p for p in tmp_path.iterdir() if p.name.startswith('results_archived_')]) == 1


def test_help_lists_only_the_flags_each_entry_point_acts_on():
    train = subprocess.run([sys.executable, str(REPO / 'srkit' / 'train.py'), '--help'], capture_output=True,
                           text=True, timeout=120)
    test = subprocess.run([sys.executable, str(REPO / 'srkit' / 'test.py'), '--help'], capture_output=True,
                          text=True, timeout=120)
    assert train.returncode == test.returncode == 0
    assert '--auto_resume' in train.stdout and '8 iterations' in ' '.join(train.stdout.split())
    assert '--auto_resume' not in test.stdout and '--debug' not in test.stdout


def test_debug_is_a_handful_of_iterations_with_one_validation_and_one_checkpoint(tmp_path, tiny_yml):
    result = run('train.py', tiny_yml, '--debug', '--force_yml', 'train.total_iter=1000', 'val.val_freq=5000',
                 f'path.experiments_root={tmp_path / "exp"}', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    log = next((tmp_path / 'exp').glob('train_*.log')).read_text()
    assert 'Training finished: 8 iterations.' in log
    assert set(re.findall(r'Validation tiny_val @ iter (\d+)', log)) == {'8'}
    assert sorted(p.name for p in (tmp_path / 'exp' / 'models').iterdir()) == ['net_g_8.pth', 'net_g_latest.pth']
    assert [p.name for p in (tmp_path / 'exp' / 'training_states').iterdir()] == ['8.state']


def _three_set_test_file(tmp_path: Path, third: str) -> Path:
    torch.manual_seed(0)
    torch.save({'params': create('EDSR_tiny', 2).state_dict()}, tmp_path / 'w.pth')
    for name in ('a', 'b'):
        make_images(tmp_path / name, 1)
    opt = tmp_path / 'test.yml'
    opt.write_text(f'''
name: sets
scale: 2
datasets:
  test_1: {{name: setA, type: HRBicubicDataset, dataroot_gt: {tmp_path}/a}}
  test_2: {{name: setB, type: HRBicubicDataset, dataroot_gt: {tmp_path}/b}}
  test_3: {{name: setC, type: HRBicubicDataset, dataroot_gt: {tmp_path}/{third}}}
network_g: {{type: EDSR_tiny}}
path: {{pretrain_network_g: {tmp_path}/w.pth, results_root: {tmp_path}/results}}
val:
  metrics:
    psnr: {{type: calculate_psnr, crop_border: 2}}
''')
    return opt


def test_a_missing_set_is_found_before_anything_is_scored_or_written(tmp_path):
    result = run('test.py', _three_set_test_file(tmp_path, 'nowhere'), cwd=tmp_path)
    assert_clean_failure(result, 'nowhere')
    assert not (tmp_path / 'results').exists()


def test_a_set_failing_while_scored_keeps_the_tables_of_the_sets_before_it(tmp_path):
    make_images(tmp_path / 'c', 1)
    data = (tmp_path / 'c' / 'img00.png').read_bytes()
    (tmp_path / 'c' / 'zz_truncated.png').write_bytes(data[:len(data) // 2])  # a sound header: found when scored
    result = run('test.py', _three_set_test_file(tmp_path, 'c'), cwd=tmp_path)
    assert_clean_failure(result, 'test set setC (datasets.test_3) failed', 'zz_truncated.png', 'setA, setB are in')
    tables = (tmp_path / 'results' / 'results.md').read_text()
    assert '| setA |' in tables and '| setB |' in tables and 'setC' not in tables


@pytest.mark.parametrize('crop_border', [-2, 300])
def test_a_metric_that_cannot_work_is_refused_before_the_first_step(tmp_path, tiny_yml, crop_border):
    result = run('train.py', tiny_yml, '--force_yml', f'val.metrics.psnr.crop_border={crop_border}',
                 f'path.experiments_root={tmp_path / "exp"}', cwd=tmp_path)
    assert_clean_failure(result, 'val.metrics.psnr', f'crop_border {crop_border}', 'tiny_val')
    assert not list((tmp_path / 'exp').glob('training_states/*.state'))
    assert 'Training tiny' not in result.stdout  # refused before the loop started


def test_a_validation_that_fails_late_keeps_the_iterations_done(tmp_path, tiny_yml):
    """An image that breaks only when validated (decodable header, truncated data) stops the run at the first
    validation; the training state of that iteration is saved first, so nothing trained is lost."""
    valid = next((tmp_path / 'val').glob('*.png'))
    data = valid.read_bytes()
    (tmp_path / 'val' / 'zz_truncated.png').write_bytes(data[:len(data) // 2])
    result = run('train.py', tiny_yml, '--force_yml', 'train.total_iter=8', 'val.val_freq=3',
                 'logger.save_checkpoint_freq=100', f'path.experiments_root={tmp_path / "exp"}', cwd=tmp_path)
    assert_clean_failure(result, 'zz_truncated.png')
    assert [p.name for p in (tmp_path / 'exp' / 'training_states').iterdir()] == ['3.state']
