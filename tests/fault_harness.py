"""Run srkit/train.py with faults injected from outside srkit (used by tests/test_reliability.py).

A full disk and NaN losses change what a function does, so this wrapper patches that function and then runs
the real entry point (kills need no patch: srkit's named fault points do them, see srkit/core/faults.py).
Faults come from SRKIT_FAULTS, a comma-separated list:

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
            if writes[0] >= int(FAULTS['disk_full_at']):
                raise OSError(errno.ENOSPC, 'No space left on device')
        real_fsync(fd)

    os.fsync = fsync


def patch_losses() -> None:
    from srkit.models.sr_model import SRModel
    first, count = int(FAULTS['nan_from']), int(FAULTS.get('nan_steps', 1))
    real_losses = SRModel.compute_losses

    def compute_losses(self, batch, iteration):
        terms = real_losses(self, batch, iteration)
        if first <= iteration < first + count:
            terms = {k: v * float('nan') for k, v in terms.items()}
        return terms

    SRModel.compute_losses = compute_losses


if __name__ == '__main__':
    if 'disk_full_at' in FAULTS:
        patch_checkpoint_writes()
    if 'nan_from' in FAULTS:
        patch_losses()
    entry = REPO / 'srkit' / 'train.py'
    sys.argv = [str(entry), *sys.argv[1:]]
    runpy.run_path(str(entry), run_name='__main__')
