"""``describe``: the summary ``cytolens info`` prints for an image."""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from cytolens.core.image import Image
from cytolens.io.formats import MIB

__all__ = ["describe"]


def _number(value: Any) -> float | int | None:
    """A JSON-friendly Python number; ``None`` for NaN (all values missing)."""
    value = np.asarray(value).item()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def describe(image: Image | str | os.PathLike[str]) -> dict[str, Any]:
    """Summarize an image: where it came from, its geometry, metadata and intensities.

    Intensity statistics ignore NaN and, for a Dask image, are computed
    chunk by chunk in one pass (the file is read once, never whole).

    Parameters
    ----------
    image : Image or path
        An image, or a file to open lazily with :func:`cytolens.io.imread`.

    Returns
    -------
    dict
        JSON-serializable: ``path``, ``format``, ``shape``, ``axes``,
        ``dtype``, ``pixel_size_um``, ``channel_names``, ``min``, ``max``,
        ``mean``, ``n_nan`` (floats only, else 0), ``lazy``, ``chunks`` (per
        axis chunk length, Dask only, else ``None``) and ``size_mb`` (decoded
        size in MiB).

    Examples
    --------
    >>> info = describe(Image(np.array([[0, 2], [4, 6]], np.uint8), "YX", {"Y": 0.5, "X": 0.5}))
    >>> info["shape"], info["min"], info["max"], info["mean"], info["size_mb"] < 1
    ([2, 2], 0, 6, 3.0, True)
    """
    if not isinstance(image, Image):
        from cytolens.io.read import imread

        image = imread(image, lazy=True)
    data = image.data
    is_float = data.dtype.kind == "f"
    stats: tuple[Any, ...]
    with warnings.catch_warnings():  # an all-NaN image warns; its stats are reported as None
        warnings.simplefilter("ignore", RuntimeWarning)
        if is_float:
            stats = (np.nanmin(data), np.nanmax(data), np.nanmean(data, dtype=np.float64))
            stats += (np.isnan(data).sum(),)
        else:
            stats = (data.min(), data.max(), data.mean(dtype=np.float64), 0)
        if image.is_lazy:
            import dask

            stats = dask.compute(*stats)
    lo, hi, mean, n_nan = stats
    return {
        "path": str(image.path) if image.path is not None else None,
        "format": image.metadata.get("format"),
        "shape": list(image.shape),
        "axes": image.axes,
        "dtype": str(image.dtype),
        "pixel_size_um": dict(image.pixel_size_um),
        "channel_names": list(image.channel_names) if image.channel_names else None,
        "min": _number(lo),
        "max": _number(hi),
        "mean": _number(mean),
        "n_nan": int(n_nan),
        "lazy": image.is_lazy,
        "chunks": [int(c) for c in data.chunksize] if image.is_lazy else None,
        "size_mb": round(data.size * data.dtype.itemsize / MIB, 3),
    }
