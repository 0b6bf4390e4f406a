"""Errors a user can cause. Entry points print their message and exit non-zero, without a traceback."""


class SrkitError(Exception):
    """Bad input: the message names the file or the dotted option key and says what to do."""


class OptionError(SrkitError):
    """An option file or a command-line override is invalid."""


class DataError(SrkitError):
    """An image or a dataset folder cannot be used (missing, corrupt, wrong size or format)."""


class CheckpointError(SrkitError):
    """A checkpoint cannot be read or does not fit the network it is loaded into."""


class TrainingError(SrkitError):
    """Training cannot go on (e.g. too many non-finite losses); the last good checkpoint is kept."""
