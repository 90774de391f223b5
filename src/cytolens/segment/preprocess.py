"""From any 2-D microscope image to the one normalized channel the segmenters work on.

Both the learned model and the classical baseline see the same input (steps 1-2 are
:func:`cytolens.core.plane.single_plane`, shared with the other per-plane methods):

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

What can be segmented (:func:`check_plane`, :func:`check_diameter`, used by
both segmenters before any work):

- each side of the plane is at least :data:`MIN_SIDE_PX` (16) pixels: a
  smaller side cannot hold a nucleus with background around it, and a strip of
  noise would otherwise yield thousands of "nuclei";
- intensities are finite after conversion to float32 (float64 values beyond
  about 3.4e38 are refused, not turned into ``inf``);
- the nucleus diameter lies between :data:`MIN_DIAMETER_PX` (3) pixels and the
  plane's shorter side: below a few pixels a nucleus is not an object (and the
  learned model would zoom the image by 16 / diameter, e.g. 1600x for 0.01 px,
  terabytes), above the shorter side no nucleus fits in the image. A given
  diameter outside this range is refused; an estimated one is clamped into it
  with a warning.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from cytolens.core.errors import InputError
from cytolens.core.normalize import Normalizer

__all__ = [
    "INVERT_MEDIAN",
    "MIN_DIAMETER_PX",
    "MIN_SIDE_PX",
    "NORMALIZER",
    "SEGMENT_HINT",
    "check_diameter",
    "check_plane",
    "image_name",
    "normalized_plane",
]

logger = logging.getLogger(__name__)

#: The normalization of every segmenter input (recorded in the model card).
NORMALIZER = Normalizer(pmin=1.0, pmax=99.8, clip=False)
#: What to do with a stack, appended to the errors of :func:`cytolens.core.plane.single_plane`.
SEGMENT_HINT = "nuclei are segmented in 2-D: pass one plane or a projection"
#: Normalized median above which an image is taken to have a bright background.
INVERT_MEDIAN = 0.4
#: Shortest side (pixels) of a plane in which nuclei are segmented.
MIN_SIDE_PX = 16
#: Smallest nucleus diameter (pixels) the segmenters accept.
MIN_DIAMETER_PX = 3.0


def image_name(image: Any, default: str = "image") -> str:
    """How an image is named in messages: its file for an ``Image`` read from one.

    Examples
    --------
    >>> image_name(np.zeros((4, 4)))
    'image'
    """
    from cytolens.core.image import Image

    if isinstance(image, Image) and image.path is not None:
        return str(image.path)
    return default


def check_plane(plane: np.ndarray, name: str = "image") -> None:
    """Refuse a plane that cannot be segmented meaningfully (module notes).

    Parameters
    ----------
    plane : numpy.ndarray, shape (Y, X)
        The float32 plane from :func:`cytolens.core.plane.single_plane`.
    name : str
        The image's name (its file) for messages.

    Raises
    ------
    InputError
        When a side is shorter than :data:`MIN_SIDE_PX` or a value is not
        finite (float64 intensities beyond the float32 range).

    Examples
    --------
    >>> check_plane(np.zeros((3, 1000), np.float32), "strip.tif")
    Traceback (most recent call last):
    ...
    cytolens.core.errors.InputError: strip.tif has shape (3, 1000): too small to segment nuclei; ...
    """
    if min(plane.shape) < MIN_SIDE_PX:
        raise InputError(
            f"{name} has shape {tuple(plane.shape)}: too small to segment nuclei; each side "
            f"must be at least {MIN_SIDE_PX} px to hold a nucleus with background around it"
        )
    if not np.isfinite(plane).all():
        raise InputError(
            f"{name}: intensities beyond the float32 range (about 3.4e38) cannot be segmented; "
            "rescale the image (e.g. divide it by a constant)"
        )


def check_diameter(
    diameter: float,
    shape: tuple[int, ...],
    name: str = "image",
    *,
    zoom_to: float | None = None,
    estimated: bool = False,
    given: str | None = None,
) -> float:
    """Check a nucleus diameter (pixels) against the plane's shape (module notes).

    Parameters
    ----------
    diameter : float
        Nucleus diameter in pixels of the plane.
    shape : tuple of int
        The plane's shape ``(Y, X)``.
    name : str
        The image's name (its file) for messages.
    zoom_to : float, optional
        The diameter the learned model zooms nuclei to (its training
        diameter); the message then says how large the zoomed image would be.
    estimated : bool
        The diameter was estimated, not given: clamp it into the range with
        a warning instead of refusing it.
    given : str, optional
        The value as the user gave it when not in pixels, e.g.
        ``"0.5 um at 0.25 um/px"``, for the message.

    Returns
    -------
    float
        The diameter, clamped into range when ``estimated``.

    Raises
    ------
    InputError
        For a given diameter below :data:`MIN_DIAMETER_PX` or above the
        plane's shorter side, naming the value, the image and the range.

    Examples
    --------
    >>> check_diameter(20.0, (520, 696))
    20.0
    >>> check_diameter(0.01, (520, 696), "a.png", zoom_to=16.0)
    Traceback (most recent call last):
    ...
    cytolens.core.errors.InputError: a.png: a nucleus diameter of 0.01 px is outside the ...
    """
    low, high = MIN_DIAMETER_PX, float(min(shape))
    if low <= diameter <= high:
        return float(diameter)
    if estimated:
        clamped = min(max(diameter, low), high)
        logger.warning(
            "%s: estimated nucleus diameter %.3g px is outside %g..%g px; using %.3g px "
            "(give the diameter if nuclei look wrong)",
            name,
            diameter,
            low,
            high,
            clamped,
        )
        return float(clamped)
    zoom = ""
    if zoom_to is not None:
        scale = zoom_to / diameter
        size = " x ".join(f"{round(n * scale)}" for n in shape)
        factor = f"{scale:.0f}" if scale >= 10 else f"{scale:.2g}"
        zoom = f"; the model would zoom the {shape[0]} x {shape[1]} px image {factor}x to {size} px"
    value = f"{diameter:.4g} px" + (f" ({given})" if given else "")
    raise InputError(
        f"{name}: a nucleus diameter of {value} is outside the sensible range "
        f"{low:g} to {high:g} px (a nucleus is at least a few pixels wide and fits in the "
        f"image){zoom}; check the diameter and its unit (pixels, or um with a pixel size)"
    )


def normalized_plane(
    plane: np.ndarray, *, invert: bool | None = None, normalizer: Any = None
) -> tuple[np.ndarray, bool]:
    """Normalize a plane and make nuclei bright (steps 3-4 of the module notes).

    Parameters
    ----------
    plane : numpy.ndarray
        One 2-D plane.
    invert : bool, optional
        Force or forbid inverting; decided from the normalized median by default.
    normalizer : callable, optional
        A model's normalization (its card's, e.g. a
        :class:`~cytolens.models.schema.PercentileNormalization`, called via
        ``apply``); default :data:`NORMALIZER`.

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
    x = NORMALIZER(plane) if normalizer is None else normalizer.apply(plane)
    if invert is None:
        invert = bool(np.median(x) > INVERT_MEDIAN)
    if invert:
        x = np.float32(1) - x
    return x, bool(invert)
