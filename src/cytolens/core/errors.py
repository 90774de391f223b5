"""The exception hierarchy of cytolens.

Every error raised on purpose by cytolens derives from :class:`CytolensError`,
so scripts can catch them all at once, and the command line prints their
one-line message instead of a traceback. The subclasses also derive from the
matching built-in exception, so ``except ValueError`` keeps working.

Messages name the file, axis or value at fault and say what was expected.
"""

from __future__ import annotations

__all__ = [
    "AxesError",
    "CytolensError",
    "FileFormatError",
    "InputError",
    "MissingFileError",
    "ModelError",
    "OutputError",
]


class CytolensError(Exception):
    """Base class of every error cytolens raises on purpose."""


class InputError(CytolensError, ValueError):
    """An input array, value or file does not meet what the operation expects."""


class AxesError(InputError):
    """An axes string is unknown, duplicated, or does not match the array's shape."""


class MissingFileError(InputError, FileNotFoundError):
    """A file or folder named by the user does not exist."""


class FileFormatError(InputError):
    """A file exists but cannot be read: unsupported format, truncated or corrupt."""


class ModelError(CytolensError, RuntimeError):
    """A shipped model is unknown, or its weights fail their checksum."""


class OutputError(InputError):
    """An output path cannot be used (a folder, an input, an earlier run's folder, read-only)."""
