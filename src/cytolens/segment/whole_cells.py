"""Whole cells: cell bodies grown from nuclei (or from the cell foreground alone).

:func:`cells` segments whole cells in an image of a cytoplasm or membrane
stain (e.g. microtubules, ER, actin, a cell mask dye), optionally with a
nuclear stain:

1. the *cell signal*: the cell channels, each percentile-normalized (1, 99.8;
   from a bounded sample of the whole image, :func:`~cytolens.core.normalize.sample_percentiles`),
   summed with half the nuclear channel (so nuclei, often dim in a cytoplasm
   stain, count as cell) and smoothed by a Gaussian;
2. the *cell foreground*: the signal above ``threshold_factor`` (0.5) times its
   Otsu level (cell edges are dim), joined with the seeds, holes filled;
3. *seeds*: the nuclei (given as labels, or segmented in ``nuclear_channel``
   by :func:`~cytolens.segment.nuclei_classical` or the learned
   :func:`~cytolens.segment.nuclei`); without any nuclear stain, a fallback
   (:func:`foreground_seeds`): the nuclei's dark holes in the cytoplasm
   stain, else maxima of the foreground's distance transform;
4. a watershed from the seeds within the foreground: of the inverted signal
   when seeded by nuclei (each foreground pixel joins the nucleus it is best
   connected to), of the distance to the seeds for the fallback (its seeds
   sit in dark holes). Cell ``k`` grows from seed ``k`` (nucleus ``k``).
   The fallback is much weaker on confluent cells (benchmark): give a
   nuclear channel when there is one.

The HPA per-cell workflow (:func:`cytolens.classify.cells.segment_cells`)
runs the same core, :func:`seeded_cells`.

Large images are processed tile by tile (:func:`~cytolens.core.tiling.iter_tiles`)
with a halo of at least one cell diameter: the Otsu level comes from a
histogram accumulated over the tiles' cores, seeds carry global labels, and
each tile writes only the pixels it owns, so memory stays at a few tiles
beside the label image. On images that fit in one tile the result is the
whole-plane one. Dask input is read tile by tile; the nuclei segmented from
``nuclear_channel`` are computed on the whole plane (pass ``nuclei=`` for
slides too large for that).

:func:`cell_quality` measures a result without ground truth (cells with one
nucleus, foreground covered, cell-to-nucleus area ratio) and
:func:`doubtful_notes` turns those measures into plain warnings.
:func:`whole_cell_stain_score` tells a nuclear stain from a whole-cell stain,
so that ``cytolens segment nuclei`` can say when it was given the wrong one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from cytolens.core.errors import InputError
from cytolens.segment.representation import drop_small_objects

__all__ = [
    "NUCLEUS_METHODS",
    "cell_quality",
    "cell_table",
    "cells",
    "doubtful_notes",
    "seeded_cells",
    "whole_cell_note",
    "whole_cell_stain_score",
]

logger = logging.getLogger(__name__)

#: Landscapes the seeded watershed can flood (:func:`seeded_cells`).
FLOODS = ("signal", "gradient", "distance")
#: How :func:`cells` finds nuclei in ``nuclear_channel``.
NUCLEUS_METHODS = ("classical", "model")
#: The foreground is the signal above this fraction of its Otsu level.
THRESHOLD_FACTOR = 0.5
#: Gaussian sigma (px) applied to the cell signal.
SMOOTH = 2.0
#: Bins of the histogram the tiled Otsu level is taken from.
OTSU_BINS = 1024
#: Ratio of ``2 * max(distance transform)`` per object to the equivalent diameter,
#: as in :data:`cytolens.segment.classical.DIAMETER_CALIBRATION`.
DIAMETER_CALIBRATION = 0.86
#: A cell is about this many times as wide as its nucleus (:func:`estimate_cell_diameter`;
#: 3 gave more HPA cells with one nucleus than 2 on the first 16 HPA images, 0.50 vs 0.46).
CELL_TO_NUCLEUS = 3.0
#: Median cell-to-nucleus area ratio below which cells are "barely larger than nuclei".
MIN_AREA_RATIO = 1.5


def _otsu(signal: np.ndarray) -> float:
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(signal)) if np.ptp(signal) > 0 else 0.0


def seeded_cells(
    signal: np.ndarray,
    seeds: np.ndarray,
    *,
    level: float | None = None,
    threshold_factor: float = THRESHOLD_FACTOR,
    flood: str = "signal",
) -> np.ndarray:
    """Cells grown from seeds: a watershed of ``-signal`` within the cell foreground.

    The core of :func:`cells` (per tile) and of the HPA cell step.

    Parameters
    ----------
    signal : numpy.ndarray, shape (Y, X)
        The smoothed cell signal (bright cells).
    seeds : numpy.ndarray of int, shape (Y, X)
        Seed labels (nuclei); 0 = none.
    level : float, optional
        The foreground's reference level; Otsu's threshold of ``signal`` when
        omitted.
    threshold_factor : float
        Foreground: ``signal > threshold_factor * level``, joined with the
        seeds, holes filled.
    flood : {"signal", "gradient", "distance"}
        The landscape the watershed floods: ``-signal`` (cells meet in the
        signal's valleys; the HPA step's choice), the signal's gradient
        magnitude (Sobel; cells meet at edges, whatever their brightness),
        or the distance to the seeds (a Voronoi partition of the foreground,
        for seeds in dark places such as the nuclei's holes in a cytoplasm
        stain, which an intensity flood from bright seeds would surround).

    Returns
    -------
    numpy.ndarray of int32
        Cell ``k`` grows from seed ``k``; foreground without a seed stays 0.

    Examples
    --------
    >>> yy, xx = np.mgrid[:40, :80]
    >>> disc = lambda cx: (yy - 20) ** 2 + (xx - cx) ** 2 < 15**2
    >>> signal = (disc(20) | disc(55)).astype(np.float32)
    >>> seeds = np.zeros((40, 80), np.int32)
    >>> seeds[20, 20], seeds[20, 55] = 1, 2
    >>> out = seeded_cells(signal, seeds)
    >>> int(out[20, 10]), int(out[20, 65]), int(out[2, 2])
    (1, 2, 0)
    """
    from skimage.segmentation import watershed

    seeds = np.asarray(seeds)
    if level is None:
        level = _otsu(signal)
    mask = ndi.binary_fill_holes((signal > threshold_factor * level) | (seeds > 0))
    if flood == "distance":  # each pixel joins the nearest seed it is connected to
        landscape = ndi.distance_transform_edt(seeds == 0)
    elif flood == "gradient":
        from skimage.filters import sobel

        landscape = sobel(signal)
    elif flood == "signal":
        landscape = -signal
    else:
        raise InputError(f"flood must be one of {FLOODS}, got {flood!r}")
    return watershed(landscape, markers=seeds, mask=mask).astype(np.int32)


def distance_seeds(foreground: np.ndarray, diameter: float) -> np.ndarray:
    """Seed points of touching cells without nuclei: maxima of the smoothed distance transform.

    Parameters
    ----------
    foreground : numpy.ndarray of bool
    diameter : float
        Typical cell diameter (px): maxima are at least a third of it apart
        and the distance transform is smoothed by ``diameter / 16``.

    Returns
    -------
    numpy.ndarray of int, shape (n, 2)
        ``(y, x)`` of the seeds.

    Examples
    --------
    >>> yy, xx = np.mgrid[:40, :80]
    >>> fg = ((yy - 20) ** 2 + (xx - 22) ** 2 < 15**2) | ((yy - 20) ** 2 + (xx - 52) ** 2 < 15**2)
    >>> len(distance_seeds(fg, 30))
    2
    """
    from skimage.feature import peak_local_max

    dist = ndi.gaussian_filter(ndi.distance_transform_edt(foreground), max(1.0, diameter / 16))
    return peak_local_max(
        dist,
        min_distance=max(1, round(diameter / 3)),
        threshold_abs=max(1.0, diameter / 8),
        labels=ndi.label(foreground)[0],
        exclude_border=False,
    )


def _foreground_mask(signal: np.ndarray, level: float, threshold_factor: float) -> np.ndarray:
    return signal > threshold_factor * level


def _foreground(signal: np.ndarray, level: float, threshold_factor: float) -> np.ndarray:
    return ndi.binary_fill_holes(_foreground_mask(signal, level, threshold_factor))


def foreground_seeds(mask: np.ndarray, diameter: float) -> np.ndarray:
    """Seeds of cells without a nuclear stain: the nuclei's dark holes, else distance maxima.

    In a cytoplasm stain the nuclei are dark holes inside bright cells: the
    holes of the thresholded foreground whose size and shape fit a nucleus
    (equivalent diameter between a tenth and 0.7 of a cell diameter,
    filling at least half of their bounding box) are seeds. Foreground
    objects without such a hole get the maxima of their distance transform
    (:func:`distance_seeds`).

    Parameters
    ----------
    mask : numpy.ndarray of bool
        The thresholded cell foreground (holes not filled).
    diameter : float
        Typical cell diameter (px).

    Returns
    -------
    numpy.ndarray of int32
        Seed labels 1..N.

    Examples
    --------
    >>> yy, xx = np.mgrid[:60, :120]
    >>> r2 = lambda cx: (yy - 30) ** 2 + (xx - cx) ** 2
    >>> mask = ((r2(30) < 25**2) & (r2(30) > 8**2)) | (r2(90) < 25**2)  # one cell with a hole
    >>> seeds = foreground_seeds(mask, 50)
    >>> int(seeds.max()), int(seeds[30, 30] > 0), int(seeds[30, 90] > 0)
    (2, 1, 1)
    """
    filled = ndi.binary_fill_holes(mask)
    seeds = _nucleus_holes(mask, filled, diameter / 10, 0.7 * diameter)
    objects, _ = ndi.label(filled)
    with_hole = np.zeros(int(objects.max()) + 1, bool)
    with_hole[np.unique(objects[seeds > 0])] = True
    peaks = distance_seeds(filled & ~with_hole[objects], diameter)
    seeds[tuple(peaks.T)] = int(seeds.max()) + np.arange(1, len(peaks) + 1)
    return seeds


def estimate_cell_diameter(mask: np.ndarray) -> float | None:
    """Typical cell diameter (px) from the thresholded cell foreground (holes not filled).

    Two estimates, the smaller wins: the median over foreground objects (holes
    filled) of ``2 * max(distance to background) / 0.86``, which measures
    separate cells but a whole sheet of confluent ones; and, when the
    foreground has at least three nucleus-like holes (dark nuclei in a
    cytoplasm stain; :func:`_nucleus_holes`), :data:`CELL_TO_NUCLEUS` times
    their area-weighted median equivalent diameter.

    Examples
    --------
    >>> yy, xx = np.mgrid[:80, :80]
    >>> round(estimate_cell_diameter((yy - 40) ** 2 + (xx - 40) ** 2 < 20**2))
    47
    """
    filled = ndi.binary_fill_holes(mask)
    objects, n = ndi.label(filled)
    if n == 0:
        return None
    index = np.arange(1, n + 1)
    widths = 2 * ndi.maximum(ndi.distance_transform_edt(filled), objects, index)
    areas = ndi.sum(filled, objects, index)
    keep = areas >= max(9.0, 0.02 * areas.max())
    estimate = float(np.median(widths[keep]) / DIAMETER_CALIBRATION)
    holes = _nucleus_holes(mask, filled, 3.0, estimate)
    area = np.bincount(holes.ravel())[1:]
    area = np.sort(area[area > 0])
    if len(area) >= 3:
        median_area = area[np.searchsorted(np.cumsum(area), area.sum() / 2)]
        estimate = min(estimate, CELL_TO_NUCLEUS * float(np.sqrt(4 * median_area / np.pi)))
    return estimate


def _nucleus_holes(mask: np.ndarray, filled: np.ndarray, smallest: float, largest: float) -> Any:
    """Holes of ``mask``, equivalent diameter in ``[smallest, largest]``, filling half their box."""
    holes, n = ndi.label(filled & ~mask)
    if not n:
        return holes
    index = np.arange(1, n + 1)
    area = np.bincount(holes.ravel(), minlength=n + 1)[1:]
    box = np.array(
        [(b[0].stop - b[0].start) * (b[1].stop - b[1].start) for b in ndi.find_objects(holes)]
    )
    d_eq = np.sqrt(4 * area / np.pi)
    keep = (d_eq >= smallest) & (d_eq <= largest) & (area >= 0.5 * box)
    lut = np.zeros(n + 1, np.int32)
    lut[index[keep]] = np.arange(1, int(keep.sum()) + 1)
    return lut[holes]


def _n_channels(image: Any, axes: str | None) -> int:
    """Channels of an image as :func:`~cytolens.core.plane.single_plane` sees them."""
    from cytolens.core.image import Image

    if isinstance(image, Image):
        axes, shape = (image.axes if axes is None else axes), image.data.shape
    else:
        shape = np.shape(image)
    if axes is None:
        return 3 if len(shape) == 3 and shape[-1] in (3, 4) else 1
    return int(shape[axes.upper().index("C")]) if "C" in axes.upper() else 1


def _planes(
    image: Any,
    axes: str | None,
    channel: int | Sequence[int] | None,
    nuclear_channel: int | None,
    name: str,
) -> tuple[list[Any], Any]:
    """The cell planes and the nuclear plane (lazy for Dask), float32."""
    from cytolens.core.plane import single_plane
    from cytolens.segment.preprocess import SEGMENT_HINT

    def plane(c: int | None) -> Any:
        return single_plane(image, axes=axes, channel=c, name=name, hint=SEGMENT_HINT, lazy=True)[0]

    n_c = _n_channels(image, axes)
    for what, c in [("nuclear_channel", nuclear_channel)] + [
        ("channel", c) for c in ([] if channel is None else np.atleast_1d(channel).tolist())
    ]:
        if c is not None and not (isinstance(c, (int, np.integer)) and 0 <= c < n_c):
            raise InputError(
                f"{name}: {what}={c!r} is out of range: the image has {n_c} channel(s) "
                f"(0..{n_c - 1})"
            )
    if channel is None:
        if nuclear_channel is None:
            chosen: list[int | None] = [None]
        else:
            chosen = [c for c in range(n_c) if c != nuclear_channel]
            if not chosen:
                raise InputError(
                    f"{name} has only the nuclear channel {nuclear_channel}; whole cells need a "
                    f"cytoplasm or membrane channel (channel=, --cell-channel)"
                )
    else:
        chosen = [int(c) for c in np.atleast_1d(channel)]
        if nuclear_channel in chosen:
            raise InputError(
                f"{name}: channel {nuclear_channel} is both the nuclear and a cell channel; "
                f"give the cytoplasm/membrane channel(s) as channel= (--cell-channel)"
            )
    cell_planes = [plane(c) for c in chosen]
    nuclear = plane(nuclear_channel) if nuclear_channel is not None else None
    return cell_planes, nuclear


def _scaled(plane: Any) -> tuple[float, float]:
    """``(offset, scale)`` mapping the plane's 1st and 99.8th percentiles to 0 and 1."""
    from cytolens.core.normalize import sample_percentiles

    lo, hi = sample_percentiles(plane, 1.0, 99.8)
    return lo, 1.0 / (hi - lo) if hi > lo else 0.0


class _Signal:
    """The smoothed cell signal, computed on any window of the image (tile + halo)."""

    def __init__(self, cell_planes: list[Any], nuclear: Any, smooth: float) -> None:
        self.parts = [(p, *_scaled(p), 1.0) for p in cell_planes]
        if nuclear is not None:
            self.parts.append((nuclear, *_scaled(nuclear), 0.5))
        self.smooth = smooth
        self.radius = math.ceil(4 * smooth) if smooth > 0 else 0

    def bounds(self) -> tuple[float, float]:
        """Lowest and highest possible value of the signal (smoothing stays within them)."""
        lo = hi = 0.0
        for plane, offset, scale, weight in self.parts:
            a = (float(np.min(plane)) - offset) * scale * weight
            b = (float(np.max(plane)) - offset) * scale * weight
            lo, hi = lo + a, hi + b
        return lo, hi

    def __call__(self, window: tuple[slice, ...]) -> np.ndarray:
        out = None
        for plane, lo, scale, weight in self.parts:
            x = (np.asarray(plane[window], np.float32) - np.float32(lo)) * np.float32(
                scale * weight
            )
            out = x if out is None else out + x
        assert out is not None
        return ndi.gaussian_filter(out, self.smooth) if self.smooth > 0 else out


def _tiled_level(signal: Any, tiles: list[Any], bounds: tuple[float, float]) -> float:
    """Otsu's level of the smoothed signal from a histogram accumulated over the tiles' cores."""
    from skimage.filters import threshold_otsu

    lo, hi = bounds
    if not hi > lo:
        return 0.0
    counts = np.zeros(OTSU_BINS, np.int64)
    edges = np.linspace(lo, hi, OTSU_BINS + 1)
    for tile in tiles:
        core = signal(tile.read)[tile.crop]
        counts += np.histogram(np.clip(core, lo, hi), bins=edges)[0]
    if np.count_nonzero(counts) < 2:
        return 0.0
    return float(threshold_otsu(hist=(counts, (edges[:-1] + edges[1:]) / 2)))


def _check_nuclei(nuclei: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    from cytolens.core.validate import check_array

    lab = np.asarray(check_array(nuclei, name="nuclei", ndim=2))
    if lab.shape != tuple(shape):
        raise InputError(
            f"{name}: nuclei labels have shape {lab.shape}; expected {tuple(shape)} like the image"
        )
    if lab.dtype.kind not in "biu" or (lab.dtype.kind == "i" and lab.size and lab.min() < 0):
        raise InputError(
            f"{name}: nuclei must be a label image of non-negative integers, got dtype {lab.dtype}"
        )
    return lab


def cells(
    image: Any,
    nuclei: Any = None,
    *,
    axes: str | None = None,
    channel: int | Sequence[int] | None = None,
    nuclear_channel: int | None = None,
    pixel_size_um: Any = None,
    cell_diameter: float | None = None,
    nucleus_diameter: float | None = None,
    nucleus_method: str = "classical",
    min_nucleus_area: float = 0,
    threshold_factor: float = THRESHOLD_FACTOR,
    flood: str = "signal",
    smooth: float = SMOOTH,
    tile_shape: int | None = 2048,
    device: str = "auto",
    return_nuclei: bool = False,
) -> Any:
    """Segment whole cells in a cytoplasm or membrane stain, seeded by nuclei when there are any.

    Parameters
    ----------
    image : array_like, dask.array.Array or cytolens.io.Image
        A 2-D image: ``(Y, X)`` (the cell stain alone), RGB(A), or channels
        with ``axes`` (e.g. ``"CYX"``) or from the ``Image``.
    nuclei : array_like of int, shape (Y, X), optional
        Nucleus labels to seed the cells (cell ``k`` grows from nucleus
        ``k``); when omitted they are segmented in ``nuclear_channel``.
    axes : str, optional
        Axes of a plain array (OME letters), e.g. ``"CYX"``.
    channel : int or sequence of int, optional
        Cell (cytoplasm/membrane) channel(s); several are summed after
        normalization. Default: every channel but ``nuclear_channel`` (or the
        image itself when it has one channel; RGB is averaged).
    nuclear_channel : int, optional
        The nuclear stain's channel: nuclei are segmented there (unless
        ``nuclei`` is given) and half of it joins the cell signal.
    pixel_size_um : float, (float, float) or dict, optional
        Pixel size; when given, ``cell_diameter`` and ``nucleus_diameter``
        are in micrometres.
    cell_diameter : float, optional
        Typical cell diameter: the tile halo and, without nuclei, the spacing
        of seeds. Estimated from the cell foreground when omitted.
    nucleus_diameter : float, optional
        Typical nucleus diameter for the nucleus segmentation (estimated
        when omitted).
    nucleus_method : {"classical", "model"}
        :func:`~cytolens.segment.nuclei_classical` or the learned
        :func:`~cytolens.segment.nuclei` on ``nuclear_channel``.
    min_nucleus_area : float
        Nuclei smaller than this (px) are dropped (with their cells).
    threshold_factor : float
        The cell foreground is the signal above this fraction of its Otsu
        level (cell edges are dim): in ``(0, 2]``.
    flood : {"signal", "gradient"}
        Where cells seeded by nuclei meet: in the valleys of the signal
        (default, as the HPA step) or at its edges (Sobel gradient; better
        when neighbouring cells differ in brightness: synthetic AP@0.5 1.0
        vs 0.96 in ``benchmarks/segmentation_cells.py``, but ragged on
        fibrous stains). The fallback always floods by distance.
    smooth : float
        Gaussian sigma (px) of the cell signal, ``>= 0``.
    tile_shape : int or None
        Side of the tiles (halo included; at least 3 cell diameters);
        ``None`` processes the whole plane at once.
    device : str
        Where the learned nucleus model runs (``nucleus_method="model"``).
    return_nuclei : bool
        Also return the nuclei (seeds) as labels.

    Returns
    -------
    cells : numpy.ndarray of uint32, shape (Y, X)
        0 = background, ``k`` = the cell of nucleus ``k`` (or of seed ``k``).
    nuclei : numpy.ndarray of uint32, shape (Y, X)
        Only with ``return_nuclei``: the seeds' nuclei, numbered like the
        cells (all zero without nuclei).

    Raises
    ------
    InputError
        For a channel out of range, a nuclear channel also given as cell
        channel, nuclei labels of another shape or not integer, a 3-D stack,
        a non-positive diameter or an invalid option.

    Warns
    -----
    UserWarning
        When the result is doubtful (:func:`doubtful_notes`): no seeds, cells
        barely larger than their nuclei, most of the foreground without a
        nucleus, a foreground covering almost the whole image.

    Examples
    --------
    >>> yy, xx = np.mgrid[:96, :160]
    >>> img = np.zeros((2, 96, 160), np.float32)
    >>> for cx in (40, 120):
    ...     img[0][(yy - 48) ** 2 + (xx - cx) ** 2 < 30**2] = 1  # cytoplasm
    ...     img[1][(yy - 48) ** 2 + (xx - cx) ** 2 < 12**2] = 1  # nucleus
    >>> out = cells(img, axes="CYX", channel=0, nuclear_channel=1, nucleus_diameter=24)
    >>> int(out.max()), bool(out[48, 65] == out[48, 40] != out[48, 100])
    (2, True)
    """
    import warnings

    from cytolens.core.tiling import iter_tiles
    from cytolens.segment.classical import checked_diameter_px
    from cytolens.segment.preprocess import check_plane, image_name

    name = image_name(image)
    if nucleus_method not in NUCLEUS_METHODS:
        raise InputError(f"nucleus_method must be one of {NUCLEUS_METHODS}, got {nucleus_method!r}")
    if flood not in FLOODS[:2]:
        raise InputError(f"flood must be 'signal' or 'gradient', got {flood!r}")
    for what, value, lo, hi in (
        ("threshold_factor", threshold_factor, 0.0, 2.0),
        ("smooth", smooth, -1e-12, 64.0),
        ("min_nucleus_area", min_nucleus_area, -1e-12, math.inf),
    ):
        if not (isinstance(value, (int, float, np.number)) and lo < float(value) <= hi):
            raise InputError(f"{what} must be a number in ({max(lo, 0):g}, {hi:g}], got {value!r}")
    cell_planes, nuclear = _planes(image, axes, channel, nuclear_channel, name)
    shape = tuple(cell_planes[0].shape)
    check_plane(np.zeros(shape, np.float32), name)  # size checks without reading the image
    d_cell = checked_diameter_px(cell_diameter, pixel_size_um, shape, name)
    signal = _Signal(cell_planes, nuclear, float(smooth))

    # seeds: nuclei given, segmented in the nuclear channel, or none (distance seeds below)
    nuc = None
    if nuclei is not None:
        nuc = _check_nuclei(nuclei, shape, name)
    elif nuclear is not None:
        nuc = _segment_nuclei(nuclear, nucleus_method, nucleus_diameter, pixel_size_um, device)
    if nuc is not None and min_nucleus_area > 0:
        nuc = drop_small_objects(nuc, min_nucleus_area, dtype=np.int32)

    whole = tile_shape is None or max(shape) <= tile_shape
    if not whole and (
        isinstance(tile_shape, bool) or not isinstance(tile_shape, (int, np.integer))
    ):
        raise InputError(f"tile_shape must be whole pixels or None, got {tile_shape!r}")
    full = signal(tuple(slice(0, n) for n in shape)) if whole else None

    def sig(window: tuple[slice, ...]) -> np.ndarray:
        return full[window] if full is not None else signal(window)

    if d_cell is None:  # from the whole plane, or from the central tile of a large one
        side = max(shape) if whole else int(tile_shape)
        probe = sig(
            tuple(slice(max(0, (n - side) // 2), max(0, (n - side) // 2) + side) for n in shape)
        )
        d_cell = estimate_cell_diameter(_foreground_mask(probe, _otsu(probe), threshold_factor))
        d_cell = float(np.clip(d_cell or 0.1 * min(shape), 3.0, min(shape)))
        logger.info("estimated cell diameter: %.1f px", d_cell)
    halo = max(signal.radius + 1, math.ceil(d_cell))
    if whole:
        tiles = iter_tiles(shape, None)
    elif tile_shape < 3 * halo:
        raise InputError(
            f"{name}: tile_shape {tile_shape} is too small for cells of about {d_cell:.0f} px: "
            f"tiles need a halo of one cell diameter on each side; give at least {3 * halo} "
            f"(or None for the whole plane)"
        )
    else:
        tiles = iter_tiles(shape, int(tile_shape), overlap=halo)
    level = _tiled_level(sig, tiles, signal.bounds())

    out = np.zeros(shape, np.uint32)
    if nuc is None:  # fallback seeds (module notes), each owned by the tile whose core holds it
        nuc = np.zeros(shape, np.int32)
        total = 0
        for tile in tiles:
            local = foreground_seeds(
                _foreground_mask(sig(tile.read), level, threshold_factor), d_cell
            )
            n = int(local.max())
            if not n:
                continue
            centres = np.array(ndi.center_of_mass(local > 0, local, np.arange(1, n + 1)))
            lo = [sl.start - r.start for sl, r in zip(tile.write, tile.read, strict=True)]
            hi = [sl.stop - r.start for sl, r in zip(tile.write, tile.read, strict=True)]
            own = ((np.round(centres) >= lo) & (np.round(centres) < hi)).all(axis=1)
            lut = np.zeros(n + 1, np.int32)
            lut[1:][own] = total + np.arange(1, int(own.sum()) + 1)
            total += int(own.sum())
            ids = lut[local]
            nuc[tile.read][ids > 0] = ids[ids > 0]
        seeded = False
    else:
        seeded = True
    counts = np.zeros(2, np.int64)  # foreground pixels, and those left unlabelled
    for tile in tiles:
        s = sig(tile.read)
        labels = seeded_cells(
            s,
            np.asarray(nuc[tile.read]),
            level=level,
            threshold_factor=threshold_factor,
            flood=flood if seeded else "distance",
        )
        out[tile.write] = labels[tile.crop]
        fg = (s > threshold_factor * level)[tile.crop]
        counts += (int(fg.sum()), int((fg & (labels[tile.crop] == 0)).sum()))
    seeds_out = nuc.astype(np.uint32, copy=False) if seeded else np.zeros(shape, np.uint32)
    quality = cell_quality(out, seeds_out if seeded else None)
    quality["foreground_fraction"] = round(float(counts[0] / out.size), 4)
    quality["unseeded_foreground_fraction"] = round(float(counts[1] / max(counts[0], 1)), 4)
    for note in doubtful_notes(quality, seeded=seeded, name=name):
        warnings.warn(note, UserWarning, stacklevel=2)
    logger.info("segmented %d cells (%s)", quality["cells"], "nuclei" if seeded else "no nuclei")
    return (out, seeds_out) if return_nuclei else out


def _segment_nuclei(
    plane: Any, method: str, diameter: float | None, pixel_size_um: Any, device: str
) -> np.ndarray:
    """Nuclei of the nuclear plane (whole plane; Dask input is computed)."""
    plane = np.asarray(plane, np.float32)
    if not np.ptp(plane) > 0:
        return np.zeros(plane.shape, np.int32)
    size = pixel_size_um if diameter is not None else None
    if method == "model":
        from cytolens.segment import nuclei

        return np.asarray(
            nuclei(plane, diameter=diameter, pixel_size_um=size, device=device), np.int32
        )
    from cytolens.segment import nuclei_classical

    return np.asarray(nuclei_classical(plane, diameter=diameter, pixel_size_um=size), np.int32)


def cell_quality(cells: np.ndarray, nuclei: np.ndarray | None = None) -> dict[str, Any]:
    """Measures of a cell segmentation that need no ground truth (and can fail).

    Parameters
    ----------
    cells : numpy.ndarray of int
        Cell labels.
    nuclei : numpy.ndarray of int, optional
        Nucleus labels of the same image (segmented independently, or the seeds).

    Returns
    -------
    dict
        ``cells``; with ``nuclei``: ``nuclei``, ``one_nucleus_fraction`` (cells
        holding exactly one nucleus, a nucleus counting for the cell that holds
        most of it), ``no_nucleus_fraction``, ``nuclei_in_cells_fraction``,
        ``count_ratio`` (cells / nuclei), ``median_area_ratio`` (cell area /
        area of its nuclei, over cells with nuclei). :func:`cells` adds
        ``foreground_fraction`` (of the image) and
        ``unseeded_foreground_fraction`` (foreground left unlabelled).

    Examples
    --------
    >>> cells = np.zeros((10, 20), np.int32)
    >>> cells[:, :10], cells[:, 10:] = 1, 2
    >>> nuc = np.zeros_like(cells)
    >>> nuc[4:6, 4:6], nuc[4:6, 14:16], nuc[0:2, 12:14] = 1, 2, 3
    >>> q = cell_quality(cells, nuc)
    >>> q["one_nucleus_fraction"], q["count_ratio"]
    (0.5, 0.6667)
    """
    cells = np.asarray(cells)
    ids = np.unique(cells[cells > 0])
    out: dict[str, Any] = {"cells": len(ids)}
    if nuclei is None:
        return out
    nuclei = np.asarray(nuclei)
    nids = np.unique(nuclei[nuclei > 0])
    out["nuclei"] = len(nids)
    if not len(nids) or not len(ids):
        none = 1.0 if len(ids) else 0.0
        out.update(one_nucleus_fraction=0.0, no_nucleus_fraction=none, count_ratio=0.0,
                   nuclei_in_cells_fraction=0.0, median_area_ratio=None)  # fmt: skip
        return out
    # each nucleus belongs to the cell that covers most of it (or to none)
    inside = nuclei > 0
    pairs = np.stack([nuclei[inside], cells[inside]]).astype(np.int64)
    uniq, counts = np.unique(pairs, axis=1, return_counts=True)
    order = np.lexsort((-counts, uniq[0]))
    uniq = uniq[:, order]
    first = np.r_[True, uniq[0, 1:] != uniq[0, :-1]]
    owner = dict(zip(uniq[0, first].tolist(), uniq[1, first].tolist(), strict=True))
    owned = [c for c in owner.values() if c > 0]
    per_cell = np.bincount(owned, minlength=int(cells.max()) + 1)[ids]
    out["one_nucleus_fraction"] = round(float(np.mean(per_cell == 1)), 4)
    out["no_nucleus_fraction"] = round(float(np.mean(per_cell == 0)), 4)
    out["nuclei_in_cells_fraction"] = round(len(owned) / len(nids), 4)
    out["count_ratio"] = round(len(ids) / len(nids), 4)
    cell_area = np.bincount(cells.ravel(), minlength=int(cells.max()) + 1)
    nuc_area = np.bincount(nuclei.ravel(), minlength=int(nuclei.max()) + 1)
    per_cell_nuc = np.zeros(int(cells.max()) + 1)
    for n, c in owner.items():
        if c > 0:
            per_cell_nuc[c] += nuc_area[n]
    has = ids[per_cell_nuc[ids] > 0]
    ratio = cell_area[has] / per_cell_nuc[has]
    out["median_area_ratio"] = round(float(np.median(ratio)), 3) if len(has) else None
    return out


def doubtful_notes(quality: dict[str, Any], *, seeded: bool, name: str = "image") -> list[str]:
    """Plain warnings about a result that is probably wrong, from :func:`cell_quality`.

    Examples
    --------
    >>> doubtful_notes({"cells": 0}, seeded=False, name="a.tif")[0][:40]
    'a.tif: no cells found (no cell foregroun'
    >>> doubtful_notes({"cells": 5, "nuclei": 5, "median_area_ratio": 1.1}, seeded=True)[0][:50]
    'image: cells are barely larger than their nuclei ('
    """
    notes = []
    if quality.get("cells", 0) == 0:
        what = "no nuclei in the nuclear channel" if seeded else "no cell foreground"
        notes.append(f"{name}: no cells found ({what}); check the channels and the image")
        return notes
    ratio = quality.get("median_area_ratio")
    if seeded and ratio is not None and ratio < MIN_AREA_RATIO:
        notes.append(
            f"{name}: cells are barely larger than their nuclei (median area ratio {ratio:.2f}): "
            f"is the cell channel a nuclear stain, or the cytoplasm too dim to threshold?"
        )
    cover = quality.get("foreground_fraction")
    if cover is not None and cover > 0.95:
        notes.append(
            f"{name}: the cell foreground covers {cover:.0%} of the image: cells are confluent "
            f"or the background is bright; cell borders follow the signal's valleys only"
        )
    left = quality.get("unseeded_foreground_fraction")
    if seeded and left is not None and left > 0.3:
        notes.append(
            f"{name}: {left:.0%} of the cell foreground holds no nucleus and stays unlabelled "
            f"(nuclei missed, or cells whose nucleus lies outside the image)"
        )
    return notes


def cell_table(
    cells: np.ndarray,
    nuclei: np.ndarray | None = None,
    intensity_image: Any = None,
    pixel_size_um: Any = None,
) -> Any:
    """One row per cell: :func:`~cytolens.segment.measure` columns plus its nucleus.

    Returns
    -------
    pandas.DataFrame
        The columns of :func:`cytolens.segment.measure` (``label``,
        ``area_px``, ... and ``area_um2`` ... with ``pixel_size_um``), plus
        with ``nuclei``: ``nucleus_area_px`` (pixels of nucleus ``label``
        inside the cell), ``nucleus_area_um2`` with a pixel size, and
        ``nucleus_to_cell_area`` (unitless).

    Examples
    --------
    >>> cells = np.zeros((10, 10), np.int32)
    >>> cells[1:9, 1:9] = 1
    >>> nuc = np.zeros_like(cells)
    >>> nuc[3:7, 3:7] = 1
    >>> table = cell_table(cells, nuc, pixel_size_um=0.5)
    >>> table[["label", "area_um2", "nucleus_area_um2"]].values.tolist()
    [[1.0, 16.0, 4.0]]
    """
    from cytolens.segment.measure import _pixel_size_yx, measure

    table = measure(cells, intensity_image, pixel_size_um=pixel_size_um)
    if nuclei is not None and len(table):
        lab = table["label"].to_numpy()
        same = (np.asarray(nuclei) == np.asarray(cells)) & (np.asarray(cells) > 0)
        area = np.bincount(np.asarray(cells)[same].ravel(), minlength=int(lab.max()) + 1)[lab]
        table["nucleus_area_px"] = area.astype(np.float64)
        size = _pixel_size_yx(pixel_size_um)
        if size is not None:
            table["nucleus_area_um2"] = table["nucleus_area_px"] * size[0] * size[1]
        table["nucleus_to_cell_area"] = table["nucleus_area_px"] / table["area_px"]
    elif nuclei is not None:
        for column in ("nucleus_area_px", "nucleus_to_cell_area"):
            table[column] = np.zeros(0)
    return table


def whole_cell_stain_score(
    image: Any, *, axes: str | None = None, channel: int | None = None
) -> float:
    """How much a plane looks like a whole-cell (cytoplasm) stain rather than a nuclear one.

    A cytoplasm or membrane stain leaves the nuclei dark inside bright cells:
    its thresholded foreground has holes. The score is the fraction of the
    filled foreground (Otsu threshold of the plane smoothed at a sixteenth of
    the estimated object diameter, specks dropped) that the holes take. On
    the shared data: nuclear stains (DSB2018 fluorescence/histology/
    brightfield, BBBC006 Hoechst, GOWT1, HPA nucleus channel; 269 images)
    score at most 0.078, 95 % below 0.025; HPA microtubule and ER channels
    (150 images) score a median 0.13. Above :data:`WHOLE_CELL_HOLE` (0.04,
    chosen on those images) 89 % of the cytoplasm channels and 0.7 % of the
    nuclear stains are flagged (``benchmarks/segmentation_cells.py``).
    Planes above 4 Mpx are read with a stride.

    Examples
    --------
    >>> yy, xx = np.mgrid[:96, :96]
    >>> r2 = (yy - 48) ** 2 + (xx - 48) ** 2
    >>> round(whole_cell_stain_score(((r2 < 30**2) & (r2 > 10**2)).astype(np.float32)), 2)
    0.07
    >>> whole_cell_stain_score((r2 < 20**2).astype(np.float32))
    0.0
    """
    from skimage.filters import threshold_otsu

    from cytolens.core.plane import single_plane
    from cytolens.segment.classical import estimate_diameter
    from cytolens.segment.preprocess import SEGMENT_HINT, normalized_plane

    plane = single_plane(image, axes=axes, channel=channel, hint=SEGMENT_HINT, lazy=True)[0]
    step = max(1, math.ceil(math.sqrt(plane.shape[0] * plane.shape[1] / 4e6)))
    x, _ = normalized_plane(np.asarray(plane[::step, ::step], np.float32))
    d = estimate_diameter(x) or 16.0
    xs = ndi.gaussian_filter(x, max(1.0, d / 16))
    if not np.ptp(xs) > 0:
        return 0.0
    mask = xs > threshold_otsu(xs)
    filled = ndi.binary_fill_holes(mask)
    objects, n = ndi.label(filled)
    if n == 0:
        return 0.0
    sizes = np.bincount(objects.ravel())
    keep = sizes >= max(9, 0.02 * sizes[1:].max())
    keep[0] = False
    filled = keep[objects]
    return float(1 - (mask & filled).sum() / max(int(filled.sum()), 1))


#: :func:`whole_cell_stain_score` above this: the plane looks like a whole-cell stain.
WHOLE_CELL_HOLE = 0.04


def whole_cell_note(score: float, name: str = "image") -> str | None:
    """The warning for a nucleus segmentation given a whole-cell stain (None if it looks nuclear).

    Examples
    --------
    >>> whole_cell_note(0.0) is None
    True
    >>> whole_cell_note(0.2, "a.tif")[:60]
    'warning: a.tif looks like a whole-cell (cytoplasm/membrane) '
    """
    if score <= WHOLE_CELL_HOLE:
        return None
    return (
        f"warning: {name} looks like a whole-cell (cytoplasm/membrane) stain, not a nuclear one "
        f"(dark holes fill {score:.0%} of its foreground; nuclear stains stay below "
        f"{WHOLE_CELL_HOLE:.0%}): nucleus segmentation gives nothing useful there; use "
        f"'cytolens segment cells' (with --nuclear-channel if there is a nuclear stain)"
    )
