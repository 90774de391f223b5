"""One 2-D grey plane from any image: the input of every per-plane method."""

from __future__ import annotations

from typing import Any

import numpy as np

from cytolens.core.axes import check_axes
from cytolens.core.errors import InputError
from cytolens.core.validate import check_array, is_dask

__all__ = ["single_plane"]


def single_plane(
    image: Any,
    *,
    axes: str | None = None,
    channel: int | None = None,
    name: str = "image",
    hint: str = "pass one plane or a projection of the stack",
    lazy: bool = False,
) -> tuple[Any, dict[str, float]]:
    """Reduce an image to one 2-D float32 plane.

    Axes come from the :class:`~cytolens.core.image.Image` or ``axes``;
    without them a 2-D array is ``"YX"`` and a 3-D array whose last axis has 3
    or 4 entries is ``"YXC"`` (RGB/RGBA); other 3-D arrays are refused (a Z
    stack and a channel stack cannot be told apart). Singleton ``T``/``Z`` axes
    are dropped, longer ones refused. ``channel=`` picks a channel; otherwise a
    single channel is used as is and RGB(A) becomes the mean of R, G and B
    (alpha dropped).

    Parameters
    ----------
    image : array_like, dask.array.Array or Image
        A 2-D image, possibly with channels and singleton T/Z axes.
    axes : str, optional
        Axes of ``image`` (letters from ``TCZYX``); taken from an ``Image``.
    channel : int, optional
        Index along ``C`` of the channel to use.
    name : str
        How the image is called in error messages.
    hint : str
        What the caller's user should do instead, appended to the errors
        about extra planes (e.g. which command handles a z-stack).
    lazy : bool
        Keep a Dask input lazy (the plane is a Dask array, nothing is read
        yet; NaN/inf are then found where it is computed). Default: read it.

    Returns
    -------
    plane : numpy.ndarray of float32, shape (Y, X)
        Intensities in the input's range (not rescaled); a Dask array of
        float32 for a Dask input with ``lazy=True``.
    pixel_size_um : dict
        The ``Image``'s pixel sizes (empty for a plain array).

    Raises
    ------
    InputError
        For a 3-D array without ``axes`` (unless RGB/RGBA), a Z or T axis
        longer than 1, an ambiguous channel count, NaN or infinite values,
        an empty or non-numeric array.

    Examples
    --------
    >>> rgb = np.zeros((8, 8, 3), np.uint8)
    >>> rgb[..., 0] = 30
    >>> plane, _ = single_plane(rgb)
    >>> plane.shape, float(plane.max())
    ((8, 8), 10.0)
    """
    from cytolens.core.image import Image

    pixel_size: dict[str, float] = {}
    if isinstance(image, Image):
        pixel_size = dict(image.pixel_size_um)
        axes = image.axes if axes is None else axes
        name = str(image.path) if image.path is not None else name
        image = image.data
    if is_dask(image) and not lazy:
        image = np.asarray(image)
    data = check_array(image, name=name)
    if axes is None:
        if data.ndim == 2:
            axes = "YX"
        elif data.ndim == 3 and data.shape[-1] in (3, 4):
            axes = "YXC"
        else:
            raise InputError(
                f"{name} has shape {data.shape} ({data.ndim}-D) and no axes; pass axes= "
                f"(e.g. 'CYX' for a channel stack); {hint}"
            )
    axes = check_axes(axes, data.shape)
    for ax in "TZ":
        if ax in axes:
            n = data.shape[axes.index(ax)]
            if n > 1:
                raise InputError(
                    f"{name} has {n} planes along axis {ax} (shape {data.shape}, axes {axes!r}); "
                    f"{hint}"
                )
            data = data.take(0, axis=axes.index(ax))
            axes = axes.replace(ax, "")
    if "Y" not in axes or "X" not in axes:
        raise InputError(f"{name} has axes {axes!r}; expected both Y and X")
    if "C" not in axes:
        data, axes = data[None], "C" + axes
    data = np.moveaxis(data, [axes.index(a) for a in "CYX"], [0, 1, 2])
    n_c = data.shape[0]
    if channel is not None:
        if not -n_c <= channel < n_c:
            raise InputError(f"channel={channel} is out of range for {name} with {n_c} channel(s)")
        plane = data[channel]
    elif n_c == 1:
        plane = data[0]
    elif n_c in (3, 4):
        plane = data[:3].mean(axis=0, dtype=np.float64)
    else:
        raise InputError(
            f"{name} has {n_c} channels (axes {axes!r}); pass channel= (--channel on the "
            f"command line) with the index of the stain to use (RGB/RGBA images are averaged "
            f"over R, G and B)"
        )
    if is_dask(plane):
        return plane.astype(np.float32), pixel_size
    if plane.dtype.kind == "f" and plane.dtype.itemsize > 4 and plane.size:
        top = float(np.nanmax(np.abs(plane)))
        if top > np.finfo(np.float32).max:
            raise InputError(
                f"{name} holds values up to {top:.3g}, beyond the float32 range "
                f"({np.finfo(np.float32).max:.3g}); rescale the image first"
            )
    return np.ascontiguousarray(plane, dtype=np.float32), pixel_size
