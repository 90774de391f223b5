"""Percentile normalization: the one place every model and tool normalizes intensities."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cytolens.core.validate import check_array

__all__ = [
    "Normalizer",
    "normalize_dtype_range",
    "normalize_per_channel",
    "normalize_percentile",
    "sample_percentiles",
]

#: Pixels read by :func:`sample_percentiles` at most (16 Mi float32 = 64 MiB).
MAX_SAMPLE = 1 << 24


def sample_percentiles(
    image: Any,
    pmin: float = 1.0,
    pmax: float = 99.8,
    *,
    max_pixels: int = MAX_SAMPLE,
    max_planes: int = 8,
) -> tuple[float, float]:
    """Percentiles of a (possibly huge or lazy) image from a bounded, regular sample.

    Tiles and frames of one image must share one intensity scale, so the
    percentiles are taken once, on the whole image: on at most ``max_planes``
    evenly spaced planes along the leading axes, each read with a stride over
    the last two axes that keeps the sample below ``max_pixels`` in all.
    Below that size the result equals ``np.percentile`` on the whole image.

    Parameters
    ----------
    image : array_like or dask.array.Array
        At least 2-D; the last two axes are Y and X.
    pmin, pmax : float
        Percentiles, ``0 <= pmin < pmax <= 100``.
    max_pixels : int
        Largest number of pixels read.
    max_planes : int
        Largest number of planes (along the leading axes) read.

    Returns
    -------
    lo, hi : float

    Raises
    ------
    InputError
        If the sample holds NaN or infinite values.

    Examples
    --------
    >>> sample_percentiles(np.arange(100.0).reshape(10, 10), 0, 100)
    (0.0, 99.0)
    """
    from cytolens.core.errors import InputError

    Normalizer(pmin=pmin, pmax=pmax)  # validates the percentiles
    shape = tuple(image.shape)
    if len(shape) < 2:
        raise InputError(f"expected an image with at least 2 axes, got shape {shape}")
    lead = int(np.prod(shape[:-2], dtype=np.int64))
    picks = np.unique(np.linspace(0, lead - 1, min(max_planes, lead)).astype(int))
    budget = max(1, max_pixels // len(picks))
    step = 1
    while (shape[-2] // step) * (shape[-1] // step) > budget:
        step += 1
    planes = []
    for index in picks:
        where = np.unravel_index(index, shape[:-2]) if shape[:-2] else ()
        planes.append(np.asarray(image[where][::step, ::step], dtype=np.float32).ravel())
    sample = np.concatenate(planes)
    if not np.isfinite(sample).all():
        raise InputError("image has non-finite values (NaN or inf); replace them first")
    lo, hi = np.percentile(sample, (pmin, pmax))
    return float(lo), float(hi)


def normalize_percentile(
    image: Any,
    pmin: float = 1.0,
    pmax: float = 99.8,
    *,
    axis: int | tuple[int, ...] | None = None,
    clip: bool = False,
    eps: float = 1e-20,
) -> np.ndarray:
    """Scale intensities so the ``pmin`` percentile maps to 0 and ``pmax`` to 1.

    Same definition as csbdeep's ``normalize(x, pmin, pmax)``:
    ``(x - p_lo) / (p_hi - p_lo + eps)``, computed in float32.

    Parameters
    ----------
    image : array_like
        Input image (any real dtype).
    pmin, pmax : float
        Percentiles, ``0 <= pmin < pmax <= 100``.
    axis : int or tuple of int, optional
        Axes over which percentiles are taken (others are normalized
        independently, e.g. per channel); default: the whole array.
    clip : bool
        Clip the result to ``[0, 1]``.
    eps : float
        Added to the denominator so a flat image does not divide by zero.

    Returns
    -------
    numpy.ndarray of float32

    Examples
    --------
    >>> x = np.arange(101, dtype=np.uint16)
    >>> y = normalize_percentile(x, 0, 100)
    >>> float(y.min()), float(y.max())
    (0.0, 1.0)
    """
    Normalizer(pmin=pmin, pmax=pmax)  # validates the percentiles
    x = np.asarray(check_array(image, name="image"), dtype=np.float32)
    lo = np.percentile(x, pmin, axis=axis, keepdims=True).astype(np.float32)
    hi = np.percentile(x, pmax, axis=axis, keepdims=True).astype(np.float32)
    out = (x - lo) / (hi - lo + np.float32(eps))
    if clip:
        np.clip(out, 0, 1, out=out)
    return out


def normalize_per_channel(
    image: Any,
    pmin: float = 1.0,
    pmax: float = 99.8,
    *,
    channel_axis: int = 0,
    clip: bool = False,
    floor: float = 1e-6,
) -> np.ndarray:
    """Scale each channel by its own percentiles, taken on a bounded sample of the whole image.

    ``(x - lo) / max(hi - lo, floor)`` per channel, in float32, with ``lo, hi``
    from :func:`sample_percentiles`, so the tiles of a large image share one
    scale; channels come first in the result.

    Parameters
    ----------
    image : array_like
        At least 3-D (each channel at least 2-D), channels along ``channel_axis``.
    pmin, pmax : float
        Percentiles, ``0 <= pmin < pmax <= 100``.
    channel_axis : int
        Axis of the channels (``-1`` for colour images read from JPEG/PNG).
    clip : bool
        Clip the result to ``[0, 1]``.
    floor : float
        Smallest percentile range divided by (a flat channel stays finite).

    Returns
    -------
    numpy.ndarray of float32
        ``(C, ...)``.

    Examples
    --------
    >>> x = np.stack([np.arange(100.0), 2 * np.arange(100.0)], axis=-1).reshape(10, 10, 2)
    >>> y = normalize_per_channel(x, 0, 100, channel_axis=-1)
    >>> y.shape, float(y[1].max())
    ((2, 10, 10), 1.0)
    """
    data = np.moveaxis(np.asarray(image), channel_axis, 0)
    out = np.empty(data.shape, np.float32)
    for c in range(data.shape[0]):
        lo, hi = sample_percentiles(data[c], pmin, pmax)
        out[c] = (data[c].astype(np.float32) - lo) / max(hi - lo, floor)
    if clip:
        np.clip(out, 0, 1, out=out)
    return out


def normalize_dtype_range(data: Any, *, name: str = "image") -> np.ndarray:
    """Scale by the dtype's range to ``[0, 1]``: integers by their maximum, floats clipped.

    uint8 is divided by 255, uint16 by 65535 (any integer dtype by its
    maximum), booleans become 0/1, floats are taken as already in ``[0, 1]``
    (NaN as 0, clipped).

    Raises
    ------
    InputError
        For a dtype that is neither integer, boolean nor float.

    Examples
    --------
    >>> normalize_dtype_range(np.array([0, 51, 255], np.uint8)).tolist()
    [0.0, 0.20000000298023224, 1.0]
    """
    from cytolens.core.errors import InputError

    data = np.asarray(data)
    if data.dtype.kind == "b":
        return data.astype(np.float32)
    if data.dtype.kind in "iu":
        return (data.astype(np.float32) / np.iinfo(data.dtype).max).clip(0, 1)
    if data.dtype.kind == "f":
        return np.nan_to_num(data.astype(np.float32)).clip(0, 1)
    raise InputError(f"{name}: cannot use dtype {data.dtype}; expected integers or floats")


class Normalizer(BaseModel):
    """A percentile normalization, stored with every model that uses it.

    Examples
    --------
    >>> Normalizer(pmin=1, pmax=99.8).model_dump()
    {'kind': 'percentile', 'pmin': 1.0, 'pmax': 99.8, 'clip': False}
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    kind: str = Field("percentile", pattern="^percentile$")
    pmin: float = Field(1.0, ge=0, le=100)
    pmax: float = Field(99.8, ge=0, le=100)
    clip: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Normalizer:
        if not self.pmin < self.pmax:
            raise ValueError(f"pmin ({self.pmin}) must be below pmax ({self.pmax})")
        return self

    def __call__(self, image: Any, *, axis: int | tuple[int, ...] | None = None) -> np.ndarray:
        """Normalize ``image`` with these settings."""
        return normalize_percentile(image, self.pmin, self.pmax, axis=axis, clip=self.clip)
