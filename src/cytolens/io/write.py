"""``imwrite``: atomic writing of TIFF, OME-TIFF, OME-Zarr and PNG."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cytolens.core.axes import check_axes, guess_axes
from cytolens.core.errors import AxesError, InputError, OutputError
from cytolens.core.files import atomic_path, is_zarr_store
from cytolens.core.image import Image
from cytolens.core.validate import check_array
from cytolens.io.formats import write_format
from cytolens.io.ngff import write_ngff
from cytolens.io.png_jpeg import write_png
from cytolens.io.tiff import write_tiff

__all__ = ["imwrite"]

logger = logging.getLogger(__name__)


def imwrite(
    path: str | os.PathLike[str],
    image: Any,
    *,
    axes: str | None = None,
    pixel_size_um: Mapping[str, float] | float | None = None,
    channel_names: Sequence[str] | None = None,
    chunks: int | Sequence[int] | None = None,
    compression: str | None = "default",
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Write an image atomically, in the format its suffix names.

    ``.tif``/``.tiff``: an ImageJ hyperstack (``TZCYX`` order, pixel sizes in
    the resolution tags and ``spacing``, channel names as slice labels) when
    the dtype is uint8, uint16 or float32, else a tifffile TIFF whose
    description holds axes, pixel sizes and channel names. ``.ome.tif``/
    ``.ome.tiff``: OME-TIFF (``TCZYX`` order, ``PhysicalSize*`` in um, channel
    names). ``.ome.zarr``/``.zarr``: OME-NGFF 0.5 (Zarr 3), chunked, with a
    few pyramid levels downsampled in Y and X. ``.png``: ``YX`` uint8/uint16
    or ``YXC`` uint8. Uint8 ``YXC`` images with 3 unnamed channels are stored
    as RGB in TIFFs. Dask arrays are written without loading them whole.

    Parameters
    ----------
    path : str or path-like
        Output file (or folder for OME-Zarr). Written to a temporary sibling
        and renamed, so a failed write leaves nothing under ``path`` and an
        existing ``path`` untouched until the new one is complete.
    image : Image or array_like
        An :class:`~cytolens.core.image.Image`, or a numpy/Dask array.
    axes : str, optional
        Axes of an array (required unless 2D, or 3D where
        :func:`~cytolens.core.axes.guess_axes` can tell). For an Image it must
        be omitted or equal to ``image.axes`` (use ``Image.transpose``).
    pixel_size_um : dict or float, optional
        Pixel sizes by spatial axis, e.g. ``{"Z": 2.0, "Y": 0.1, "X": 0.1}``;
        a single number means Y and X. Replaces those of an Image.
    channel_names : sequence of str, optional
        One name per channel. Replaces those of an Image.
    chunks : int or sequence of int, optional
        OME-Zarr chunk shape in the image's axis order, or one number for Y
        and X (default: 1 along T/C, up to 16 along Z, up to 512 along Y/X).
        Ignored by the other formats.
    compression : str or None
        ``"zlib"``, ``"lzw"``, ``"zstd"``, ``"lzma"``, ``"packbits"`` (TIFF),
        ``"zlib"``, ``"zstd"``, ``"blosc"`` (OME-Zarr), or ``None``. The
        default is zlib for TIFF (readable everywhere) and zstd for OME-Zarr
        (about 4x faster to write than Zarr's gzip). Ignored for PNG.
    provenance : mapping, optional
        How the image was made (JSON-serializable): stored under the
        ``"cytolens"`` key of an OME-Zarr's root attributes; ignored for
        TIFF and PNG (a pipeline's journal records it for every output).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    FileFormatError
        For a suffix that cannot be written.
    InputError
        For an unsupported dtype (complex, ...), an empty array, metadata that
        does not fit the axes, or ``path`` being the file ``image`` was read
        from.
    AxesError
        For axes that do not match the array or cannot be guessed.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from cytolens.io import imread
    >>> folder = Path(tempfile.mkdtemp())
    >>> data = np.arange(2 * 64 * 64, dtype=np.uint16).reshape(2, 64, 64)
    >>> out = imwrite(folder / "cells.ome.zarr", data, axes="CYX", pixel_size_um=0.65,
    ...               channel_names=["dna", "actin"])
    >>> img = imread(out)
    >>> img.axes, img.channel_names, img.pixel_size_um
    ('CYX', ('dna', 'actin'), {'Y': 0.65, 'X': 0.65})
    >>> bool((np.asarray(img) == data).all())
    True
    """
    path = Path(path)
    fmt = write_format(path)
    img = _as_image(path, image, axes, pixel_size_um, channel_names)
    _refuse_input(path, img)
    try:
        # an earlier OME-Zarr of that name may be replaced; any other folder never
        with atomic_path(path, replace_folder=is_zarr_store(path)) as tmp:
            if fmt == "ome-zarr":
                name = path.name.split(".")[0]
                zarr_codec = "zstd" if compression == "default" else compression
                write_ngff(tmp, img, chunks=chunks, compression=zarr_codec, name=name)
                if provenance:
                    import zarr

                    zarr.open_group(str(tmp), mode="r+").attrs["cytolens"] = dict(provenance)
            elif fmt == "png":
                write_png(tmp, img)
            else:
                tiff_codec = "zlib" if compression == "default" else compression
                write_tiff(tmp, img, ome=fmt == "ome-tiff", compression=tiff_codec)
    except OutputError:
        raise
    except InputError as exc:  # the writers' messages do not name the (temporary) file
        raise type(exc)(f"cannot write {path}: {exc}") from None
    logger.info("wrote %s (%s, axes %s, shape %s, %s)", path, fmt, img.axes, img.shape, img.dtype)
    return path


def _pixel_sizes(pixel_size_um: Mapping[str, float] | float | None) -> dict[str, float] | None:
    if pixel_size_um is None:
        return None
    if isinstance(pixel_size_um, Mapping):
        return {str(k).upper(): float(v) for k, v in pixel_size_um.items()}
    return {"Y": float(pixel_size_um), "X": float(pixel_size_um)}


def _as_image(
    path: Path,
    image: Any,
    axes: str | None,
    pixel_size_um: Mapping[str, float] | float | None,
    channel_names: Sequence[str] | None,
) -> Image:
    """The Image to write, with overrides applied; errors name ``path``."""
    sizes = _pixel_sizes(pixel_size_um)
    names = tuple(channel_names) if channel_names is not None else None
    try:
        if isinstance(image, Image):
            if axes is not None and check_axes(axes) != image.axes:
                raise AxesError(
                    f"axes={axes!r} differs from the image's axes {image.axes!r}; reorder "
                    "with image.transpose() or build a new Image to relabel"
                )
            data = check_array(image.data, name="the image", finite=False)
            return Image(
                data,
                image.axes,
                image.pixel_size_um if sizes is None else sizes,
                image.channel_names if names is None else names,
                image.path,
                dict(image.metadata),
            )
        data = check_array(image, name="the image", finite=False)
        final = guess_axes(data.shape) if axes is None else check_axes(axes, data.shape)
        return Image(data, final, sizes or {}, names)
    except InputError as exc:
        raise type(exc)(f"cannot write {path}: {exc}") from None


def _refuse_input(path: Path, image: Image) -> None:
    """Raise InputError when ``path`` is the file (or store) ``image`` was read from."""
    source = image.path
    if source is None or not path.exists():
        return
    try:
        same = os.path.samefile(source, path)
    except OSError:
        same = Path(source).resolve() == path.resolve()
    if same:
        raise InputError(
            f"{path} is the file this image was read from; refusing to overwrite an input, "
            "write to another path"
        )
