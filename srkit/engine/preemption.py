"""Graceful stops: SIGTERM (SLURM's pre-emption signal, ``scancel``, a launcher passing it on) and SIGINT (Ctrl-C).

A signal only sets a flag. The training loop finishes the iteration it is in, every rank learns whether any
rank was signalled (so all stop at the same iteration), a training state is written and the run exits with
EXIT_STOPPED; ``--auto_resume`` then continues as if nothing had happened. A second Ctrl-C stops at once
(KeyboardInterrupt), keeping only what was saved before it.
"""
from __future__ import annotations

import os
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

__all__ = ['StopSignals', 'STOP_SIGNALS']

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """While entered (in the main thread), SIGTERM and SIGINT set ``received`` to the signal's name."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # Python delivers signals to the main thread only
            self._previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        # os.write, not logging: a handler runs between two bytecodes of whatever the main thread was doing,
        # which may be inside the logging module holding its lock
        os.write(2, f'srkit: {self.received} received: stopping after this iteration, once a training state is '
                    f'saved (Ctrl-C again stops at once).\n'.encode())
