"""The image object returned by :func:`cytolens.io.imread`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cytolens.core.axes import check_axes, move_axes
from cytolens.core.errors import AxesError, InputError
from cytolens.core.validate import is_dask

__all__ = ["Image"]


@dataclass(frozen=True)
class Image:
    """An array with the facts needed to process it correctly.

    Parameters
    ----------
    data : numpy.ndarray or dask.array.Array
        Pixel data, never rescaled (a 12-bit image in uint16 stays as read).
    axes : str
        One OME letter per dimension (subset of ``TCZYX``), e.g. ``"ZYX"``.
    pixel_size_um : dict of str to float
        Physical size of one pixel along each spatial axis that the file
        states, in micrometres, e.g. ``{"Y": 0.65, "X": 0.65}``. Axes the
        file does not state are absent.
    channel_names : tuple of str, optional
        One name per ``C`` entry, when known.
    path : pathlib.Path, optional
        The file the image came from.
    metadata : dict
        Anything else read from the file (format, compression, ...).

    Examples
    --------
    >>> img = Image(np.zeros((2, 8, 8), np.uint8), "CYX", channel_names=("dna", "actin"))
    >>> img.shape, img.axes
    ((2, 8, 8), 'CYX')
    >>> img.transpose("YXC").shape
    (8, 8, 2)
    """

    data: Any
    axes: str
    pixel_size_um: dict[str, float] = field(default_factory=dict)
    channel_names: tuple[str, ...] | None = None
    path: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (isinstance(self.data, np.ndarray) or is_dask(self.data)):
            object.__setattr__(self, "data", np.asarray(self.data))
        object.__setattr__(self, "axes", check_axes(self.axes, self.data.shape))
        unknown = set(self.pixel_size_um) - set("ZYX")
        if unknown:
            raise AxesError(
                f"pixel_size_um has non-spatial axes {sorted(unknown)}; expected keys from 'ZYX'"
            )
        for ax, size in self.pixel_size_um.items():
            if ax not in self.axes:
                raise AxesError(f"pixel_size_um gives axis {ax!r}, absent from axes {self.axes!r}")
            if not size > 0:
                raise InputError(f"pixel size along {ax} must be > 0 um, got {size!r}")
        if self.channel_names is not None:
            names = tuple(str(n) for n in self.channel_names)
            object.__setattr__(self, "channel_names", names)
            n_c = self.data.shape[self.axes.index("C")] if "C" in self.axes else 1
            if len(names) != n_c:
                raise InputError(
                    f"{len(names)} channel name(s) {names} for {n_c} channel(s) in axes "
                    f"{self.axes!r}"
                )

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the data."""
        return tuple(int(s) for s in self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        """Data type of the pixels."""
        return self.data.dtype

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return self.data.ndim

    @property
    def is_lazy(self) -> bool:
        """True when the data is a Dask array (not yet read into memory)."""
        return is_dask(self.data)

    @property
    def sizes(self) -> dict[str, int]:
        """Length of each axis by letter."""
        return dict(zip(self.axes, self.shape, strict=True))

    def transpose(self, axes: str) -> Image:
        """Return the image with its axes reordered to ``axes`` (same letters)."""
        perm = move_axes(self.axes, axes)
        return Image(
            self.data.transpose(perm),
            check_axes(axes),
            dict(self.pixel_size_um),
            self.channel_names,
            self.path,
            dict(self.metadata),
        )

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = np.asarray(self.data)
        return arr if dtype is None else arr.astype(dtype)

    def __repr__(self) -> str:
        kind = "dask" if self.is_lazy else "numpy"
        src = f", path={str(self.path)!r}" if self.path else ""
        return (
            f"Image(shape={self.shape}, axes={self.axes!r}, dtype={self.dtype}, {kind}, "
            f"pixel_size_um={self.pixel_size_um}{src})"
        )
