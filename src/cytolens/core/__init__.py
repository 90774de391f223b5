"""Shared foundation: errors, axes, validation, atomic files, tiling, normalization, devices."""

from cytolens.core.axes import check_axes, guess_axes
from cytolens.core.errors import (
    AxesError,
    CytolensError,
    FileFormatError,
    InputError,
    MissingFileError,
    ModelError,
)
from cytolens.core.image import Image

__all__ = [
    "AxesError",
    "CytolensError",
    "FileFormatError",
    "Image",
    "InputError",
    "MissingFileError",
    "ModelError",
    "check_axes",
    "guess_axes",
]
