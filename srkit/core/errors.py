"""Errors a user can cause, and the exit statuses that tell them apart from srkit's own bugs.

Entry points print a SrkitError's message and exit with EXIT_USER_ERROR, without a traceback. Anything
else that escapes is a bug in srkit: it keeps its traceback and exits with EXIT_BUG.

What the message is about travels as attributes, not inside the text: ``key`` is the dotted option key
(``network_g.num_feat``) and ``file`` the option file, image or checkpoint. Code that adds context sets
them (``in_file``) instead of parsing or prefixing messages, and the errors pickle with them, so one
raised in a DataLoader worker reaches the main process whole.
"""
from __future__ import annotations

__all__ = ['SrkitError', 'OptionError', 'DataError', 'CheckpointError', 'TrainingError', 'RunStopped',
           'EXIT_USER_ERROR', 'EXIT_BUG', 'EXIT_INTERRUPTED', 'EXIT_STOPPED']

EXIT_USER_ERROR = 2
EXIT_BUG = 70  # sysexits.h EX_SOFTWARE: an internal software error
EXIT_INTERRUPTED = 130  # a second Ctrl-C: stopped at once, nothing saved since the last checkpoint
EXIT_STOPPED = 75  # sysexits.h EX_TEMPFAIL: stopped on SIGTERM/SIGINT with a training state saved; resume it


class SrkitError(Exception):
    """Bad input: the message says what is wrong and what to do; ``key`` and ``file`` say where."""

    def __init__(self, message: str, *, key: str | None = None, file: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.key = key
        self.file = file

    def __str__(self) -> str:
        return f'{self.file}: {self.message}' if self.file else self.message

    def in_file(self, file: str) -> SrkitError:
        """Name the file the error was found in (the first one named wins); returns self for ``raise``."""
        if self.file is None:
            self.file = file
        return self


class OptionError(SrkitError):
    """An option file or a command-line override is invalid (``key``: the dotted option key)."""


class DataError(SrkitError):
    """An image or a dataset folder cannot be used (missing, corrupt, wrong size or format)."""


class CheckpointError(SrkitError):
    """A checkpoint cannot be read or does not fit the network it is loaded into."""


class TrainingError(SrkitError):
    """Training cannot go on (e.g. too many non-finite losses); the last good checkpoint is kept."""


class RunStopped(Exception):
    """Training stopped on SIGTERM or SIGINT after saving a training state (not an error: resume it)."""
