"""From any 2-D microscope image to the one normalized channel the segmenters work on.

Both the learned model and the classical baseline see the same input:

1. **One plane.** Axes come from the :class:`~cytolens.core.image.Image` or
   the ``axes`` argument; without them, a 2-D array is ``"YX"`` and a 3-D
   array whose last axis has 3 or 4 entries is ``"YXC"`` (RGB/RGBA). Other
   3-D arrays are refused (a Z stack or a channel stack cannot be told apart).
   Singleton ``T``/``Z`` axes are dropped; longer ones are refused.
2. **One channel.** ``channel=`` picks a channel. Otherwise a single channel
   is used as is and RGB(A) becomes the plain mean of R, G and B (alpha is
   dropped): for the grey fluorescence PNGs of DSB2018 (R = G = B) this is the
   image itself, and for brightfield or H&E histology it is a luminance in
   which nuclei are dark. Two or more than four channels need ``channel=``.
3. **Normalization.** Percentiles 1 and 99.8 map to 0 and 1
   (:func:`~cytolens.core.normalize.normalize_percentile`, csbdeep's
   definition), over the whole image so tiles agree.
4. **Polarity.** Nuclei must be bright. With ``invert=None`` an image whose
   normalized median is above 0.4 (a bright background, as in brightfield and
   histology) is inverted to ``1 - x``. On DSB2018 the median is at most 0.19
   for every fluorescence image and at least 0.43 for every histology image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cytolens.core.axes import check_axes
from cytolens.core.errors import InputError
from cytolens.core.normalize import Normalizer
from cytolens.core.validate import check_array, is_dask

__all__ = ["INVERT_MEDIAN", "NORMALIZER", "normalized_plane", "single_plane"]

#: The normalization of every segmenter input (recorded in the model card).
NORMALIZER = Normalizer(pmin=1.0, pmax=99.8, clip=False)
#: Normalized median above which an image is taken to have a bright background.
INVERT_MEDIAN = 0.4


def single_plane(
    image: Any, *, axes: str | None = None, channel: int | None = None, name: str = "image"
) -> tuple[np.ndarray, dict[str, float]]:
    """Reduce an image to one 2-D float32 plane (steps 1-2 of the module notes).

    Parameters
    ----------
    image : array_like, dask.array.Array or Image
        A 2-D image, possibly with channels and singleton T/Z axes.
    axes : str, optional
        Axes of ``image`` (letters from ``TCZYX``); taken from an ``Image``.
    channel : int, optional
        Index along ``C`` of the nuclear stain.
    name : str
        How the image is called in error messages.

    Returns
    -------
    plane : numpy.ndarray of float32, shape (Y, X)
        Intensities in the input's range (not rescaled).
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
    if is_dask(image):
        image = np.asarray(image)
    data = np.asarray(check_array(image, name=name))
    if axes is None:
        if data.ndim == 2:
            axes = "YX"
        elif data.ndim == 3 and data.shape[-1] in (3, 4):
            axes = "YXC"
        else:
            raise InputError(
                f"{name} has shape {data.shape} ({data.ndim}-D) and no axes; pass axes= "
                f"(e.g. 'CYX' for a channel stack); nuclei are segmented on one 2-D plane, so "
                f"give a single Z plane or a projection of a stack"
            )
    axes = check_axes(axes, data.shape)
    for ax in "TZ":
        if ax in axes:
            n = data.shape[axes.index(ax)]
            if n > 1:
                raise InputError(
                    f"{name} has {n} planes along axis {ax} (shape {data.shape}, axes {axes!r}); "
                    f"nuclei are segmented in 2-D: pass one plane or a projection"
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
        plane = data[:3].astype(np.float32).mean(axis=0)
    else:
        raise InputError(
            f"{name} has {n_c} channels (axes {axes!r}); pass channel= with the index of the "
            f"nuclear stain (RGB/RGBA images are averaged over R, G and B)"
        )
    return np.ascontiguousarray(plane, dtype=np.float32), pixel_size


def normalized_plane(plane: np.ndarray, *, invert: bool | None = None) -> tuple[np.ndarray, bool]:
    """Normalize a plane and make nuclei bright (steps 3-4 of the module notes).

    Returns
    -------
    normalized : numpy.ndarray of float32
        About 0 for background and 1 for bright nuclei.
    inverted : bool
        Whether the intensities were inverted.

    Examples
    --------
    >>> bright_field = np.full((16, 16), 200.0)
    >>> bright_field[4:8, 4:8] = 50.0  # a dark nucleus
    >>> x, inverted = normalized_plane(bright_field)
    >>> inverted, float(x[5, 5]) > float(x[0, 0])
    (True, True)
    """
    x = NORMALIZER(plane)
    if invert is None:
        invert = bool(np.median(x) > INVERT_MEDIAN)
    if invert:
        x = np.float32(1) - x
    return x, bool(invert)
