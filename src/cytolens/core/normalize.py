"""Percentile normalization: the one place every model and tool normalizes intensities."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cytolens.core.validate import check_array

__all__ = ["Normalizer", "normalize_percentile"]


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
