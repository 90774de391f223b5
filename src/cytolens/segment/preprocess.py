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

Stain-aware preparation (:func:`prepared_plane`, used by models whose card
says ``parameters.stain: auto``, e.g. ``nuclei-v2``): the kind of image is
detected (:func:`detect_stain`: fluorescence, brightfield or H&E) and
recorded (the log, the ``stain`` column of the ``segment.nuclei`` step), and
``stain=`` overrides it. H&E and brightfield are inverted as above; brightfield
images also get a nucleus-size guess from their nuclei only
(:func:`nuclear_plane`), and colour deconvolution (:func:`hematoxylin`) is
available as ``stain="hematoxylin"``. ``stain="mean"`` is steps 2-4 unchanged
(``nuclei-v1``).

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


# --------------------------------------------------------------------------- stains
#: How a colour or grey image becomes the one plane of bright nuclei (``stain=``).
STAINS = ("auto", "fluorescence", "brightfield", "he", "hematoxylin", "mean")
#: Mean spread of R, G, B (fraction of the image's intensity range) above which a
#: bright-background RGB image is taken as stained (H&E); DSB2018: 0 for every
#: brightfield and fluorescence image, at least 0.07 for every histology image.
HE_CHROMA = 0.03
#: Percentile of each colour channel taken as the unstained (white) light level.
WHITE_PERCENTILE = 99.0
#: What ``stain="auto"`` does, for model cards.
STAIN_DESCRIPTION = (
    "stain-aware (cytolens.segment.preprocess.prepared_plane, stain='auto'): one plane = mean "
    "of R, G, B (alpha dropped) or the channel= given; a bright background (normalized "
    f"median > {INVERT_MEDIAN}) with colours (mean RGB spread > {HE_CHROMA} of the range) is "
    "H&E ('he'), without colours brightfield: both inverted (1 - x); otherwise fluorescence, "
    "not inverted; the first nucleus-size guess on brightfield keeps only the brightest "
    "class of a three-class Otsu threshold (nuclei, not the cytoplasm); the stain used is "
    "logged, and stain= overrides it (incl. 'hematoxylin': colour deconvolution)"
)


def _rgb_planes(image: Any, axes: str | None, name: str) -> np.ndarray | None:
    """R, G, B planes ``(3, Y, X)`` float32 of an RGB(A) image, else None."""
    from cytolens.core.plane import single_plane

    try:
        blue, _ = single_plane(image, axes=axes, channel=2, name=name, hint=SEGMENT_HINT)
    except InputError:
        return None  # fewer than 3 channels (more than 4 were refused already)
    red, _ = single_plane(image, axes=axes, channel=0, name=name, hint=SEGMENT_HINT)
    green, _ = single_plane(image, axes=axes, channel=1, name=name, hint=SEGMENT_HINT)
    return np.stack([red, green, blue])


def detect_stain(plane: np.ndarray, rgb: np.ndarray | None = None) -> str:
    """Which kind of image a plane is: ``"fluorescence"``, ``"brightfield"`` or ``"he"``.

    A bright background (normalized median above :data:`INVERT_MEDIAN`) makes
    a transmitted-light image: ``"he"`` when its colours spread by more than
    :data:`HE_CHROMA` of its range (R, G and B differ: a stain), else
    ``"brightfield"``. A dark background is ``"fluorescence"`` (grey or colour).

    Parameters
    ----------
    plane : numpy.ndarray, shape (Y, X)
        The grey plane (mean of R, G, B for a colour image).
    rgb : numpy.ndarray, shape (3, Y, X), optional
        The colour planes, when the image has them.

    Examples
    --------
    >>> dark = np.zeros((32, 32)); dark[8:16, 8:16] = 100
    >>> detect_stain(dark)
    'fluorescence'
    >>> detect_stain(255 - dark)
    'brightfield'
    """
    x = NORMALIZER(plane)
    if not np.median(x) > INVERT_MEDIAN:
        return "fluorescence"
    if rgb is None:
        return "brightfield"
    lo, hi = np.percentile(plane, (1.0, 99.8))
    chroma = float(np.mean(rgb.max(axis=0) - rgb.min(axis=0))) / max(float(hi - lo), 1e-12)
    return "he" if chroma > HE_CHROMA else "brightfield"


def hematoxylin(rgb: np.ndarray) -> np.ndarray:
    """Hematoxylin amount of an H&E image by colour deconvolution (Ruifrok & Johnston).

    Each channel is divided by its own white level (percentile
    :data:`WHITE_PERCENTILE`, the unstained background) and
    :func:`skimage.color.rgb2hed` separates hematoxylin (nuclei), eosin and
    DAB; the hematoxylin optical density is returned (bright nuclei).

    Parameters
    ----------
    rgb : numpy.ndarray, shape (3, Y, X)
        Colour planes in any range.

    Returns
    -------
    numpy.ndarray of float32, shape (Y, X)

    Examples
    --------
    >>> rgb = np.full((3, 8, 8), 230.0)
    >>> rgb[:, 2:5, 2:5] = [[[90.0]], [[60.0]], [[160.0]]]  # a purple nucleus
    >>> h = hematoxylin(rgb)
    >>> bool(h[3, 3] > 5 * h[0, 0] + 0.1)
    True
    """
    from skimage.color import rgb2hed

    white = np.percentile(rgb.reshape(3, -1), WHITE_PERCENTILE, axis=1)
    scaled = np.clip(rgb / np.maximum(white, 1e-12)[:, None, None], 1e-6, 1.0)
    return rgb2hed(np.moveaxis(scaled, 0, -1).astype(np.float32))[..., 0].astype(np.float32)


def nuclear_plane(normalized: np.ndarray, stain: str | None = None) -> np.ndarray:
    """The plane a first nucleus-size guess is taken from (bright nuclei, float32).

    In brightfield images the cells' cytoplasm is also darker than the
    background, so after inversion a single (Otsu) threshold finds whole
    cells (DSB2018 brightfield train + tune images: 5.5x the true nucleus
    diameter). There the plane keeps only its brightest class of a
    three-class Otsu threshold (:func:`skimage.filters.threshold_multiotsu`
    on a smoothed, subsampled copy), where nuclei are (1.4x the true diameter,
    then refined by the network). Other stains are returned as they are.

    Examples
    --------
    >>> x = np.zeros((64, 64), np.float32)
    >>> x[8:56, 8:56] = 0.5  # a cell
    >>> x[28:36, 28:36] = 1.0  # its nucleus
    >>> int((nuclear_plane(x, "brightfield") > 0).sum())
    64
    """
    if stain != "brightfield":
        return normalized
    from skimage.filters import gaussian, threshold_multiotsu

    step = max(1, int(np.sqrt(normalized.size / 2**20)))
    sample = gaussian(normalized[::step, ::step], 1.0, preserve_range=True)
    try:
        top = float(threshold_multiotsu(sample, classes=3)[1])
    except ValueError:  # too few grey levels for three classes
        return normalized
    return np.clip((normalized - top) / max(1.0 - top, 1e-6), 0, 1).astype(np.float32)


def prepared_plane(
    image: Any,
    *,
    axes: str | None = None,
    channel: int | None = None,
    stain: str = "auto",
    invert: bool | None = None,
    normalizer: Any = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """One normalized plane with bright nuclei, prepared for the stain (steps 1-4, stain-aware).

    ``stain="auto"`` decides from the image (:func:`detect_stain`):

    - ``"fluorescence"``: as :func:`normalized_plane` (no inversion unless asked);
    - ``"he"`` (H&E): normalized and inverted, as nuclei-v1 and nuclei-v2 were
      trained (on DSB2018 H&E images the hematoxylin channel separated nuclei
      no better than the inverted mean: pixel ROC AUC 0.96 vs 0.97 on the
      tune split, and nuclei-v1 fine-tuned on it did not beat it);
    - ``"hematoxylin"`` (RGB only): the hematoxylin optical density by colour
      deconvolution (:func:`hematoxylin`), normalized: nuclei bright, the
      eosin-stained cytoplasm dark;
    - ``"brightfield"``: normalized and inverted (the first size guess of
      :meth:`~cytolens.segment.NucleusSegmenter.estimate_diameter` then uses
      :func:`nuclear_plane`);
    - ``"mean"``: the plain mean of R, G and B and the median rule of
      :func:`normalized_plane` (how ``nuclei-v1`` sees every image).

    ``channel=`` (a chosen channel) always means a grey image.

    Returns
    -------
    normalized : numpy.ndarray of float32, shape (Y, X)
    info : dict
        ``stain`` (the one used) and ``inverted``.

    Raises
    ------
    InputError
        For an unknown ``stain``, ``"hematoxylin"`` on an image without colours, and
        the errors of :func:`cytolens.core.plane.single_plane`.

    Examples
    --------
    >>> rgb = np.full((32, 32, 3), 230, np.uint8)
    >>> rgb[8:16, 8:16] = (90, 60, 160)  # a purple (hematoxylin) nucleus
    >>> x, info = prepared_plane(rgb)
    >>> info["stain"], info["inverted"], bool(x[10, 10] > x[0, 0])
    ('he', True, True)
    >>> prepared_plane(rgb, stain="hematoxylin")[1]
    {'stain': 'hematoxylin', 'inverted': False}
    """
    from cytolens.core.plane import single_plane

    if stain not in STAINS:
        raise InputError(f"stain must be one of {', '.join(STAINS)}; got {stain!r}")
    name = image_name(image)
    plane, _ = single_plane(image, axes=axes, channel=channel, hint=SEGMENT_HINT)
    check_plane(plane, name)
    if stain == "mean":
        x, inverted = normalized_plane(plane, invert=invert, normalizer=normalizer)
        return x, {"stain": "mean", "inverted": inverted}
    wants_rgb = channel is None and stain in ("auto", "hematoxylin")
    rgb = _rgb_planes(image, axes, name) if wants_rgb else None
    if stain == "auto":
        stain = detect_stain(plane, rgb)
    normalize = NORMALIZER if normalizer is None else normalizer.apply
    if stain == "hematoxylin":
        if rgb is None:
            raise InputError(
                f"{name}: stain='hematoxylin' needs an RGB image (hematoxylin is separated by "
                "colour); use stain='he' or 'brightfield' for a grey transmitted-light image"
            )
        x = normalize(hematoxylin(rgb))
        if invert:
            x = np.float32(1) - x
        return x, {"stain": "hematoxylin", "inverted": bool(invert)}
    if stain in ("he", "brightfield"):
        x, inverted = normalized_plane(
            plane, invert=True if invert is None else invert, normalizer=normalizer
        )
        return x, {"stain": stain, "inverted": inverted}
    x, inverted = normalized_plane(
        plane, invert=False if invert is None else invert, normalizer=normalizer
    )
    return x, {"stain": "fluorescence", "inverted": inverted}
