"""Per-frame segmentation for tracking raw movies: a classical baseline and the hook for models.

:func:`segment_threshold` is the baseline (global threshold, per-object local
refinement, watershed splitting of merged objects), good enough for
fluorescent nuclei that rarely touch, and the default. Measured end to end on
every frame of the Cell Tracking Challenge movies (``benchmarks/tracking.py``,
scores cross-checked with py-ctcmetrics): on Fluo-N2DH-GOWT1 01 the learned
model is slightly better (DET/SEG/TRA 0.971/0.866/0.969 against
0.965/0.851/0.965), on Fluo-N2DH-SIM+ 01 much worse (0.717/0.637/0.716 against
0.945/0.789/0.938: its size estimate falls to a third of the textured
nuclei, which then split; given the true size it only matches the
baseline on 9 sampled frames), so the baseline stays the default.
``"nuclei"`` uses :func:`cytolens.segment.nuclei`, ``"auto"`` the latter when
installed; any callable frame -> labels can be passed too.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from cytolens.core.errors import InputError, ModelError
from cytolens.core.image import Image
from cytolens.core.validate import check_array

__all__ = [
    "SEGMENTERS",
    "check_found_objects",
    "get_segmenter",
    "segment_movie",
    "segment_threshold",
]

logger = logging.getLogger(__name__)

#: Names accepted by ``segmenter=``.
SEGMENTERS = ("auto", "threshold", "nuclei")
#: What each named segmenter is, for messages.
_DESCRIPTIONS = {
    "threshold": "'threshold' (the classical baseline for bright nuclei)",
    "nuclei": "'nuclei' (the nucleus model of cytolens.segment)",
    "auto": "'auto' (the nucleus model of cytolens.segment when installed, else 'threshold')",
}


def _refine(smooth: np.ndarray, candidates: np.ndarray, margin: int) -> np.ndarray:
    """Redraw each candidate's outline with a Li threshold of its own neighbourhood.

    Nuclei of one field differ in brightness several-fold, so one global
    threshold draws dim nuclei too small and bright ones too large; a local
    threshold per object fits each outline to its own contrast.
    """
    from skimage.filters import threshold_li

    out = np.zeros(candidates.shape, np.int32)
    for i, box in enumerate(ndi.find_objects(candidates), start=1):
        if box is None:
            continue
        box = tuple(slice(max(0, b.start - margin), b.stop + margin) for b in box)
        region = smooth[box]
        own = ndi.binary_dilation(candidates[box] == i, iterations=margin)
        inside = own & (region > threshold_li(region)) & (out[box] == 0)
        out[box][ndi.binary_fill_holes(inside)] = i
    return out


def _split_merged(labels: np.ndarray, typical_area: float) -> np.ndarray:
    """Split objects over 1.5 times the typical area by a distance-transform watershed."""
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    areas = np.bincount(labels.ravel())
    big = np.flatnonzero(areas > 1.5 * typical_area)
    big = big[big > 0]
    if big.size == 0:
        return labels
    radius = np.sqrt(typical_area / np.pi)
    out = labels.copy()
    next_id = int(labels.max()) + 1
    for i in big:
        box = ndi.find_objects((labels == i).astype(np.int8))[0]
        mask = labels[box] == i
        dist = ndi.gaussian_filter(ndi.distance_transform_edt(mask), 1.0)
        peaks = peak_local_max(dist, min_distance=max(2, int(0.6 * radius)), labels=mask)
        if len(peaks) < 2:
            continue
        markers = np.zeros(mask.shape, np.int32)
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
        parts = watershed(-dist, markers, mask=mask)
        region = out[box]
        region[mask] = np.where(parts[mask] == 1, i, parts[mask] - 2 + next_id)
        next_id += len(peaks) - 1
    return out


def segment_threshold(
    image: Any,
    *,
    sigma: float = 2.0,
    threshold: str = "triangle",
    refine: bool = True,
    split: bool = True,
    min_area: int | None = None,
) -> np.ndarray:
    """Label bright objects (nuclei) of one 2-D frame by thresholding: the tracking baseline.

    Steps: Gaussian smoothing (``sigma`` pixels); a global threshold that
    finds every object, dim ones included (``"triangle"``, made for a
    dominant dark background with sparse bright objects); holes filled;
    each object's outline redrawn with a Li threshold of its own
    neighbourhood (``refine``); objects smaller than ``min_area`` removed;
    objects over 1.5 times the typical area split by a watershed on the
    distance transform (``split``). No object size needs to be given: the
    typical size is the area-weighted median area of the objects found.

    Parameters
    ----------
    image : array_like
        One frame, 2-D.
    sigma : float
        Smoothing before thresholding, in pixels.
    threshold : {"triangle", "otsu", "li"}
        Global threshold method (scikit-image ``threshold_*``).
    refine : bool
        Redraw outlines with a local threshold per object.
    split : bool
        Split objects that look merged (over 1.5 times the typical area).
    min_area : int, optional
        Smallest object kept, in pixels; default a tenth of the typical
        object area (at least 8).

    Returns
    -------
    numpy.ndarray of int32
        Labels 1..N, 0 = background.

    Examples
    --------
    >>> yy, xx = np.mgrid[:40, :40]
    >>> img = ((yy - 10) ** 2 + (xx - 10) ** 2 < 25) + ((yy - 28) ** 2 + (xx - 28) ** 2 < 36)
    >>> int(segment_threshold(img.astype(np.float32)).max())
    2
    """
    from skimage import filters
    from skimage.segmentation import relabel_sequential

    methods = {
        "triangle": filters.threshold_triangle,
        "otsu": filters.threshold_otsu,
        "li": filters.threshold_li,
    }
    if threshold not in methods:
        raise InputError(f"threshold must be one of {sorted(methods)}, got {threshold!r}")
    img = np.asarray(check_array(image, name="frame", ndim=2), dtype=np.float32)
    smooth = ndi.gaussian_filter(img, sigma) if sigma > 0 else img
    if float(smooth.max()) == float(smooth.min()):
        return np.zeros(img.shape, np.int32)
    labels, n = ndi.label(ndi.binary_fill_holes(smooth > methods[threshold](smooth)))
    if n == 0:
        return labels.astype(np.int32)
    if refine:
        labels = _refine(smooth, labels, margin=max(2, int(np.ceil(2 * sigma))))
    areas = np.bincount(labels.ravel())[1:]
    typical = _typical_area(areas)
    if min_area is None:
        min_area = max(8, int(0.1 * typical))
    labels[np.isin(labels, np.flatnonzero(areas < min_area) + 1)] = 0
    if split:
        labels = _split_merged(labels, typical)
    return relabel_sequential(labels)[0].astype(np.int32)


def _typical_area(areas: np.ndarray) -> float:
    """Area-weighted median object area: the size of the object a foreground pixel lies in.

    Unlike the plain median it is not dragged down by many specks of noise.

    Examples
    --------
    >>> _typical_area(np.array([1, 1, 1, 1, 1, 100, 120]))  # the plain median is 1
    120.0
    """
    areas = np.sort(areas[areas > 0]).astype(np.float64)
    if areas.size == 0:
        return 8.0
    cumulative = np.cumsum(areas)
    return float(areas[np.searchsorted(cumulative, cumulative[-1] / 2)])


def _nuclei() -> Callable[[np.ndarray], Any] | None:
    """``cytolens.segment.nuclei`` when that capability is installed, else None."""
    try:
        module = importlib.import_module("cytolens.segment")
    except ImportError:
        return None
    return getattr(module, "nuclei", None)


class _Auto:
    """``cytolens.segment.nuclei``, falling back to the baseline when its model is not shipped."""

    def __init__(self, model: Callable[[np.ndarray], Any]) -> None:
        self.model: Callable[[np.ndarray], Any] | None = model
        self.__name__ = "auto"

    def __call__(self, frame: np.ndarray) -> Any:
        if self.model is not None:
            try:
                return self.model(frame)
            except ModelError as exc:
                logger.warning("cytolens.segment.nuclei unavailable (%s); using the baseline", exc)
                self.model = None
        return segment_threshold(frame)


def get_segmenter(segmenter: str | Callable[[np.ndarray], Any]) -> Callable[[np.ndarray], Any]:
    """The per-frame segmentation function named by ``segmenter`` (see :data:`SEGMENTERS`).

    ``"auto"`` tries :func:`cytolens.segment.nuclei` and falls back to
    :func:`segment_threshold` when that capability or its model is missing.

    Examples
    --------
    >>> get_segmenter("threshold").__name__
    'segment_threshold'
    """
    if callable(segmenter):
        return segmenter
    if segmenter not in SEGMENTERS:
        raise InputError(f"segmenter must be one of {SEGMENTERS} or a callable, got {segmenter!r}")
    if segmenter == "threshold":
        return segment_threshold
    model = _nuclei()
    if segmenter == "nuclei":
        if model is None:
            raise InputError(
                "segmenter='nuclei' needs cytolens.segment.nuclei, which this installation "
                "lacks; use segmenter='threshold'"
            )
        return model
    if model is None:
        logger.info("cytolens.segment.nuclei unavailable; using the threshold baseline")
        return segment_threshold
    return _Auto(model)


def _as_labels(result: Any, shape: tuple[int, ...], t: int) -> np.ndarray:
    """Labels from whatever a segmenter returns (array, Image, or object with ``.labels``)."""
    if hasattr(result, "labels") and not isinstance(result, np.ndarray):
        result = result.labels
    if isinstance(result, Image):
        result = result.data
    labels = np.asarray(result)
    if labels.shape != shape or labels.dtype.kind not in "biu":
        raise InputError(
            f"the segmenter returned shape {labels.shape} dtype {labels.dtype} for frame {t}; "
            f"expected integer labels of shape {shape}"
        )
    return labels


def segment_movie(
    frames: Any,
    *,
    segmenter: str | Callable[[np.ndarray], Any] = "threshold",
    progress: Callable[[str, int, int], None] | None = None,
) -> np.ndarray:
    """Segment each frame of a ``T(Z)YX`` movie; returns the label movie (uint16 or uint32).

    Examples
    --------
    >>> movie = np.zeros((2, 16, 16), np.float32)
    >>> movie[:, 4:10, 4:10] = 1
    >>> segment_movie(movie, segmenter="threshold").max(axis=(1, 2)).tolist()
    [1, 1]
    """
    if isinstance(frames, Image):
        if "T" not in frames.axes or "C" in frames.axes:
            raise InputError(
                f"frames have axes {frames.axes!r}; expected a single-channel movie 'TYX' or 'TZYX'"
            )
        frames = frames.transpose("TZYX" if "Z" in frames.axes else "TYX").data
    frames = check_array(frames, name="frames", ndim=(3, 4))
    fn = get_segmenter(segmenter)
    n_t = frames.shape[0]
    out = np.zeros(frames.shape, np.uint16)
    for t in range(n_t):
        frame = np.asarray(frames[t])
        if frame.dtype.kind == "f" and not np.isfinite(frame).all():
            raise InputError(f"frame {t} has NaN or infinite values")
        labels = _as_labels(fn(frame), frame.shape, t)
        if labels.max(initial=0) >= 2**16 and out.dtype == np.uint16:
            out = out.astype(np.uint32)
        out[t] = labels
        if progress is not None:
            progress("segmenting", t + 1, n_t)
    return out


def check_found_objects(
    labels: Any,
    segmenter: str | Callable[[np.ndarray], Any],
    name: str = "the movie",
    *,
    option: str = "segmenter=",
) -> None:
    """Refuse a segmentation that found no object in any frame: there is nothing to track.

    Zero tracks reported as a success hide the usual cause: a segmenter made
    for another kind of image (e.g. the nucleus model on whole cells, or on
    transmitted light).

    Parameters
    ----------
    labels : array_like
        The label movie :func:`segment_movie` returned.
    segmenter : str or callable
        The segmenter that made it, named in the message.
    name : str
        The movie (its file), for the message.
    option : str
        How the user chooses a segmenter (``"--segmenter "`` on the command line).

    Raises
    ------
    InputError

    Examples
    --------
    >>> check_found_objects(np.zeros((3, 8, 8), np.uint16), "nuclei", "movie.tif")
    Traceback (most recent call last):
    ...
    cytolens.core.errors.InputError: segmenter 'nuclei' (...) found no objects in any of the 3 ...
    """
    n_t = labels.shape[0]
    if any(np.asarray(labels[t]).any() for t in range(n_t)):
        return
    if callable(segmenter):
        what = repr(getattr(segmenter, "__name__", segmenter))
        others: tuple[str, ...] = ("threshold", "nuclei")
    else:
        what = _DESCRIPTIONS.get(segmenter, repr(segmenter))
        others = ("nuclei",) if segmenter == "threshold" else ("threshold",)
    tries = " or ".join(f"{option}{s}" for s in others)
    raise InputError(
        f"segmenter {what} found no objects in any of the {n_t} frames of {name}; "
        f"nothing to track. Try {tries}, or segment the movie with a tool made for these "
        "cells and track the label movie"
    )
