"""Objects of a label movie, one row per object and frame, and scales derived from them.

The tracker never uses the label values to connect frames: a label is only
the name of an object within its own frame. Everything it links on comes from
the table made here (centroid, area) and from pixel overlaps between frames.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from cytolens.core.errors import InputError
from cytolens.core.image import Image
from cytolens.core.tables import FRAME, POSITION_COLUMNS, position_columns
from cytolens.core.validate import check_array, is_dask

__all__ = [
    "check_label_movie",
    "check_looks_like_labels",
    "detections",
    "displacement_scale",
    "estimate_max_distance",
    "movie_name",
]

logger = logging.getLogger(__name__)

#: Frames looked at by :func:`check_looks_like_labels` (evenly spaced).
LOOK_FRAMES = 4
#: A frame whose regions of one value average fewer pixels than this ...
RAW_REGION_PX = 4.0
#: ... and that has more than this many such regions per distinct value ...
RAW_REGIONS_PER_VALUE = 2.0
#: ... or in which more than this fraction of object pixels touch another non-zero value,
#: holds intensities, not labels.
RAW_CONTACT_FRACTION = 0.5


def _regions(frame: np.ndarray) -> tuple[int, int, int, float, bool]:
    """What tells labels from intensities in one frame.

    Returns the number of distinct non-zero values, of regions of one value
    (4-connected), of non-zero pixels, the fraction of these that touch
    another non-zero value, and whether 0 is present.
    """
    from skimage.measure import label

    values = np.unique(frame)
    nonzero = values[values != 0]
    if nonzero.size == 0:
        return 0, 0, 0, 0.0, True
    regions = int(label(frame, background=0, connectivity=1).max())
    touching = np.zeros(frame.shape, bool)
    for axis in range(frame.ndim):
        a = [slice(None)] * frame.ndim
        b = [slice(None)] * frame.ndim
        a[axis], b[axis] = slice(1, None), slice(None, -1)
        lo, hi = frame[tuple(b)], frame[tuple(a)]
        differ = (lo != hi) & (lo != 0) & (hi != 0)
        touching[tuple(b)] |= differ
        touching[tuple(a)] |= differ
    n_pixels = int(np.count_nonzero(frame))
    contact = float(touching.sum()) / n_pixels
    return int(nonzero.size), regions, n_pixels, contact, bool(values[0] == 0)


def movie_name(movie: Any, default: str = "labels") -> str:
    """How a movie is named in messages: its file for an ``Image`` read from one.

    Examples
    --------
    >>> movie_name(np.zeros((2, 4, 4)))
    'labels'
    """
    if isinstance(movie, Image) and movie.path is not None:
        return str(movie.path)
    return default


def check_label_movie(labels: Any, name: str = "labels") -> tuple[Any, str]:
    """Validate a label movie and return it (numpy or Dask) with its axes, ``TYX`` or ``TZYX``.

    An :class:`~cytolens.core.image.Image` is reordered to ``T(Z)YX``; a bare
    array must be 3-D (``TYX``) or 4-D (``TZYX``) with integer labels
    (0 = background).

    Raises
    ------
    InputError
        For a missing time axis, wrong dimensionality, a non-integer dtype or
        negative labels.

    Examples
    --------
    >>> check_label_movie(np.zeros((2, 4, 4), np.uint16))[1]
    'TYX'
    >>> check_label_movie(np.zeros((4, 4), np.uint16))
    Traceback (most recent call last):
    ...
    cytolens.core.errors.InputError: labels must be 3-D or 4-D, got 2-D with shape (4, 4)
    """
    if isinstance(labels, Image):
        name = movie_name(labels, name)
        if "T" not in labels.axes or "C" in labels.axes:
            raise InputError(
                f"{name} has axes {labels.axes!r}; a label movie needs a T axis and no C axis "
                "(expected 'TYX' or 'TZYX')"
            )
        want = "TZYX" if "Z" in labels.axes else "TYX"
        labels = labels.transpose(want).data
    array = check_array(labels, name=name, ndim=(3, 4))
    if array.dtype.kind not in "iu":
        raise InputError(
            f"{name} must hold integer labels (0 = background), got dtype {array.dtype}; "
            "label a binary mask first (skimage.measure.label) or pass raw frames to track_movie"
        )
    if not is_dask(array) and array.dtype.kind == "i" and array.min() < 0:
        raise InputError(f"{name} has negative labels (min {array.min()}); expected 0 = background")
    return array, "TYX" if array.ndim == 3 else "TZYX"


def check_looks_like_labels(labels: Any, name: str = "labels") -> None:
    """Refuse a movie of intensities or a binary mask given where a label movie is expected.

    A label movie has background 0 and objects that are regions of one value,
    so in each frame the number of connected regions of one value is close to
    the number of distinct values (one region per object), regions span
    many pixels, and most object pixels touch only their own value or 0. A
    raw movie stored as integers is the opposite: almost every pixel differs
    from its neighbours, so its values form a great many tiny regions that
    touch each other. Up to :data:`LOOK_FRAMES` evenly spaced frames are
    checked; one is refused when its regions of one value average fewer than
    :data:`RAW_REGION_PX` pixels and either outnumber its distinct values
    more than :data:`RAW_REGIONS_PER_VALUE` times or more than
    :data:`RAW_CONTACT_FRACTION` of its object pixels touch another non-zero
    value. Measured: CTC ground truth (SIM+, GOWT1 markers and
    segmentations) has 1 region per value of hundreds of pixels; raw CTC
    frames have 300 to 2,000 regions per value of 1 to 2 pixels. Spots
    labelled as single pixels pass (one region per value, touching only 0).
    A binary mask (one value in every frame, several separate objects) is
    refused too: the tracker would take all its objects for one.

    Parameters
    ----------
    labels : array_like of int
        Label movie ``TYX`` or ``TZYX`` (numpy or Dask: only the checked
        frames are read).
    name : str
        How the movie is named in messages (its file).

    Raises
    ------
    InputError
        Naming the movie, the frame and what was found.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> check_looks_like_labels(rng.integers(100, 400, (2, 32, 32)), "raw.tif")
    Traceback (most recent call last):
    ...
    cytolens.core.errors.InputError: raw.tif does not look like a label movie: in frame 0, ...
    """
    n_t = labels.shape[0]
    picks = sorted({round(i) for i in np.linspace(0, n_t - 1, min(LOOK_FRAMES, n_t))})
    single: list[tuple[int, np.ndarray]] = []  # frames holding one value
    non_empty = 0
    for t in picks:
        frame = np.asarray(labels[t])
        n_values, n_regions, n_pixels, contact, has_zero = _regions(frame)
        if n_values == 0:
            continue
        non_empty += 1
        size = n_pixels / n_regions
        many = n_regions > RAW_REGIONS_PER_VALUE * n_values or contact > RAW_CONTACT_FRACTION
        if size < RAW_REGION_PX and many:
            background = "" if has_zero else " and no background (no pixel is 0)"
            raise InputError(
                f"{name} does not look like a label movie: in frame {t}, its {n_values} "
                f"distinct values form {n_regions} separate regions of {size:.1f} px on "
                f"average{background}; labels are 0 for background and one value per object, "
                "each a region of many pixels. Is it a raw movie? Then segment it first "
                "(track_movie, or `cytolens track` without --labels)"
            )
        if n_values == 1:
            single.append((t, frame))
    if single and len(single) == non_empty:
        from skimage.measure import label

        for t, frame in single:
            n_objects = int(label(frame > 0, connectivity=2).max())
            if n_objects > 1:
                raise InputError(
                    f"{name} looks like a binary mask, not labels: every frame holds a single "
                    f"value, yet frame {t} has {n_objects} separate objects, which the tracker "
                    "would take for one; label the objects of each frame first "
                    "(e.g. skimage.measure.label)"
                )


def _frame_table(frame: np.ndarray, t: int) -> pd.DataFrame:
    """Centroid and area of every object of one frame (labels sorted)."""
    flat = frame.ravel()
    where = np.flatnonzero(flat)
    ids, inverse, area = np.unique(flat[where], return_inverse=True, return_counts=True)
    coords = np.unravel_index(where, frame.shape)
    centroid = (
        np.stack([np.bincount(inverse, c, minlength=ids.size) for c in coords], axis=1)
        / np.maximum(area, 1)[:, None]
    )
    table = pd.DataFrame({FRAME: np.full(ids.size, t, np.int64), "label": ids})
    for i, col in enumerate(POSITION_COLUMNS[-frame.ndim :]):
        table[col] = centroid[:, i].reshape(-1)
    table["area_px"] = area.astype(np.int64)
    return table


def detections(labels: Any) -> pd.DataFrame:
    """One row per object and frame: ``frame, label, (z_px,) y_px, x_px, area_px``.

    Parameters
    ----------
    labels : array_like of int or Image
        Label movie ``TYX`` or ``TZYX`` (0 = background). Dask arrays are read
        one frame at a time.

    Returns
    -------
    pandas.DataFrame
        ``frame`` index, ``label`` the object's value in that frame,
        centroid ``y_px, x_px`` (and ``z_px``) in pixels, ``area_px`` its
        pixel count (voxels in 3-D). Sorted by ``frame`` then ``label``.

    Examples
    --------
    >>> movie = np.zeros((2, 5, 5), np.uint8)
    >>> movie[0, 1:3, 1:3] = 4
    >>> movie[1, 2:4, 2:4] = 9
    >>> detections(movie)[["frame", "label", "y_px", "x_px", "area_px"]].to_numpy().tolist()
    [[0.0, 4.0, 1.5, 1.5, 4.0], [1.0, 9.0, 2.5, 2.5, 4.0]]
    """
    array, _ = check_label_movie(labels)
    tables = [_frame_table(np.asarray(array[t]), t) for t in range(array.shape[0])]
    return pd.concat(tables, ignore_index=True)


def _positions(table: pd.DataFrame) -> np.ndarray:
    return table[position_columns(table)].to_numpy(np.float64)


def displacement_scale(table: pd.DataFrame) -> float:
    """Median distance from each object to the nearest object of the previous frame (pixels).

    When cells move less than their spacing this is the median step of a
    cell between frames; it is measured before any linking, so it can set
    the linking cutoff. ``0.0`` when fewer than two frames hold objects.

    Examples
    --------
    >>> table = pd.DataFrame({"frame": [0, 1, 1], "y_px": [0, 3, 40.0], "x_px": [0, 4, 0.0]})
    >>> displacement_scale(table)
    22.5
    """
    steps = []
    frames = dict(tuple(table.groupby(FRAME, sort=True)))
    for t, now in frames.items():
        before = frames.get(t - 1)
        if before is None or before.empty or now.empty:
            continue
        dist, _ = cKDTree(_positions(before)).query(_positions(now))
        steps.append(dist)
    return float(np.median(np.concatenate(steps))) if steps else 0.0


def estimate_max_distance(table: pd.DataFrame) -> float:
    """Linking cutoff in pixels derived from object size and motion (the default ``max_distance``).

    ``max(1.5 * d, 4 * s)`` where ``d`` is the median equivalent diameter of
    the objects and ``s`` the median nearest-neighbour step between frames
    (:func:`displacement_scale`). The size term lets an object move by its
    own diameter and reaches both daughters of a division (they appear about
    one radius from the mother's centre); the motion term covers cells that
    move faster than their size: for random motion (Rayleigh-distributed
    steps) four times the median step exceeds 99.99 % of steps. The linear
    assignment picks among the candidates inside the cutoff, so a generous
    cutoff costs time, rarely accuracy.

    Examples
    --------
    >>> table = pd.DataFrame({"frame": [0, 1], "y_px": [0.0, 2.0], "x_px": [0.0, 0.0],
    ...                       "area_px": [314, 314]})
    >>> round(estimate_max_distance(table), 1)  # 1.5 x diameter 20 px
    30.0
    """
    if table.empty:
        return 1.0
    ndim = len(position_columns(table))
    area = float(np.median(table["area_px"]))
    if ndim == 2:
        diameter = 2 * np.sqrt(area / np.pi)
    else:
        diameter = 2 * np.cbrt(3 * area / (4 * np.pi))
    step = displacement_scale(table)
    cutoff = max(1.5 * diameter, 4 * step, 1.0)
    logger.info(
        "max_distance %.1f px (median diameter %.1f px, median step %.1f px)",
        cutoff,
        diameter,
        step,
    )
    return float(cutoff)
