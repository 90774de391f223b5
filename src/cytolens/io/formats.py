"""What every reader and writer shares: format detection, units, errors, laziness.

A file's format is decided by its suffix (``.tif``, ``.ome.tif``, ``.png``,
``.jpg``, ``.ome.zarr``, ...) and then checked against its first bytes, so a
TIFF saved under a ``.png`` name (it happens: BBBC006) is still read correctly
and a file of garbage fails with a one-line :class:`FileFormatError`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cytolens.core.errors import CytolensError, FileFormatError, InputError, MissingFileError

__all__ = [
    "MIB",
    "READ_SUFFIXES",
    "WRITE_SUFFIXES",
    "RawImage",
    "check_dtype",
    "length_to_um",
    "read_errors",
    "read_format",
    "want_lazy",
    "write_format",
]

logger = logging.getLogger(__name__)

#: One mebibyte; ``lazy_threshold_mb`` and ``size_mb`` count in these.
MIB = 2**20

#: Suffixes :func:`cytolens.io.imread` accepts, longest first, with their format.
READ_SUFFIXES: dict[str, str] = {
    ".ome.tiff": "tiff",
    ".ome.tif": "tiff",
    ".ome.zarr": "ome-zarr",
    ".tiff": "tiff",
    ".tif": "tiff",
    ".btf": "tiff",
    ".png": "png",
    ".jpeg": "jpeg",
    ".jpg": "jpeg",
    ".zarr": "ome-zarr",
    ".czi": "czi",
}

#: Suffixes :func:`cytolens.io.imwrite` accepts, longest first, with their format.
WRITE_SUFFIXES: dict[str, str] = {
    ".ome.tiff": "ome-tiff",
    ".ome.tif": "ome-tiff",
    ".ome.zarr": "ome-zarr",
    ".tiff": "tiff",
    ".tif": "tiff",
    ".png": "png",
    ".zarr": "ome-zarr",
}

_MAGIC = {
    b"II*\x00": "tiff",
    b"MM\x00*": "tiff",
    b"II+\x00": "tiff",  # BigTIFF
    b"MM\x00+": "tiff",
    b"\x89PNG": "png",
    b"\xff\xd8\xff": "jpeg",
    b"ZISRAWFI": "czi",  # Zeiss CZI, read by cytolens.io.czi
}

#: Micrometres per unit, keyed by lower-case unit names found in OME, ImageJ and NGFF.
_UM_PER_UNIT = {
    "um": 1.0,
    "\u00b5m": 1.0,  # micro sign
    "\u03bcm": 1.0,  # Greek mu
    "\\u00b5m": 1.0,  # ImageJ writes the escape literally
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "nanometre": 1e-3,
    "mm": 1e3,
    "millimeter": 1e3,
    "millimetre": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "centimetre": 1e4,
    "m": 1e6,
    "meter": 1e6,
    "metre": 1e6,
    "\u00e5": 1e-4,  # lower-case of the Angstrom sign
    "angstrom": 1e-4,
    "pm": 1e-6,
    "picometer": 1e-6,
}


@dataclass
class RawImage:
    """What a format reader found, before :func:`cytolens.io.imread` builds the Image.

    ``axes`` is ``None`` when the file does not say and no safe guess exists.
    """

    data: Any
    axes: str | None
    pixel_size_um: dict[str, float] = field(default_factory=dict)
    channel_names: tuple[str, ...] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def _match_suffix(path: Path, table: dict[str, str]) -> str | None:
    name = path.name.lower()
    for suffix, fmt in table.items():
        if name.endswith(suffix):
            return fmt
    return None


def read_format(path: str | Path) -> str:
    """Return the format of an existing file or folder: ``tiff``, ``png``, ``jpeg`` or ``ome-zarr``.

    Raises
    ------
    MissingFileError
        When ``path`` does not exist.
    FileFormatError
        For an unknown suffix, an empty file, or content that is none of the
        supported formats.

    Examples
    --------
    >>> import tempfile, numpy as np, tifffile
    >>> path = Path(tempfile.mkdtemp()) / "a.png"
    >>> tifffile.imwrite(path, np.zeros((4, 4), np.uint16))  # a TIFF in disguise
    >>> read_format(path)
    'tiff'
    """
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{path}: no such file or folder")
    by_suffix = _match_suffix(path, READ_SUFFIXES)
    if path.is_dir():
        if by_suffix == "ome-zarr" or any(
            (path / name).is_file() for name in ("zarr.json", ".zattrs", ".zgroup")
        ):
            return "ome-zarr"
        raise FileFormatError(
            f"{path} is a folder, not an image; use an .ome.zarr store, or read_ctc() for "
            "a Cell Tracking Challenge folder"
        )
    if by_suffix is None:
        raise FileFormatError(
            f"{path}: unknown image suffix {''.join(path.suffixes) or '(none)'!r}; "
            f"expected one of {', '.join(sorted(set(READ_SUFFIXES)))}"
        )
    if by_suffix == "ome-zarr":
        raise FileFormatError(f"{path} is a file, but an OME-Zarr store is a folder")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if not head:
        raise FileFormatError(f"{path} is empty (0 bytes)")
    sniffed = next((fmt for magic, fmt in _MAGIC.items() if head.startswith(magic)), None)
    if sniffed is None:
        raise FileFormatError(
            f"{path} is not a valid {by_suffix.upper()} file (it starts with bytes {head!r})"
        )
    if sniffed != by_suffix:
        logger.info("%s holds %s data despite its suffix; reading it as %s", path, sniffed, sniffed)
    return sniffed


def write_format(path: str | Path) -> str:
    """Return the format :func:`cytolens.io.imwrite` uses for ``path``, from its suffix.

    Examples
    --------
    >>> write_format("out/stack.ome.tif"), write_format("out/stack.tif")
    ('ome-tiff', 'tiff')
    """
    path = Path(path)
    fmt = _match_suffix(path, WRITE_SUFFIXES)
    if fmt is None:
        raise FileFormatError(
            f"{path}: cannot write suffix {''.join(path.suffixes) or '(none)'!r}; expected one "
            f"of {', '.join(sorted(set(WRITE_SUFFIXES)))}"
        )
    return fmt


@contextmanager
def read_errors(path: Path) -> Iterator[None]:
    """Turn any library exception raised while reading ``path`` into a one-line FileFormatError.

    Cytolens' own errors pass through unchanged.

    Examples
    --------
    >>> with read_errors(Path("a.tif")):
    ...     raise ValueError("bad")
    Traceback (most recent call last):
    ...
    cytolens.core.errors.FileFormatError: cannot read a.tif (truncated or corrupt?): ValueError: bad
    """
    try:
        yield
    except CytolensError:
        raise
    except MemoryError:
        raise InputError(
            f"{path} does not fit in memory; read it with lazy=True to get a Dask array"
        ) from None
    except Exception as exc:
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise FileFormatError(
            f"cannot read {path} (truncated or corrupt?): {type(exc).__name__}: {cause}"
        ) from None


def check_dtype(dtype: Any, path: Path) -> np.dtype:
    """Return ``dtype`` if cytolens supports it (bool, integers, floats), else raise InputError."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf":
        raise InputError(
            f"{path} holds pixels of dtype {dtype}, which cytolens does not support; "
            "expected bool, integer or float"
        )
    return dtype


def check_like(
    data: np.ndarray, path: Path, shape: tuple[int, ...], dtype: Any, first: Path
) -> np.ndarray:
    """Return ``data`` read from ``path`` if it has the ``shape`` and ``dtype`` of ``first``.

    For series of files read as one image (one file per plane or frame).

    Examples
    --------
    >>> check_like(np.zeros((2, 2)), Path("b.tif"), (2, 2), "float64", Path("a.tif")).shape
    (2, 2)
    """
    if data.shape != tuple(shape) or data.dtype != np.dtype(dtype):
        raise FileFormatError(
            f"{path} has shape {data.shape} and dtype {data.dtype}; the first file of the "
            f"series ({first.name}) has {tuple(shape)} and {np.dtype(dtype)}"
        )
    return data


def want_lazy(nbytes: int, lazy: bool | None, lazy_threshold_mb: float) -> bool:
    """Decide whether to return a Dask array: forced by ``lazy``, else by decoded size.

    Examples
    --------
    >>> want_lazy(600 * MIB, None, 512), want_lazy(600 * MIB, False, 512)
    (True, False)
    """
    if lazy is not None:
        return bool(lazy)
    return nbytes > lazy_threshold_mb * MIB


def length_to_um(value: Any, unit: str | None) -> float | None:
    """Convert a physical length to micrometres; ``None`` for unknown units or bad values.

    Examples
    --------
    >>> length_to_um(250, "nm"), length_to_um(0.5, "micron"), length_to_um(1, "pixel")
    (0.25, 0.5, None)
    """
    if unit is None:
        return None
    factor = _UM_PER_UNIT.get(str(unit).strip().lower())
    try:
        size = float(value) * factor if factor is not None else None
    except (TypeError, ValueError):
        return None
    if size is None or not np.isfinite(size) or size <= 0:
        return None
    return size
