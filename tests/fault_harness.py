"""Run srkit/train.py with faults injected from outside srkit (used by tests/test_reliability.py).

srkit itself has no test hooks: this wrapper patches the functions a fault would hit, then runs the
real entry point. Faults come from SRKIT_FAULTS, a comma-separated list:

  slow_write=S        every checkpoint file write prints @@WRITE and waits S seconds before it completes,
                      so that a kill can land in the middle of a write
  slow_validation=S   every validation prints @@VALIDATION and waits S seconds
  disk_full_at=N      the N-th checkpoint file write (and every later one) fails with ENOSPC
  nan_from=A          losses are NaN from iteration A ...
  nan_steps=M         ... for M iterations

Usage: python tests/fault_harness.py -opt x.yml [train.py arguments]
"""
from __future__ import annotations

import errno
import os
import runpy
import stat
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FAULTS = dict(item.partition('=')[::2] for item in os.environ.get('SRKIT_FAULTS', '').split(',') if item)


def patch_checkpoint_writes() -> None:
    real_fsync = os.fsync
    writes = [0]

    def fsync(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):  # a checkpoint file, not its folder
            writes[0] += 1
            if 'disk_full_at' in FAULTS and writes[0] >= int(FAULTS['disk_full_at']):
                raise OSError(errno.ENOSPC, 'No space left on device')
            if 'slow_write' in FAULTS:
                print('@@WRITE', flush=True)
                time.sleep(float(FAULTS['slow_write']))
        real_fsync(fd)

    os.fsync = fsync


def patch_validation() -> None:
    import srkit.engine.trainer as trainer
    real_evaluate = trainer.evaluate

    def evaluate(*args, **kwargs):
        print('@@VALIDATION', flush=True)
        time.sleep(float(FAULTS['slow_validation']))
        return real_evaluate(*args, **kwargs)

    trainer.evaluate = evaluate


def patch_losses() -> None:
    from srkit.models.sr_model import SRModel
    first, count = int(FAULTS['nan_from']), int(FAULTS.get('nan_steps', 1))
    real_step, real_losses = SRModel.train_step, SRModel.compute_losses

    def train_step(self, micro_batches, current_iter):
        self._fault_iter = current_iter
        return real_step(self, micro_batches, current_iter)

    def compute_losses(self, batch):
        terms = real_losses(self, batch)
        if first <= self._fault_iter < first + count:
            terms = {k: v * float('nan') for k, v in terms.items()}
        return terms

    SRModel.train_step, SRModel.compute_losses = train_step, compute_losses


if __name__ == '__main__':
    if 'slow_write' in FAULTS or 'disk_full_at' in FAULTS:
        patch_checkpoint_writes()
    if 'slow_validation' in FAULTS:
        patch_validation()
    if 'nan_from' in FAULTS:
        patch_losses()
    entry = REPO / 'srkit' / 'train.py'
    sys.argv = [str(entry), *sys.argv[1:]]
    runpy.run_path(str(entry), run_name='__main__')
