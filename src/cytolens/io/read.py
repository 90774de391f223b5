"""``imread``: one entry point for TIFF, OME-TIFF, ImageJ TIFF, PNG, JPEG and OME-Zarr."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cytolens.core.axes import check_axes
from cytolens.core.errors import AxesError
from cytolens.core.image import Image
from cytolens.io.formats import RawImage, read_format
from cytolens.io.ngff import read_ngff
from cytolens.io.png_jpeg import read_png_jpeg
from cytolens.io.tiff import read_tiff

__all__ = ["imread"]

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
    else:
        raw = read_png_jpeg(path, fmt, lazy=lazy, lazy_threshold_mb=lazy_threshold_mb)
    image = _to_image(raw, path, axes)
    logger.debug("read %r", image)
    return image


def _to_image(raw: RawImage, path: Path, axes: str | None) -> Image:
    """Build the Image, applying a user's ``axes`` and keeping the metadata that still fits."""
    shape = tuple(raw.data.shape)
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
