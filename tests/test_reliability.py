"""Faults injected into real training runs: kill -9, corrupt states, code-carrying checkpoints, broken
images, a full disk, a NaN storm. Nothing saved may be lost and no fault may go unexplained.

Kills use srkit's named fault points (SRKIT_FAULT_POINTS, srkit/core/faults.py): a run dies at an exact place,
so no test depends on timing. Other faults go through tests/fault_harness.py, which patches srkit from outside
and runs srkit/train.py.
docs/RELIABILITY.md summarises what these tests inject and what they found.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from training_helpers import TINY_TRAIN, make_images

from srkit.core.checkpoint import load_checkpoint_file
from srkit.data.image_io import write_image

REPO = Path(__file__).resolve().parents[1]
HARNESS = REPO / 'tests' / 'fault_harness.py'
TIMEOUT = 300


@pytest.fixture
def tiny(tmp_path) -> Path:
    make_images(tmp_path / 'hr', 4)
    make_images(tmp_path / 'val', 2, seed=1)
    path = tmp_path / 'tiny.yml'
    path.write_text(TINY_TRAIN.format(root=tmp_path))
    return path


def command(opt: Path, *extra: str) -> list[str]:
    return [sys.executable, str(HARNESS), '-opt', str(opt), *extra]


def harness_env(faults: str) -> dict[str, str]:
    return dict(os.environ, SRKIT_FAULTS=faults, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')


def run(opt: Path, *extra: str, faults: str = '', cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command(opt, *extra), cwd=cwd, env=harness_env(faults), capture_output=True, text=True,
                          timeout=TIMEOUT)


def latest_weights(exp: Path) -> dict:
    return load_checkpoint_file(exp / 'models' / 'net_g_latest.pth')


def newest_state(exp: Path) -> Path | None:
    states = sorted((exp / 'training_states').glob('*.state'), key=lambda p: int(p.stem))
    return states[-1] if states else None


def assert_identical(a: dict, b: dict) -> None:
    for key in ('params', 'params_ema'):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f'{key}.{name} differs'


FAULT_PROBE = """
from srkit.core.faults import fault_point
for visit in range(1, 6):
    print(visit, flush=True)
    fault_point('validation')
    fault_point('train_step')
"""


@pytest.mark.parametrize('points, env, last_visit', [
    ('train_step:3', {}, 3),
    ('validation:2,train_step:4', {}, 2),  # whichever comes first
    ('train_step:9', {}, None),  # never reached
    ('checkpoint_write:1', {}, None),  # a point this process never reaches
    ('', {}, None),  # unset: no fault
    ('train_step:2', {'SRKIT_FAULT_RANK': '1', 'RANK': '1'}, 2),
    ('train_step:2', {'SRKIT_FAULT_RANK': '1', 'RANK': '0'}, None),
    ('train_step:2', {'SRKIT_FAULT_RANK': '0'}, 2),  # no RANK: a single process, rank 0
    ('train_step:3', {'SRKIT_FAULT_SIGNAL': 'TERM'}, 3),  # a graceful-stop signal instead (default action here)
])
def test_fault_point_kills_at_the_named_visit_only(points, env, last_visit):
    environ = {k: v for k, v in os.environ.items() if k not in ('RANK', 'SRKIT_FAULT_RANK', 'SRKIT_FAULT_SIGNAL')}
    environ.update(env, SRKIT_FAULT_POINTS=points, PYTHONPATH=str(REPO))
    probe = subprocess.run([sys.executable, '-c', FAULT_PROBE], env=environ, capture_output=True, text=True,
                           timeout=TIMEOUT, check=False)
    visits = [int(v) for v in probe.stdout.split()]
    if last_visit is None:
        assert probe.returncode == 0 and visits == [1, 2, 3, 4, 5], probe.stderr
    else:
        expected = signal.Signals[f'SIG{env.get("SRKIT_FAULT_SIGNAL", "KILL")}']
        assert probe.returncode == -expected and visits == list(range(1, last_visit + 1)), probe.stderr


@pytest.mark.parametrize('points', ['train_step', 'train_step:0', 'train_step:x', 'trainstep:1'])
def test_a_malformed_fault_point_is_an_error_not_silence(points):
    environ = dict(os.environ, SRKIT_FAULT_POINTS=points, PYTHONPATH=str(REPO))
    probe = subprocess.run([sys.executable, '-c', FAULT_PROBE], env=environ, capture_output=True, text=True,
                           timeout=TIMEOUT, check=False)
    assert probe.returncode == 1 and f'"{points}" is not <point>:<count' in probe.stderr


def test_a_malformed_fault_signal_is_an_error_not_silence():
    environ = dict(os.environ, SRKIT_FAULT_POINTS='train_step:1', SRKIT_FAULT_SIGNAL='HUP', PYTHONPATH=str(REPO))
    probe = subprocess.run([sys.executable, '-c', FAULT_PROBE], env=environ, capture_output=True, text=True,
                           timeout=TIMEOUT, check=False)
    assert probe.returncode == 1 and "SRKIT_FAULT_SIGNAL must be one of KILL, TERM, INT" in probe.stderr


def train(opt: Path, *extra: str, points: str = '') -> subprocess.CompletedProcess:
    """srkit/train.py itself (no harness): kills come from srkit's own fault points."""
    env = dict(os.environ, SRKIT_FAULT_POINTS=points, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, str(REPO / 'srkit' / 'train.py'), '-opt', str(opt), *extra],
                          cwd=opt.parent, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False)


def temporaries(exp: Path) -> list[str]:
    return sorted(p.parent.name for folder in ('models', 'training_states') for p in (exp / folder).glob('.*.tmp'))


# Checkpoints at even iterations (network file, then training state: two checkpoint_write visits each),
# validation at 5, 10, 15, 20 (before that iteration's checkpoint). Each run resumes the one before it.
KILL_RUN = ['train.total_iter=20', 'logger.save_checkpoint_freq=2', 'val.val_freq=5', 'logger.print_freq=1']
KILLS = [  # (fault point, newest training state after the kill, the temporary file the kill leaves)
    ('checkpoint_write:1', None, ['models']),  # iteration 2's network file, before any state exists
    ('train_step:3', 2, []),  # the next run starts afresh; killed after iteration 3's step
    ('validation:1', 4, []),  # at 5, before the bicubic baseline; best metric updated in memory only
    ('checkpoint_write:2', 4, ['training_states']),  # iteration 6's state, its network file complete
    ('checkpoint_write:3', 6, ['models']),  # iteration 8's network file
    ('train_step:4', 8, []),  # iteration 10's step, before its validation and checkpoint
    ('validation:2', 14, []),  # at 15, the second validation of that run
    ('checkpoint_write:4', 16, ['training_states']),  # iteration 18's state
]


@pytest.mark.slow
def test_kill_9_at_named_points_then_auto_resume_is_bit_identical(tmp_path, tiny):
    reference = tmp_path / 'straight'
    with open(tmp_path / 'straight.log', 'w') as log:  # shares nothing with the killed runs: runs beside them
        straight = subprocess.Popen([sys.executable, str(REPO / 'srkit' / 'train.py'), '-opt', str(tiny),
                                     '--force_yml', *KILL_RUN, f'path.experiments_root={reference}'],
                                    cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS='1'), stdout=log,
                                    stderr=subprocess.STDOUT)
        try:
            exp = tmp_path / 'killed'
            resumed_from = None
            for points, newest, left in KILLS:
                killed = train(tiny, '--auto_resume', '--force_yml', *KILL_RUN, f'path.experiments_root={exp}',
                               points=points)
                assert killed.returncode == -signal.SIGKILL, (points, killed.stderr[-2000:])
                if resumed_from is not None:
                    assert f'Resumed from {exp}/training_states/{resumed_from}.state' in killed.stdout, points
                state = newest_state(exp)
                assert (int(state.stem) if state else None) == newest, points
                if state is not None:  # the newest checkpoint is always complete and readable
                    assert load_checkpoint_file(state)['iter'] == newest
                assert temporaries(exp) == left, points  # and the previous kill's temporary file is gone
                resumed_from = newest
            final = train(tiny, '--auto_resume', '--force_yml', *KILL_RUN, f'path.experiments_root={exp}')
            assert final.returncode == 0, final.stderr[-2000:]
            assert f'Resumed from {exp}/training_states/{resumed_from}.state' in final.stdout
            assert straight.wait(timeout=TIMEOUT) == 0, (tmp_path / 'straight.log').read_text()[-2000:]
        finally:
            if straight.poll() is None:
                straight.kill()
                straight.wait()
    assert_identical(latest_weights(exp), latest_weights(reference))
    best = [load_checkpoint_file(root / 'training_states' / '20.state')['loop']['best'] for root in (exp, reference)]
    assert best[0] == best[1]
    assert temporaries(exp) == []


@pytest.mark.slow
@pytest.mark.parametrize('damage', ['truncated', 'zero bytes', 'wrong content'])
def test_corrupt_newest_state_falls_back_to_the_previous_one(tmp_path, tiny, damage):
    common = ['logger.save_checkpoint_freq=2', 'val.val_freq=100']
    first = run(tiny, '--force_yml', 'train.total_iter=6', *common, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    exp = tmp_path / 'exp'
    newest = exp / 'training_states' / '6.state'
    data = newest.read_bytes()
    newest.write_bytes({'truncated': data[:len(data) // 2], 'zero bytes': b'',
                        'wrong content': b'this is not a checkpoint' * 10}[damage])
    resumed = run(tiny, '--auto_resume', '--force_yml', 'train.total_iter=8', *common, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert '6.state' in resumed.stdout and 'Falling back' in resumed.stdout
    assert re.search(r'Resumed from \S*4\.state at iteration 4', resumed.stdout)
    assert load_checkpoint_file(exp / 'training_states' / '8.state')['iter'] == 8


class _Payload:
    def __reduce__(self):
        return (os.system, (f'touch {Path.cwd() / "CODE_RAN"}',))


def test_code_carrying_checkpoint_is_refused_and_does_not_run(tmp_path, tiny):
    evil = tmp_path / 'evil.pth'
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        torch.save({'params': {}, 'payload': _Payload()}, evil)
    finally:
        os.chdir(cwd)
    result = run(tiny, '--force_yml', f'path.pretrain_network_g={evil}', cwd=tmp_path)
    assert result.returncode == 2 and 'evil.pth was refused' in result.stderr
    assert 'Traceback' not in result.stderr
    assert not (tmp_path / 'CODE_RAN').exists()


def png_claiming_size(width: int, height: int) -> bytes:
    """A valid PNG header announcing a huge image (a decompression bomb) without the pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack('>I', len(body)) + kind + body + struct.pack('>I', zlib.crc32(kind + body))

    header = struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', zlib.compress(b'\x00' * 64)) + \
        chunk(b'IEND', b'')


def broken_corpus(folder: Path) -> dict[str, str]:
    """Unusable or unusual images, each with the words its message must contain (empty: accepted)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    png = folder / 'source.png'
    write_image(png, rgb)
    data = png.read_bytes()
    png.unlink()
    (folder / 'truncated.png').write_bytes(data[:len(data) // 2])
    Image.fromarray(rgb).save(folder / 'jpeg_source.jpg', quality=90)
    jpeg = (folder / 'jpeg_source.jpg').read_bytes()
    (folder / 'jpeg_source.jpg').unlink()
    (folder / 'truncated.jpg').write_bytes(jpeg[:len(jpeg) // 3])
    (folder / 'zero.png').write_bytes(b'')
    (folder / 'text.png').write_text('not an image at all')
    Image.fromarray((rng.integers(0, 65535, (40, 40), dtype=np.uint16))).save(folder / 'sixteen.png')
    Image.new('RGB', (1, 1)).save(folder / 'one_pixel.png')
    (folder / 'huge.png').write_bytes(png_claiming_size(60000, 60000))
    return {'truncated.png': 'truncated.png', 'truncated.jpg': 'truncated.jpg', 'zero.png': 'zero.png',
            'text.png': 'text.png', 'sixteen.png': 'sixteen.png', 'one_pixel.png': 'one_pixel.png',
            'huge.png': 'huge.png'}


@pytest.mark.slow
def test_broken_images_in_train_val_and_test_paths(tmp_path, tiny):
    corpus = broken_corpus(tmp_path / 'broken')
    hr = tmp_path / 'hr'
    for name in corpus:
        (hr / name).write_bytes((tmp_path / 'broken' / name).read_bytes())
    # training without skipping: a clear message naming one of the bad files, non-zero exit
    strict = run(tiny, '--force_yml', 'train.total_iter=4', 'val.val_freq=100', cwd=tmp_path)
    assert strict.returncode == 2 and 'Traceback' not in strict.stderr
    assert any(name in strict.stderr for name in corpus), strict.stderr
    # training told to skip: finishes and reports every bad file it met at the end
    lenient = run(tiny, '--force_yml', 'train.total_iter=30', 'val.val_freq=100', 'datasets.train.gt_size=8',
                  'datasets.train.skip_bad_images=true', 'datasets.train.dataset_enlarge_ratio=10',
                  'datasets.train.batch_size_per_gpu=4', cwd=tmp_path)
    assert lenient.returncode == 0, lenient.stderr[-2000:]
    report = lenient.stdout[lenient.stdout.index('unusable training images were skipped'):]
    assert sum(name in report for name in corpus) >= 6, report
    # a bad image among the validation images (the training images are fine here)
    make_images(tmp_path / 'hr_clean', 4)
    for name in ('truncated.png', 'sixteen.png'):
        val = tmp_path / f'val_{name}'
        make_images(val, 1, seed=1)
        (val / name).write_bytes((tmp_path / 'broken' / name).read_bytes())
        bad_val = run(tiny, '--force_yml', 'train.total_iter=2', 'val.val_freq=2', f'datasets.val.dataroot_gt={val}',
                      f'datasets.train.dataroot_gt={tmp_path}/hr_clean',
                      f'path.experiments_root={tmp_path}/v_{name}', cwd=tmp_path)
        assert bad_val.returncode == 2 and name in bad_val.stderr and 'Traceback' not in bad_val.stderr


@pytest.mark.slow
def test_disk_full_while_saving_stops_clearly_and_keeps_the_previous_checkpoint(tmp_path, tiny):
    common = ['train.total_iter=10', 'logger.save_checkpoint_freq=2', 'val.val_freq=100']
    # writes 1-2 are the checkpoint at iteration 2 (network, state); write 3 fails
    full = run(tiny, '--force_yml', *common, faults='disk_full_at=3', cwd=tmp_path)
    assert full.returncode == 2 and 'the disk is full' in full.stderr and 'Traceback' not in full.stderr
    exp = tmp_path / 'exp'
    assert load_checkpoint_file(exp / 'training_states' / '2.state')['iter'] == 2
    assert not list((exp / 'models').glob('.*.tmp')) and not list((exp / 'training_states').glob('.*.tmp'))
    freed = run(tiny, '--auto_resume', '--force_yml', *common, cwd=tmp_path)
    assert freed.returncode == 0 and 'Resumed from' in freed.stdout


def test_nan_storm_skips_counts_reports_and_stops_with_last_good_checkpoint(tmp_path, tiny):
    result = run(tiny, '--force_yml', 'train.total_iter=40', 'logger.save_checkpoint_freq=4', 'val.val_freq=100',
                 'train.max_nonfinite_steps=5', faults='nan_from=7,nan_steps=100', cwd=tmp_path)
    assert result.returncode == 2 and 'Traceback' not in result.stderr
    assert '5 consecutive steps had non-finite losses' in result.stderr
    assert len(re.findall(r'non-finite loss or gradient', result.stdout)) == 5
    state = load_checkpoint_file(tmp_path / 'exp' / 'training_states' / '8.state')
    # iteration 8's checkpoint holds the weights of iteration 6: iterations 7 and 8 were skipped steps
    assert all(torch.isfinite(v).all() for v in state['network']['params'].values())
    assert not (tmp_path / 'exp' / 'training_states' / '12.state').exists()
