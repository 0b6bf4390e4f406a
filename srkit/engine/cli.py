"""Command-line handling shared by train.py and test.py: the flags, and errors turned into exit codes."""
from __future__ import annotations

import argparse
import logging
import sys
import traceback
from typing import Callable

from srkit.config.options import DEBUG_ITERATIONS
from srkit.core.errors import EXIT_BUG, EXIT_INTERRUPTED, EXIT_STOPPED, EXIT_USER_ERROR, RunStopped, SrkitError

__all__ = ['parse_args', 'run_entry_point']


def parse_args(argv: list[str] | None, description: str, *, training: bool) -> argparse.Namespace:
    """train.py's flags (``training``) or test.py's: each lists only what it acts on."""
    statuses = (f'exit status: 0 done; {EXIT_USER_ERROR} a mistake in the options or data (one message); '
                + (f'{EXIT_STOPPED} stopped by SIGTERM or Ctrl-C after saving a training state (continue with '
                   f'--auto_resume); {EXIT_INTERRUPTED} a second Ctrl-C (stopped at once); ' if training else '')
                + f'{EXIT_BUG} a bug in srkit (with a traceback).')
    parser = argparse.ArgumentParser(description=description, epilog=statuses)
    parser.add_argument('-opt', '--opt', required=True, help='path to the YAML option file')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                        help='none: one process; pytorch: started by torchrun; slurm: started by srun')
    if training:
        parser.add_argument('--auto_resume', action='store_true',
                            help='resume from the newest complete training state of this experiment, if any')
        parser.add_argument('--debug', action='store_true',
                            help=f'a quick check of the whole loop: {DEBUG_ITERATIONS} iterations logged one by '
                                 'one, then one validation and one checkpoint, in experiments/debug_<name>')
    parser.add_argument('--force_yml', nargs='+', default=[], metavar='KEY=VALUE',
                        help='override options, e.g. train.total_iter=1000 (values parsed as YAML)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_entry_point(main: Callable[[], object]) -> None:
    """Run ``main``. A user error prints one clear message and exits EXIT_USER_ERROR, without a traceback; a
    training stopped by SIGTERM/SIGINT with its state saved exits EXIT_STOPPED; a second Ctrl-C, EXIT_INTERRUPTED;
    anything else is a bug in srkit: one line saying so, the traceback, and EXIT_BUG."""
    try:
        main()
    except SrkitError as exc:
        _report(f'srkit: error: {exc}', f'error: {exc}')
        sys.exit(EXIT_USER_ERROR)
    except RunStopped as stop:
        print(f'srkit: {stop}', file=sys.stderr)
        sys.exit(EXIT_STOPPED)
    except KeyboardInterrupt:
        print('srkit: interrupted (the log above says what was saved).', file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except Exception:  # noqa: BLE001 - the last resort: every other exception is srkit's own bug
        trace = traceback.format_exc()
        _report(f'srkit: internal error: this is a bug in srkit, not a mistake in your options; please report it '
                f'with the traceback below.\n{trace}', f'internal error (a bug in srkit):\n{trace}')
        sys.exit(EXIT_BUG)


def _report(console: str, log_line: str) -> None:
    """Print to stderr, and write the same to the run's log file when one is open."""
    print(console, file=sys.stderr)
    for handler in logging.getLogger('srkit').handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(logging.makeLogRecord({'msg': log_line, 'levelno': logging.ERROR,
                                                  'levelname': 'ERROR', 'name': 'srkit'}))
