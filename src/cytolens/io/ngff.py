"""OME-Zarr (OME-NGFF) images: read level 0 of any version, write NGFF 0.5 with ome-zarr.

Reading understands NGFF 0.1-0.5 (Zarr v2 ``.zattrs`` or Zarr v3 ``zarr.json``
with its ``"ome"`` key) and the bioformats2raw layout (image in group ``0``).
Writing goes through :func:`ome_zarr.writer.write_image` (it works with Zarr
3): axes in canonical ``TCZYX`` order, chunked, a few pyramid levels
downsampled by 2 in Y and X by local mean (nearest for bool), Dask arrays
stored chunk by chunk.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from cytolens.core.axes import AXES, move_axes
from cytolens.core.errors import FileFormatError, InputError
from cytolens.core.image import Image
from cytolens.io.formats import RawImage, check_dtype, length_to_um, read_errors, want_lazy

__all__ = ["default_chunks", "pyramid_factors", "read_ngff", "write_ngff"]

logger = logging.getLogger(__name__)

_TYPE_TO_LETTER = {"time": "T", "channel": "C"}
_COMPRESSION = ("zlib", "gzip", "deflate", "zstd", "blosc", "none", None)
#: Colours given to channels in the ``omero`` metadata (HPA order first: red, green, blue, yellow).
_COLOURS = ("FF0000", "00FF00", "0000FF", "FFFF00", "FF00FF", "00FFFF", "FFFFFF")
#: Smallest Y/X size of a pyramid level, and the most extra levels written.
_MIN_LEVEL_SIZE = 64
_MAX_EXTRA_LEVELS = 4


def _first_multiscale(group: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    attrs = dict(group.attrs)
    ome = attrs.get("ome", attrs)  # NGFF 0.5 nests everything under "ome"
    multiscales = ome.get("multiscales")
    return ome, (multiscales[0] if multiscales else None)


def _find_multiscales(group: Any, path: Path) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Return (group, ome attributes, first multiscale), descending into bioformats2raw's '0'."""
    import zarr

    ome, ms = _first_multiscale(group)
    if ms is None and "0" in group and isinstance(group["0"], zarr.Group):
        group = group["0"]  # bioformats2raw.layout: the image lives in group "0"
        ome, ms = _first_multiscale(group)
    if ms is None:
        raise FileFormatError(
            f"{path} is a Zarr store but not an OME-Zarr image (no 'multiscales' metadata; "
            "plates and label groups are not read by imread)"
        )
    return group, ome, ms


def _axes_and_units(ms: dict[str, Any], ndim: int) -> tuple[str | None, list[str | None]]:
    axes_meta = ms.get("axes")
    if axes_meta is None:  # NGFF 0.1/0.2: always tczyx
        return AXES[-ndim:], [None] * ndim
    letters, units = [], []
    for ax in axes_meta:
        name, kind, unit = (
            (ax.get("name", ""), ax.get("type"), ax.get("unit"))
            if isinstance(ax, dict)
            else (ax, None, None)
        )
        upper = str(name).upper()
        letter = upper if len(upper) == 1 and upper in AXES else _TYPE_TO_LETTER.get(kind)
        letters.append(letter)
        units.append(unit)
    if None in letters or len(set(letters)) != len(letters) or len(letters) != ndim:
        return None, units
    return "".join(letters), units  # type: ignore[arg-type]


def _scale(ms: dict[str, Any], dataset: dict[str, Any], ndim: int) -> list[float]:
    scale = np.ones(ndim)
    for transforms in (
        dataset.get("coordinateTransformations"),
        ms.get("coordinateTransformations"),
    ):
        for tr in transforms or []:
            if tr.get("type") == "scale" and "scale" in tr:
                scale = scale * np.asarray(tr["scale"], dtype=float)
    return [float(s) for s in scale]


def read_ngff(path: Path, *, lazy: bool | None, lazy_threshold_mb: float) -> RawImage:
    """Read level 0 of an OME-Zarr image.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "a.ome.zarr"
    >>> write_ngff(path, Image(np.ones((2, 32, 32), np.uint8), "CYX", {"Y": 0.5, "X": 0.5}),
    ...            chunks=None, compression="zlib")
    >>> raw = read_ngff(path, lazy=False, lazy_threshold_mb=512)
    >>> raw.axes, raw.pixel_size_um
    ('CYX', {'Y': 0.5, 'X': 0.5})
    """
    import zarr

    with read_errors(path):
        group, ome, ms = _find_multiscales(zarr.open_group(path, mode="r"), path)
        datasets = ms.get("datasets") or []
        if not datasets:
            raise FileFormatError(f"{path}: OME-Zarr multiscales lists no datasets")
        array = group[datasets[0]["path"]]
        shape = tuple(int(s) for s in array.shape)
        dtype = check_dtype(array.dtype, path)
        axes, units = _axes_and_units(ms, len(shape))
        scale = _scale(ms, datasets[0], len(shape))
        sizes = {}
        if axes is not None:
            for letter, unit, value in zip(axes, units, scale, strict=True):
                size = length_to_um(value, unit) if letter in "ZYX" else None
                if size is not None:
                    sizes[letter] = size
        omero = ome.get("omero") or dict(group.attrs).get("omero") or {}
        labels = [ch.get("label") for ch in omero.get("channels", [])]
        names = tuple(str(n) for n in labels) if labels and None not in labels else None
        metadata = {
            "format": "ome-zarr",
            "ngff_version": ome.get("version") or ms.get("version"),
            "levels": [d["path"] for d in datasets],
            "scale": scale,
        }
        if want_lazy(math.prod(shape) * dtype.itemsize, lazy, lazy_threshold_mb):
            import dask.array as da

            data = da.from_zarr(array, chunks="auto")
        else:
            data = array[...]
    return RawImage(data, axes, sizes, names, metadata)


def default_chunks(sizes: dict[str, int]) -> dict[str, int]:
    """Chunk lengths by axis: 1 along T and C, up to 16 along Z, up to 512 along Y and X.

    Examples
    --------
    >>> default_chunks({"C": 3, "Z": 40, "Y": 2000, "X": 300})
    {'C': 1, 'Z': 16, 'Y': 512, 'X': 300}
    """
    limit = {"T": 1, "C": 1, "Z": 16, "Y": 512, "X": 512}
    return {a: min(n, limit[a]) for a, n in sizes.items()}


def pyramid_factors(ny: int, nx: int) -> list[int]:
    """Downsampling factors of the extra levels: powers of 2 keeping Y and X >= 64.

    Examples
    --------
    >>> pyramid_factors(256, 300), pyramid_factors(100, 100)
    ([2, 4], [])
    """
    factors = []
    for k in range(1, _MAX_EXTRA_LEVELS + 1):
        if min(ny, nx) // 2**k < _MIN_LEVEL_SIZE:
            break
        factors.append(2**k)
    return factors


def _chunk_shape(image: Image, target: str, chunks: Any) -> tuple[int, ...]:
    by_axis = default_chunks(image.sizes)
    if chunks is not None:
        if isinstance(chunks, int | np.integer):
            by_axis.update(Y=int(chunks), X=int(chunks))
        else:
            chunks = tuple(chunks)
            if len(chunks) != image.ndim:
                raise InputError(
                    f"chunks {chunks} has {len(chunks)} entries for {image.ndim} axes "
                    f"{image.axes!r}; give one per axis, in the image's axis order"
                )
            by_axis = dict(zip(image.axes, (int(c) for c in chunks), strict=True))
        if any(c < 1 for c in by_axis.values()):
            raise InputError(f"chunk lengths must be >= 1, got {chunks}")
    return tuple(min(by_axis[a], image.sizes[a]) for a in target)


def _compressors(compression: str | None) -> Any:
    from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

    if compression not in _COMPRESSION:
        raise InputError(
            f"unknown OME-Zarr compression {compression!r}; expected one of "
            f"{', '.join(str(c) for c in _COMPRESSION)}"
        )
    if compression in ("zlib", "gzip", "deflate"):
        return [GzipCodec(level=5)]
    if compression == "zstd":
        return [ZstdCodec(level=3)]
    if compression == "blosc":
        return [BloscCodec()]
    return None


def _omero(image: Image) -> dict[str, Any]:
    """``omero`` channel metadata (names, colours, display window) for a named image."""
    data = image.data
    if image.dtype.kind in "iu":
        info = np.iinfo(image.dtype)
        lo, hi = float(info.min), float(info.max)
    else:
        lo, hi = 0.0, 1.0
    if isinstance(data, np.ndarray) and image.dtype.kind != "b":
        lo, hi = float(np.nanmin(data)), float(np.nanmax(data))
    window = {"min": lo, "max": hi, "start": lo, "end": hi}
    single = len(image.channel_names or ()) == 1
    return {
        "channels": [
            {
                "label": name,
                "color": "FFFFFF" if single else _COLOURS[i % len(_COLOURS)],
                "window": window,
                "active": True,
            }
            for i, name in enumerate(image.channel_names or ())
        ]
    }


def write_ngff(
    path: Path, image: Image, *, chunks: Any, compression: str | None, name: str = "image"
) -> None:
    """Write ``image`` as an OME-NGFF 0.5 multiscale image at ``path`` (a folder).

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "a.ome.zarr"
    >>> write_ngff(path, Image(np.zeros((256, 256), np.uint16), "YX"), chunks=128,
    ...            compression="zstd")
    >>> read_ngff(path, lazy=True, lazy_threshold_mb=512).metadata["levels"]
    ['s0', 's1', 's2']
    """
    with warnings.catch_warnings():  # ome-zarr 0.18 warns about its own deprecated Scaler
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.scale import Methods
        from ome_zarr.writer import write_image

    if "Y" not in image.axes or "X" not in image.axes:
        raise InputError(f"OME-Zarr needs Y and X axes; the image has axes {image.axes!r}")
    target = "".join(a for a in AXES if a in image.axes)
    data = image.data.transpose(move_axes(image.axes, target))
    storage = {
        "chunks": _chunk_shape(image, target, chunks),
        "compressors": _compressors(compression),
    }
    extra = {"omero": _omero(image)} if image.channel_names else {}
    sizes = image.pixel_size_um
    write_image(
        data,
        str(path),
        scale_factors=pyramid_factors(image.sizes["Y"], image.sizes["X"]),
        method=Methods.NEAREST if image.dtype == np.bool_ else Methods.LOCAL_MEAN,
        axes=target.lower(),
        scale={a.lower(): sizes.get(a, 1.0) for a in target},
        axes_units={a.lower(): "micrometer" for a in sizes} or None,
        storage_options=storage,
        name=name,
        **extra,
    )
