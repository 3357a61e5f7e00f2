"""Exceptions that fat_tf raises for bad input, each naming the file and the problem."""


class FatTfError(Exception):
    """Base class of every error fat_tf reports to a user (no traceback needed)."""


class DataError(FatTfError, ValueError):
    """A dataset folder, CSV or manifest is malformed; the message names the file and row."""


class AudioFormatError(DataError):
    """An audio file cannot be used: unreadable, corrupt, or of the wrong format."""
