"""Shared foundation: errors, axes, validation, atomic files, tiling, normalization, devices."""

from cytolens.core.axes import check_axes, guess_axes
from cytolens.core.errors import (
    AxesError,
    CytolensError,
    FileFormatError,
    InputError,
    MissingFileError,
    ModelError,
    OutputError,
)
from cytolens.core.image import Image
from cytolens.core.tiling import Tile, apply_tiled, iter_tiles, tile_shape_for_budget

__all__ = [
    "AxesError",
    "CytolensError",
    "FileFormatError",
    "Image",
    "InputError",
    "MissingFileError",
    "ModelError",
    "OutputError",
    "Tile",
    "apply_tiled",
    "check_axes",
    "guess_axes",
    "iter_tiles",
    "tile_shape_for_budget",
]
