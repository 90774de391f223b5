"""``imread``: one entry point for TIFF, OME-TIFF, ImageJ TIFF, PNG, JPEG and OME-Zarr."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from cytolens.core.axes import check_axes
from cytolens.core.errors import AxesError, FileFormatError, InputError
from cytolens.core.image import Image
from cytolens.io.formats import RawImage, check_like, read_format, want_lazy
from cytolens.io.ngff import read_ngff
from cytolens.io.png_jpeg import read_png_jpeg
from cytolens.io.tiff import read_tiff

__all__ = ["imread", "imread_stack"]

logger = logging.getLogger(__name__)


def imread(
    path: str | os.PathLike[str],
    *,
    axes: str | None = None,
    lazy: bool | None = None,
    lazy_threshold_mb: float = 512,
) -> Image:
    """Read an image file with its axes, pixel sizes and channel names.

    Parameters
    ----------
    path : str or path-like
        A ``.tif``/``.tiff`` (plain, ImageJ or OME-TIFF: series 0 is read),
        ``.png``, ``.jpg``/``.jpeg`` file or an ``.ome.zarr``/``.zarr`` folder
        (level 0 of the first multiscale image). The suffix must be one of
        these; the content is checked, so a TIFF named ``.png`` is read as TIFF.
    axes : str, optional
        Override the axes read from the file (one OME letter per dimension,
        e.g. ``"TYX"``). Pixel sizes and channel names are kept where the
        letters of the file and of ``axes`` agree position by position.
    lazy : bool, optional
        ``True`` returns a Dask array (chunks read on demand), ``False`` a
        numpy array; ``None`` chooses Dask when the decoded data are larger
        than ``lazy_threshold_mb``.
    lazy_threshold_mb : float
        Size in MiB of the decoded pixels above which ``lazy=None`` gives Dask.

    Returns
    -------
    Image
        ``data`` (never rescaled), ``axes`` in the file's order (TIFF ``S``
        samples become ``C``, unnamed stack dimensions ``Z`` then ``T``),
        ``pixel_size_um`` for the spatial axes the file states in a length
        unit, ``channel_names`` when stored, ``path`` and ``metadata``
        (``format``, compression, file axes, ...).

    Raises
    ------
    MissingFileError
        When ``path`` does not exist.
    FileFormatError
        For an unknown suffix, or a file that is not what its suffix says,
        truncated or corrupt (with a lazy read, corruption inside the pixel
        data only shows when the chunk is computed).
    InputError
        For pixel types cytolens does not handle (complex, ...).
    AxesError
        When ``axes`` does not match the data, or the file's axes cannot be
        told and ``axes`` was not given.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from cytolens.io import imwrite
    >>> path = Path(tempfile.mkdtemp()) / "stack.ome.tif"
    >>> _ = imwrite(path, np.zeros((5, 32, 32), np.uint16), axes="ZYX",
    ...             pixel_size_um={"Z": 2.0, "Y": 0.5, "X": 0.5})
    >>> img = imread(path)
    >>> img.axes, img.shape, img.pixel_size_um
    ('ZYX', (5, 32, 32), {'Z': 2.0, 'Y': 0.5, 'X': 0.5})
    >>> imread(path, lazy=True).is_lazy
    True
    """
    path = Path(path)
    fmt = read_format(path)
    if fmt == "tiff":
        raw = read_tiff(path, lazy=lazy, lazy_threshold_mb=lazy_threshold_mb)
    elif fmt == "ome-zarr":
        raw = read_ngff(path, lazy=lazy, lazy_threshold_mb=lazy_threshold_mb)
    elif fmt == "czi":
        from cytolens.io.czi import read_czi

        raw = read_czi(path, lazy=lazy, lazy_threshold_mb=lazy_threshold_mb)
    else:
        raw = read_png_jpeg(path, fmt, lazy=lazy, lazy_threshold_mb=lazy_threshold_mb)
    image = _to_image(raw, path, axes)
    logger.debug("read %r", image)
    return image


def _to_image(raw: RawImage, path: Path, axes: str | None) -> Image:
    """Build the Image, applying a user's ``axes`` and keeping the metadata that still fits."""
    shape = tuple(raw.data.shape)
    if 0 in shape:
        raise FileFormatError(f"{path} holds an empty image (shape {shape}); corrupt header?")
    sizes, names = raw.pixel_size_um, raw.channel_names
    if axes is not None:
        try:
            final = check_axes(axes, shape)
        except AxesError as exc:
            raise AxesError(f"{path}: {exc}") from None
        if raw.axes is None:
            sizes = {}
        else:  # keep what sits at the same position under the same letter
            sizes = {
                final[i]: sizes[a] for i, a in enumerate(raw.axes) if a in sizes and final[i] == a
            }
            if ("C" in raw.axes or "C" in final) and raw.axes.find("C") != final.find("C"):
                names = None
    elif raw.axes is None:
        raise AxesError(
            f"{path}: cannot tell the axes of its {len(shape)}-D data (file axes "
            f"{raw.metadata.get('file_axes')!r}, shape {shape}); pass axes=, e.g. axes='TZYX'"
        )
    else:
        final = raw.axes
    sizes = {a: s for a, s in sizes.items() if a in final}
    n_c = shape[final.index("C")] if "C" in final else 1
    if names is not None and len(names) != n_c:
        logger.debug("%s: %d channel names for %d channels; dropped", path, len(names), n_c)
        names = None
    return Image(raw.data, final, sizes, names, path, raw.metadata)


def _read_like(path: Path, shape: tuple[int, ...], dtype: Any, first: Path) -> np.ndarray:
    return check_like(np.asarray(imread(path, lazy=False).data), path, shape, dtype, first)


def imread_stack(
    paths: Iterable[str | os.PathLike[str]],
    *,
    axis: str = "Z",
    lazy: bool | None = None,
    lazy_threshold_mb: float = 512,
) -> Image:
    """Read one file per plane (or time point) as a single image with a new first axis.

    Many acquisition programs save a z-stack or a time series as one file per
    plane; this stacks them in the order given (see
    :func:`~cytolens.io.find_images` for folders and patterns in natural order).

    Parameters
    ----------
    paths : iterable of str or path-like
        The files, one per position along ``axis``. Every file must have the
        shape, dtype and axes of the first.
    axis : {"Z", "T", "C"}
        The new axis; the files must not have it already.
    lazy : bool, optional
        ``True`` returns a Dask array that reads each file when its plane is
        computed, ``False`` reads all now; ``None`` chooses Dask when the stack
        is larger than ``lazy_threshold_mb``.
    lazy_threshold_mb : float
        Size in MiB of the decoded stack above which ``lazy=None`` gives Dask.

    Returns
    -------
    Image
        Axes ``axis`` + the first file's axes; pixel sizes and channel names
        of the first file; ``path`` is the first file's folder and
        ``metadata["files"]`` lists the files.

    Raises
    ------
    InputError
        For no files, or an ``axis`` the files already have.
    FileFormatError
        For a file whose shape or dtype differs from the first (named; with a
        lazy read, when its plane is computed).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from cytolens.io import imwrite
    >>> folder = Path(tempfile.mkdtemp())
    >>> files = [imwrite(folder / f"z{k}.tif", np.full((8, 8), k, np.uint8)) for k in range(3)]
    >>> stack = imread_stack(files)
    >>> stack.axes, stack.shape, int(stack.data[2].max())
    ('ZYX', (3, 8, 8), 2)
    """
    files = [Path(p) for p in paths]
    if not files:
        raise InputError("imread_stack needs at least one file")
    axis = check_axes(axis)
    if len(axis) != 1 or axis not in "ZTC":
        raise AxesError(f"axis must be one of 'Z', 'T' or 'C', got {axis!r}")
    first = imread(files[0], lazy=True)
    if axis in first.axes:
        raise AxesError(
            f"{files[0]} already has a {axis} axis (axes {first.axes!r}, shape {first.shape}); "
            f"imread_stack stacks files without one (give single planes, or another axis)"
        )
    shape, dtype = tuple(first.shape), first.data.dtype
    nbytes = len(files) * math.prod(shape) * dtype.itemsize
    if want_lazy(nbytes, lazy, lazy_threshold_mb):
        import dask
        import dask.array as da

        read = dask.delayed(_read_like, pure=True)
        data: Any = da.stack(
            [da.from_delayed(read(p, shape, dtype, files[0]), shape, dtype) for p in files]
        )
    else:
        data = np.stack([_read_like(p, shape, dtype, files[0]) for p in files])
    metadata = {**first.metadata, "files": [str(p) for p in files]}
    return Image(
        data,
        axis + first.axes,
        dict(first.pixel_size_um),
        first.channel_names,
        files[0].parent,
        metadata,
    )
