"""Zeiss CZI files (via :mod:`czifile`): the stage-placed image, or its mosaic tiles and positions.

- :func:`read_czi` backs :func:`cytolens.io.imread` for ``.czi``: the whole
  scene with every tile placed at its stage position (as the microscope
  software shows it), with the axes and pixel sizes of the file.
- :func:`read_czi_tiles` returns the tiles of a mosaic separately with their
  stage positions in pixels, the input of :func:`cytolens.register.stitch`.

``czifile`` is imported only here, on first use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cytolens.core.errors import FileFormatError, MissingFileError
from cytolens.io.formats import RawImage, check_dtype, read_errors, want_lazy

__all__ = ["CziTiles", "read_czi", "read_czi_tiles"]

# czifile's axis letters -> OME letters; "0" is the samples-per-pixel axis (RGB)
_KEEP = {"T": "T", "C": "C", "Z": "Z", "Y": "Y", "X": "X", "0": "C"}


@dataclass
class CziTiles:
    """The tiles of a CZI mosaic with their stage positions.

    Attributes
    ----------
    tiles : list of numpy.ndarray
        One array per tile, axes :attr:`axes` (singleton axes dropped).
    positions : numpy.ndarray
        ``(n_tiles, ndim)`` stage position of each tile's first pixel, in
        pixels of the file, one column per spatial axis of :attr:`axes`.
    axes : str
        Axes of every tile, e.g. ``"YX"`` or ``"ZYX"``.
    pixel_size_um : dict of str to float
        Pixel size per spatial axis, micrometres.
    path : pathlib.Path
    """

    tiles: list[np.ndarray]
    positions: np.ndarray
    axes: str
    pixel_size_um: dict[str, float] = field(default_factory=dict)
    path: Path | None = None


def _open(path: str | os.PathLike[str]) -> tuple[Any, Path]:
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file")
    import czifile

    with read_errors(path):
        return czifile.CziFile(str(path)), path


def _pixel_sizes(czi: Any) -> dict[str, float]:
    """Pixel sizes from ``Metadata/Scaling/Items/Distance`` (metres in the file)."""
    sizes: dict[str, float] = {}
    try:
        items = czi.metadata(raw=False)["ImageDocument"]["Metadata"]["Scaling"]["Items"]["Distance"]
    except (KeyError, TypeError, ValueError):
        return sizes
    for item in items if isinstance(items, list) else [items]:
        axis, value = item.get("Id"), item.get("Value")
        if axis in ("X", "Y", "Z") and isinstance(value, (int, float)) and value > 0:
            sizes[axis] = float(value) * 1e6
    return sizes


def read_czi(path: Path, *, lazy: bool | None, lazy_threshold_mb: float) -> RawImage:
    """Read a CZI file as one image with its tiles at their stage positions.

    The decoded image is always read into memory (``czifile`` has no lazy
    reader); ``lazy=True`` wraps it in a Dask array.
    """
    czi, path = _open(path)
    with czi, read_errors(path):
        data = czi.asarray()
        file_axes = czi.axes
        sizes = _pixel_sizes(czi)
    check_dtype(data.dtype, path)
    keep = [i for i, a in enumerate(file_axes) if a in _KEEP and (a in "YX" or data.shape[i] > 1)]
    drop = tuple(i for i in range(data.ndim) if i not in keep)
    if any(data.shape[i] > 1 for i in drop):
        raise FileFormatError(
            f"{path}: CZI axes {file_axes!r} with shape {data.shape}; cytolens reads scenes, "
            "views, rotations and phases only when there is one of each"
        )
    data = data.reshape(tuple(data.shape[i] for i in keep))
    axes = "".join(_KEEP[file_axes[i]] for i in keep)
    if want_lazy(data.nbytes, lazy, lazy_threshold_mb):
        import dask.array as da

        data = da.from_array(data)
    sizes = {a: s for a, s in sizes.items() if a in axes}
    return RawImage(data, axes, sizes, None, {"format": "czi", "file_axes": file_axes})


def read_czi_tiles(path: str | os.PathLike[str]) -> CziTiles:
    """Read the tiles of a CZI mosaic separately, with their stage positions in pixels.

    Parameters
    ----------
    path : str or path-like
        A ``.czi`` file acquired as a mosaic (its subblocks carry the ``M``
        tile index); a file of one subblock gives one tile.

    Returns
    -------
    CziTiles

    Raises
    ------
    MissingFileError, FileFormatError
        For a missing or unreadable file, or tiles whose non-spatial axes
        (channels, time points) differ.
    """
    czi, path = _open(path)
    tiles, positions, axes_seen = [], [], set()
    with czi, read_errors(path):
        sizes = _pixel_sizes(czi)
        for entry in czi.filtered_subblock_directory:
            block = entry.data_segment()
            data = block.data()
            file_axes = entry.axes
            keep = [
                i
                for i, a in enumerate(file_axes)
                if a in _KEEP and (a in "YX" or data.shape[i] > 1)
            ]
            tile = data.reshape(tuple(data.shape[i] for i in keep))
            axes = "".join(_KEEP[file_axes[i]] for i in keep)
            axes_seen.add(axes)
            spatial = [i for i in keep if file_axes[i] in "ZYX"]
            start = [entry.start[i] - czi.start[i] for i in spatial]
            tiles.append(np.ascontiguousarray(tile))
            positions.append(start)
    if len(axes_seen) != 1:
        raise FileFormatError(f"{path}: CZI tiles with different axes {sorted(axes_seen)}")
    axes = axes_seen.pop()
    shapes = {t.shape for t in tiles}
    if len({len(s) for s in shapes}) != 1:
        raise FileFormatError(f"{path}: CZI tiles of different dimensionality {sorted(shapes)}")
    sizes = {a: s for a, s in sizes.items() if a in axes}
    return CziTiles(tiles, np.asarray(positions, dtype=np.float64), axes, sizes, path)
