"""TIFF, ImageJ TIFF and OME-TIFF through tifffile.

Reading maps tifffile's axis letters to OME letters (``S`` samples become
``C``; unnamed ``I``/``Q`` dimensions become ``Z``, then ``T``, then ``C``) and
takes pixel sizes from OME ``PhysicalSize*``, from ImageJ's resolution tags and
``spacing`` when its unit is a length, or from the description cytolens itself
writes. Writing picks the most widely readable variant: an ImageJ hyperstack
for ``.tif`` when ImageJ can hold the dtype (uint8, uint16, float32), else a
tifffile "shaped" TIFF; an OME-TIFF for ``.ome.tif``. Dask arrays are written
one chunk-row at a time.
"""

from __future__ import annotations

import logging
import math
import threading
import weakref
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from cytolens.core.axes import move_axes
from cytolens.core.errors import FileFormatError, InputError
from cytolens.core.image import Image
from cytolens.core.validate import is_dask
from cytolens.io.formats import RawImage, check_dtype, length_to_um, read_errors, want_lazy

__all__ = ["ome_axes_from_tiff", "read_tiff", "strict_tifffile", "write_tiff"]

logger = logging.getLogger(__name__)

#: tifffile letters with a direct OME meaning.
_TIFF_TO_OME = {"T": "T", "C": "C", "Z": "Z", "Y": "Y", "X": "X", "S": "C"}
#: Letters given to unnamed dimensions, by preference (a plain stack is most often Z).
_UNNAMED_PREFERENCE = "ZTC"
#: dtypes ImageJ can open (8-bit, 16-bit, 32-bit float).
_IMAGEJ_DTYPES = (np.dtype("uint8"), np.dtype("uint16"), np.dtype("float32"))
_COMPRESSION = {
    None: None,
    "none": None,
    "zlib": "zlib",
    "deflate": "zlib",
    "lzw": "lzw",
    "zstd": "zstd",
    "lzma": "lzma",
    "packbits": "packbits",
}
_IMAGEJ_COMPRESSION = (None, "zlib", "lzw", "packbits")
_BIGTIFF_BYTES = 2**32 - 2**25


def ome_axes_from_tiff(tiff_axes: str) -> str | None:
    """Map tifffile's axis letters to OME letters, or ``None`` when that is ambiguous.

    Examples
    --------
    >>> ome_axes_from_tiff("YXS"), ome_axes_from_tiff("IYX"), ome_axes_from_tiff("QQYX")
    ('YXC', 'ZYX', 'TZYX')
    """
    letters: list[str | None] = [_TIFF_TO_OME.get(a) for a in tiff_axes]
    if "S" in tiff_axes and "C" in tiff_axes:  # samples beside channels: S is unnamed
        letters[tiff_axes.index("S")] = None
    known = [a for a in letters if a is not None]
    if len(known) != len(set(known)):
        return None
    unnamed = [i for i, a in enumerate(letters) if a is None]
    free = [a for a in _UNNAMED_PREFERENCE if a not in known][: len(unnamed)]
    if len(free) < len(unnamed):
        return None
    for i, letter in zip(unnamed, sorted(free, key="TCZ".index), strict=True):
        letters[i] = letter
    return "".join(letters)  # type: ignore[arg-type]


def _ome_xml_metadata(xml: str, path: Path) -> tuple[dict[str, float], tuple[str, ...] | None]:
    """Pixel sizes (um) and channel names of the first OME Image."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        logger.warning("%s: unreadable OME-XML (%s); ignoring its metadata", path, exc)
        return {}, None
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return {}, None
    sizes = {}
    for ax in "ZYX":
        value = pixels.get(f"PhysicalSize{ax}")
        size = length_to_um(value, pixels.get(f"PhysicalSize{ax}Unit", "µm"))
        if size is not None:
            sizes[ax] = size
    names = [el.get("Name") for el in pixels if el.tag.rsplit("}", 1)[-1] == "Channel"]
    if names and all(n is not None for n in names):
        return sizes, tuple(str(n) for n in names)
    return sizes, None


def _imagej_metadata(
    tif: tifffile.TiffFile, shape: tuple[int, ...], tiff_axes: str
) -> tuple[dict[str, float], tuple[str, ...] | None]:
    """Pixel sizes from resolution tags + spacing, channel names from slice labels."""
    meta = tif.imagej_metadata or {}
    unit = meta.get("unit")
    units = {"X": unit, "Y": meta.get("yunit", unit), "Z": meta.get("zunit", unit)}
    sizes = {}
    page = tif.pages[0]
    for ax, tag_name in (("X", "XResolution"), ("Y", "YResolution")):
        tag = page.tags.get(tag_name)
        if tag is not None and tag.value[0] > 0:
            size = length_to_um(tag.value[1] / tag.value[0], units[ax])
            if size is not None:
                sizes[ax] = size
    if "spacing" in meta:
        size = length_to_um(meta["spacing"], units["Z"])
        if size is not None:
            sizes["Z"] = size
    labels = meta.get("Labels")
    if isinstance(labels, str):  # a single plane's label
        labels = [labels]
    n_c = shape[tiff_axes.index("C")] if "C" in tiff_axes else 1
    n_planes = math.prod(s for s, a in zip(shape, tiff_axes, strict=True) if a not in "YXS")
    names = None
    if (
        isinstance(labels, list | tuple)
        and "S" not in tiff_axes
        and len(labels) == n_planes
        and all(labels[i] == labels[i % n_c] for i in range(n_planes))
    ):
        names = tuple(str(n) for n in labels[:n_c])
    return sizes, names


def _shaped_metadata(tif: tifffile.TiffFile) -> tuple[dict[str, float], tuple[str, ...] | None]:
    """Pixel sizes and channel names that cytolens stores in a shaped TIFF's description."""
    meta = tif.shaped_metadata[0] if tif.shaped_metadata else {}
    sizes = {
        str(k): float(v)
        for k, v in dict(meta.get("pixel_size_um") or {}).items()
        if str(k) in "ZYX" and float(v) > 0
    }
    names = meta.get("channel_names")
    return sizes, (tuple(str(n) for n in names) if names else None)


class _ErrorLog(logging.Handler):
    """Collects the errors tifffile logs (and otherwise tolerates) in this thread."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


@contextmanager
def strict_tifffile(path: Path) -> Iterator[None]:
    """Raise FileFormatError when tifffile logs an error while reading ``path``.

    tifffile reads past a broken page chain or corrupt ImageJ metadata with a
    logged error and returns fewer planes; a truncated file must fail instead.
    (This relies on tifffile's log records reaching its logger: an application
    that calls ``logging.disable`` turns the check off.)

    Examples
    --------
    >>> with strict_tifffile(Path("a.tif")):
    ...     logging.getLogger("tifffile").error("bad offset")
    Traceback (most recent call last):
    ...
    cytolens.core.errors.FileFormatError: cannot read a.tif (truncated or corrupt?): bad offset
    """
    handler = _ErrorLog()
    tiff_logger = logging.getLogger("tifffile")
    tiff_logger.addHandler(handler)
    propagate, tiff_logger.propagate = tiff_logger.propagate, False  # reported once, by us
    try:
        yield
    finally:
        tiff_logger.removeHandler(handler)
        tiff_logger.propagate = propagate
    if handler.messages:
        raise FileFormatError(f"cannot read {path} (truncated or corrupt?): {handler.messages[0]}")


def _lazy_tiff(path: Path) -> Any:
    """A Dask array over series 0 (level 0) through tifffile's Zarr store.

    The file stays open while the store lives and is closed when it is
    garbage-collected (no leaked handle once the Dask array is gone).
    """
    import dask.array as da
    import zarr

    tif = tifffile.TiffFile(path)
    store = tif.series[0].aszarr(level=0)
    weakref.finalize(store, tif.close)
    return da.from_zarr(zarr.open_array(store, mode="r"), chunks="auto")


def _check_complete(series: Any, path: Path) -> None:
    """Raise FileFormatError if a page's pixel data reaches past the end of the file."""
    size = path.stat().st_size
    for page in series.pages:
        if page is None:
            continue
        ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=False)]
        if not ends or max(ends) > size:
            raise FileFormatError(
                f"cannot read {path} (truncated?): its pixel data should reach byte "
                f"{max(ends, default=0):,} but the file has {size:,} bytes"
            )
        needed = math.prod(page.shape) * np.dtype(page.dtype).itemsize
        if page.compression == 1 and sum(page.databytecounts) < needed:
            raise FileFormatError(
                f"cannot read {path} (corrupt header?): a page of shape {page.shape} needs "
                f"{needed:,} bytes but holds {sum(page.databytecounts):,}"
            )


def read_tiff(path: Path, *, lazy: bool | None, lazy_threshold_mb: float) -> RawImage:
    """Read series 0 of a TIFF, ImageJ TIFF or OME-TIFF.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "a.tif"
    >>> tifffile.imwrite(path, np.zeros((5, 8, 8), np.uint16), photometric="minisblack")
    >>> raw = read_tiff(path, lazy=False, lazy_threshold_mb=512)
    >>> raw.axes, raw.data.shape
    ('ZYX', (5, 8, 8))
    """
    with read_errors(path), strict_tifffile(path), tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise FileFormatError(f"{path} holds no image data")
        series = tif.series[0]
        for flag in ("ome", "imagej", "shaped"):
            if getattr(tif, f"is_{flag}") and series.kind.lower() != flag:
                # tifffile fell back to reading fewer planes than the metadata promises
                raise FileFormatError(
                    f"cannot read {path} (truncated or corrupt?): its {flag} metadata does "
                    "not match the pages in the file"
                )
        shape, tiff_axes = tuple(int(s) for s in series.shape), series.axes
        dtype = check_dtype(series.dtype, path)
        if tif.is_ome:
            fmt = "ome-tiff"
            sizes, names = _ome_xml_metadata(tif.ome_metadata or "", path)
        elif tif.is_imagej:
            fmt = "imagej-tiff"
            sizes, names = _imagej_metadata(tif, shape, tiff_axes)
        elif tif.is_shaped:
            fmt = "tiff"
            sizes, names = _shaped_metadata(tif)
        else:
            fmt, sizes, names = "tiff", {}, None
        metadata = {
            "format": fmt,
            "file_axes": tiff_axes,
            "compression": series.keyframe.compression.name.lower(),
            "n_series": len(tif.series),
        }
        if want_lazy(math.prod(shape) * dtype.itemsize, lazy, lazy_threshold_mb):
            _check_complete(series, path)  # a lazy read would fail only when computed
            data = _lazy_tiff(path)
        else:
            data = series.asarray()
    axes = ome_axes_from_tiff(tiff_axes)
    if axes is not None and axes != tiff_axes.replace("S", "C"):
        logger.info(
            "%s: tifffile axes %r read as %r; pass axes= to override", path, tiff_axes, axes
        )
    return RawImage(data, axes, sizes, names, metadata)


def _file_layout(image: Image, *, imagej: bool) -> tuple[str, tuple[int, ...]]:
    """The tifffile axes to store and the permutation taking the image there.

    Uint8 ``...YXC`` images with 3 unnamed channels are stored as RGB samples;
    everything else in ImageJ (``TZCYX``) or OME (``TCZYX``) order.
    """
    axes = image.axes
    if "Y" not in axes or "X" not in axes:
        raise InputError(f"a TIFF needs Y and X axes; the image has axes {axes!r}")
    rgb = (
        axes.endswith("C")
        and image.sizes["C"] == 3
        and image.dtype == np.uint8
        and image.channel_names is None
    )
    order = "TZCYX" if imagej else "TCZYX"
    if rgb:
        target = "".join(a for a in order if a in axes and a != "C") + "C"
        return target[:-1] + "S", move_axes(axes, target)
    target = "".join(a for a in order if a in axes)
    return target, move_axes(axes, target)


def _planes(data: Any, n_lead: int) -> Iterator[np.ndarray]:
    """Yield the 2D pages of a Dask array, computing one chunk-row of axis 0 at a time."""
    if n_lead == 0:
        yield np.asarray(data.compute())
        return
    stop = 0
    for size in data.chunks[0]:
        start, stop = stop, stop + size
        block = np.asarray(data[start:stop].compute())
        yield from block.reshape(-1, *block.shape[n_lead:])


def write_tiff(path: Path, image: Image, *, ome: bool, compression: str | None) -> None:
    """Write ``image`` to ``path`` as ImageJ/shaped TIFF or, with ``ome=True``, OME-TIFF.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "a.tif"
    >>> write_tiff(path, Image(np.zeros((2, 8, 8), np.uint8), "CYX"), ome=False, compression="zlib")
    >>> with tifffile.TiffFile(path) as tif:
    ...     tif.is_imagej
    True
    """
    if compression not in _COMPRESSION:
        raise InputError(
            f"unknown TIFF compression {compression!r}; expected one of "
            f"{', '.join(str(c) for c in _COMPRESSION)}"
        )
    codec = _COMPRESSION[compression]
    imagej = not ome and image.dtype in _IMAGEJ_DTYPES
    file_axes, perm = _file_layout(image, imagej=imagej)
    data = image.data.transpose(perm)
    sizes, names = image.pixel_size_um, image.channel_names
    kwargs: dict[str, Any] = {
        "compression": codec,
        "photometric": "rgb" if file_axes.endswith("S") else "minisblack",
    }
    if imagej:
        if codec not in _IMAGEJ_COMPRESSION:
            logger.warning("ImageJ cannot read %s-compressed TIFFs (writing %s)", codec, path.name)
        meta: dict[str, Any] = {"axes": file_axes}
        if sizes:  # ImageJ calibrates X, Y, Z with one unit each; "pixel" = uncalibrated
            units = {ax: "um" if ax in sizes else "pixel" for ax in "XYZ" if ax in file_axes}
            meta["unit"] = units["X"]
            meta.update({f"{a.lower()}unit": u for a, u in units.items() if u != units["X"]})
            kwargs["resolution"] = (1 / sizes.get("X", 1.0), 1 / sizes.get("Y", 1.0))
        if "Z" in sizes:
            meta["spacing"] = sizes["Z"]
        if names:
            n_planes = math.prod(
                s for s, a in zip(data.shape, file_axes, strict=True) if a != "Y" and a != "X"
            )
            meta["Labels"] = [names[i % len(names)] for i in range(n_planes)]
        kwargs.update(imagej=True, metadata=meta)
    elif ome:
        meta = {"axes": file_axes}
        for ax, size in sizes.items():
            meta[f"PhysicalSize{ax}"] = size
            meta[f"PhysicalSize{ax}Unit"] = "µm"
        if names:
            meta["Channel"] = {"Name": list(names)}
        kwargs.update(ome=True, metadata=meta)
    else:
        meta = {"axes": file_axes, "pixel_size_um": dict(sizes)}
        if names:
            meta["channel_names"] = list(names)
        kwargs["metadata"] = meta
    if not imagej and data.size * data.dtype.itemsize > _BIGTIFF_BYTES:
        kwargs["bigtiff"] = True
    if is_dask(data):
        n_lead = data.ndim - (3 if file_axes.endswith("S") else 2)
        kwargs.update(shape=data.shape, dtype=data.dtype)
        data = _planes(data, n_lead)
    tifffile.imwrite(path, data, **kwargs)
