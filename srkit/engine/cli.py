"""Command-line handling shared by train.py and test.py: the flags, and errors turned into exit codes."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

from srkit.utils.errors import SrkitError

__all__ = ['parse_args', 'run_entry_point']

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def parse_args(argv: list[str] | None, description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('-opt', '--opt', required=True, help='path to the YAML option file')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                        help='none: one process; pytorch: started by torchrun; slurm: started by srun')
    parser.add_argument('--auto_resume', action='store_true',
                        help='resume from the newest complete training state of this experiment, if any')
    parser.add_argument('--debug', action='store_true',
                        help='a quick check of the whole loop: name prefixed debug_, frequent logging, '
                             'validation and checkpoints')
    parser.add_argument('--force_yml', nargs='+', default=[], metavar='KEY=VALUE',
                        help='override options, e.g. train.total_iter=1000 (values parsed as YAML)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def user_message(exc: BaseException) -> str:
    """The user's message; an error re-raised from a DataLoader worker carries the worker's traceback as
    text, of which only the original message is kept."""
    text = str(exc)
    if 'Original Traceback' in text:
        last = text.rstrip().splitlines()[-1]
        text = last.split(': ', 1)[1] if ': ' in last else last
    return text


def run_entry_point(main: Callable[[], object]) -> None:
    """Run ``main``; a user error prints one clear message and exits non-zero, without a traceback."""
    try:
        main()
    except SrkitError as exc:
        message = user_message(exc)
        print(f'srkit: error: {message}', file=sys.stderr)
        for handler in logging.getLogger('srkit').handlers:
            if isinstance(handler, logging.FileHandler):
                handler.handle(logging.makeLogRecord({'msg': f'error: {message}', 'levelno': logging.ERROR,
                                                      'levelname': 'ERROR', 'name': 'srkit'}))
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print('srkit: interrupted; the last saved checkpoint is intact.', file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
