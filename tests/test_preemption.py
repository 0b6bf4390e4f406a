"""Pre-emption: SIGTERM (SLURM, scancel, a launcher passing it on) and SIGINT (Ctrl-C) finish the iteration, save a
training state and exit with EXIT_STOPPED; --auto_resume then ends bit-identical to a run never stopped.

The signals come from srkit's named fault points (SRKIT_FAULT_SIGNAL, srkit/core/faults.py), so every stop
happens at an exact iteration whatever the machine's load: in one process the run signals itself; under
torchrun rank 0 signals torchrun, which passes the signal on to every rank, as a scheduler signalling the
launcher would, and rank 0 waits until it has come back.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from training_helpers import TINY_TRAIN, make_images

from srkit.core.checkpoint import load_checkpoint_file
from srkit.core.errors import EXIT_STOPPED
from srkit.engine.preemption import StopSignals

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 240
# 12 iterations, validation at 6 and 12, checkpoints every 4: the stops at 3 and 7 fall between checkpoints
COMMON = ['--force_yml', 'train.total_iter=12', 'val.val_freq=6', 'logger.save_checkpoint_freq=4',
          'logger.print_freq=1']


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    make_images(tmp_path / 'hr', 4)
    make_images(tmp_path / 'val', 2, seed=1)
    path = tmp_path / 'tiny.yml'
    path.write_text(TINY_TRAIN.format(root=tmp_path))
    return path


def train(opt: Path, root: Path, nproc: int, *extra: str, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess:
    script = str(REPO / 'srkit' / 'train.py')
    launcher = ([sys.executable, script] if nproc == 1 else
                [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}', script])
    cmd = [*launcher, '-opt', str(opt), *(['--launcher', 'pytorch'] if nproc > 1 else []), *COMMON,
           f'path.experiments_root={root}', *extra]
    return subprocess.run(cmd, cwd=opt.parent, capture_output=True, text=True, timeout=TIMEOUT,
                          env=dict(os.environ, OMP_NUM_THREADS='1', **(env or {})))


def stop_at(visit: int, name: str, target: str) -> dict[str, str]:
    """Send SIG<name> at the train_step point of this process's ``visit``-th iteration (rank 0 only)."""
    return {'SRKIT_FAULT_POINTS': f'train_step:{visit}', 'SRKIT_FAULT_SIGNAL': name, 'SRKIT_FAULT_TARGET': target,
            'SRKIT_FAULT_RANK': '0'}


def assert_identical(a: Path, b: Path) -> None:
    first, second = (load_checkpoint_file(root / 'models' / 'net_g_latest.pth') for root in (a, b))
    for key in ('params', 'params_ema'):
        assert first[key].keys() == second[key].keys()
        for name in first[key]:
            assert torch.equal(first[key][name], second[key][name]), f'{key}.{name}'


def log_text(root: Path) -> str:
    return '\n'.join(p.read_text(encoding='utf-8') for p in sorted(root.glob('train_*.log')))


@pytest.mark.slow
@pytest.mark.parametrize('nproc', [1, 2], ids=['one process', 'torchrun 2 processes'])
def test_sigterm_then_sigint_stop_save_and_resume_bit_identical(tiny: Path, tmp_path: Path, nproc: int) -> None:
    target = 'self' if nproc == 1 else 'parent'  # torchrun is the parent of its ranks
    stopped = tmp_path / 'stopped'
    first = train(tiny, stopped, nproc, env=stop_at(3, 'TERM', target))
    assert first.returncode != 0, first.stderr[-3000:]
    if nproc == 1:  # torchrun reports the signal it got with a traceback of its own, and exits 1
        assert first.returncode == EXIT_STOPPED and 'Traceback' not in first.stderr, first.stderr[-3000:]
    else:  # both ranks stopped the same way
        assert first.stderr.count('stopped by SIGTERM after iteration 3') == 2, first.stderr[-3000:]
    assert 'stopped by SIGTERM after iteration 3, with its training state saved' in first.stderr, first.stderr[-3000:]
    assert 'internal error' not in first.stderr, first.stderr[-3000:]
    assert sorted(p.name for p in (stopped / 'training_states').glob('*.state')) == ['3.state']

    # resumed at 3, the resumed process is stopped by Ctrl-C in its 4th iteration: iteration 7
    second = train(tiny, stopped, nproc, '--auto_resume', env=stop_at(4, 'INT', target))
    assert 'stopped by SIGINT after iteration 7' in second.stderr, second.stderr[-3000:]
    assert (stopped / 'training_states' / '7.state').is_file()
    third = train(tiny, stopped, nproc, '--auto_resume')
    assert third.returncode == 0, third.stderr[-3000:]
    log = log_text(stopped)
    assert 'Stopped by SIGTERM after iteration 3' in log and 'Stopped by SIGINT after iteration 7' in log
    assert 'Resumed from' in log and 'at iteration 7' in log

    straight = tmp_path / 'straight'
    assert train(tiny, straight, nproc).returncode == 0
    assert_identical(stopped, straight)


def test_a_second_ctrl_c_stops_at_once() -> None:
    with StopSignals() as signals:
        os.kill(os.getpid(), signal.SIGTERM)
        assert signals.received == 'SIGTERM'
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            signal.getsignal(signal.SIGINT)  # a bytecode boundary: the handler has run by now
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the previous handlers are back
