"""The project's error classes. Every failure on bad input raises one of these."""

from __future__ import annotations


class LeaveoutError(Exception):
    """Base class of every error that leaveout raises on purpose."""


class DatasetNotFoundError(LeaveoutError, FileNotFoundError):
    """A dataset is not where it was looked for; the message says where and how to get it."""


class RunNotFoundError(LeaveoutError, FileNotFoundError):
    """A run directory, or a file it should hold (a member's weights), is missing."""


class NotFittedError(LeaveoutError, AttributeError):
    """A detector was asked for a decision before `fit` set its threshold."""


class CorruptFileError(LeaveoutError, ValueError):
    """A file exists but cannot be read (truncated, wrong format, bad checksum)."""


class UnsafePickleError(CorruptFileError):
    """A pickle asked for something other than the plain data it is allowed to hold."""


class ShapeError(LeaveoutError, ValueError):
    """An array, a class count or an architecture does not match what was expected."""


class ConfigError(LeaveoutError, ValueError):
    """A setting is unknown, has the wrong type, or conflicts with a saved run."""


class TrainingDivergedError(LeaveoutError, RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class WriteError(LeaveoutError, OSError):
    """A file could not be written (disk full, no permission); the previous version is intact."""


class LeaveoutWarning(UserWarning):
    """Something works but deserves a look (tiny sets, skipped files); the CLI prints one line."""
