"""Named fault points: a test asks a run to SIGKILL itself (or send a signal) at an exact place, not after a timer.

``SRKIT_FAULT_POINTS=checkpoint_write:3,validation:2`` makes the process kill itself (SIGKILL, as
``kill -9`` would) the 3rd time it reaches ``checkpoint_write``, or the 2nd time it reaches ``validation``,
whichever comes first. Counts are per process, so a resumed run counts from 1 again. With
``SRKIT_FAULT_RANK=R`` only the process whose ``RANK`` environment variable is R takes part. The variables
are read once, at the first point reached; unset, a point costs one dict lookup.

``SRKIT_FAULT_SIGNAL=TERM`` (or ``INT``) sends that signal instead of SIGKILL, to test graceful stops
(srkit.engine.preemption), and ``SRKIT_FAULT_TARGET=parent`` sends it to the parent process instead, e.g.
torchrun, which passes it on to every rank as a scheduler's signal to the launcher would be. A point given
``arrived`` (a check that this process has seen the signal) then waits until the launcher's signal has come
back, so the run stops at an exact iteration there too.

Points:

- ``checkpoint_write``: in ``atomic_save``, once per checkpoint file, when half of its bytes are in the
  temporary file and before the rename: a kill leaves a half-written temporary file beside an intact target.
  A training checkpoint writes two files (network, then training state); the end of training writes
  ``net_g_latest.pth``.
- ``validation``: in ``Trainer.validate``, once per validation dataset, after it has been evaluated and its
  best metric updated in memory, before the bicubic baseline and the next dataset.
- ``train_step``: in the training loop, once per iteration, after the optimizer step and before that
  iteration's validation and checkpoint.
"""
from __future__ import annotations

import os
import signal
import time
from typing import Callable

__all__ = ['POINTS', 'fault_point']

POINTS = ('checkpoint_write', 'validation', 'train_step')
_plan: dict[str, int] | None = None  # point -> the visit that kills; read from the environment once
_SIGNALS = {'KILL': signal.SIGKILL, 'TERM': signal.SIGTERM, 'INT': signal.SIGINT}
_visits: dict[str, int] = {}


def _read_plan() -> dict[str, int]:
    """The points this process dies at; empty when none is set or another rank is the one to fault."""
    rank = os.environ.get('SRKIT_FAULT_RANK')
    if rank is not None and os.environ.get('RANK', '0') != rank:
        return {}
    plan = {}
    for item in filter(None, os.environ.get('SRKIT_FAULT_POINTS', '').split(',')):
        name, _, count = item.partition(':')
        if name not in POINTS or not count.isdigit() or int(count) < 1:
            raise ValueError(f'SRKIT_FAULT_POINTS: "{item}" is not <point>:<count >= 1> with a point among '
                             f'{", ".join(POINTS)}.')
        plan[name] = int(count)
    return plan


def _strike(arrived: Callable[[], bool] | None) -> None:
    """Send SRKIT_FAULT_SIGNAL (default KILL) to this process, or to its parent (SRKIT_FAULT_TARGET=parent)."""
    name = os.environ.get('SRKIT_FAULT_SIGNAL', 'KILL')
    target = os.environ.get('SRKIT_FAULT_TARGET', 'self')
    if name not in _SIGNALS or target not in ('self', 'parent'):
        raise ValueError(f'SRKIT_FAULT_SIGNAL must be one of {", ".join(_SIGNALS)} and SRKIT_FAULT_TARGET self or '
                         f'parent, got {name!r} and {target!r}.')
    os.kill(os.getppid() if target == 'parent' else os.getpid(), _SIGNALS[name])
    if target == 'parent' and arrived is not None:
        deadline = time.monotonic() + 120
        while not arrived():  # a signal ends the sleep early; its Python handler has run when sleep returns
            if time.monotonic() > deadline:
                raise RuntimeError(f'SRKIT_FAULT_TARGET=parent: SIG{name} sent to the parent did not come back.')
            time.sleep(0.01)


def fault_point(name: str, arrived: Callable[[], bool] | None = None) -> None:
    """Signal (SIGKILL unless SRKIT_FAULT_SIGNAL says otherwise) if SRKIT_FAULT_POINTS says this visit of
    ``name`` is the one; ``arrived``: see the module docstring."""
    global _plan
    if _plan is None:
        _plan = _read_plan()
    if name in _plan:
        _visits[name] = _visits.get(name, 0) + 1
        if _visits[name] == _plan[name]:
            _strike(arrived)
