"""Track features in physical units: per step, per track, and mean squared displacement.

All functions take a tracks table as :func:`cytolens.track.track` returns it
(``track_id``, ``frame``, ``(z_px,) y_px, x_px``, one row per object and frame)
and convert with ``pixel_size_um`` (one size for every spatial axis, or one
per axis as ``{"Z": .., "Y": .., "X": ..}``) and ``frame_interval_s``. Column
names carry their units: ``speed_um_per_s`` when both are given,
``speed_px_per_frame`` when neither is (and the mixed forms in between).

Examples
--------
>>> import pandas as pd
>>> tracks = pd.DataFrame({"track_id": 1, "frame": [0, 1, 2], "y_px": 5.0, "x_px": [0, 3, 6.0]})
>>> track_features(tracks, pixel_size_um=0.5, frame_interval_s=2.0)[
...     ["displacement_um", "mean_speed_um_per_s", "straightness"]].to_numpy().tolist()
[[3.0, 0.75, 1.0]]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from cytolens.core.errors import InputError
from cytolens.core.tables import FRAME, axis_sizes, position_columns

__all__ = ["mean_squared_displacement", "step_features", "track_features"]


def _units(pixel_size_um: Any, frame_interval_s: float | None) -> tuple[str, str]:
    length = "um" if pixel_size_um is not None else "px"
    time = "s" if frame_interval_s is not None else "frame"
    return length, time


def _positions(tracks: pd.DataFrame, pixel_size_um: Any) -> np.ndarray:
    """Spatial coordinates of every row, scaled to micrometres when a pixel size is given."""
    missing = {"track_id", FRAME} - set(tracks.columns)
    columns = position_columns(tracks)
    if missing or len(columns) < 2:
        raise InputError(
            "tracks table needs columns track_id, frame, (z_px,) y_px, x_px; got "
            f"{list(tracks.columns)} (read a tracks.csv of an earlier version with "
            "cytolens.core.tables.read_table)"
        )
    pos = tracks[columns].to_numpy(np.float64)
    if pixel_size_um is None:
        return pos
    return pos * axis_sizes(pixel_size_um, [c[0] for c in columns])


def _frame_interval(frame_interval_s: float | None) -> float:
    if frame_interval_s is None:
        return 1.0
    if not np.isfinite(frame_interval_s) or frame_interval_s <= 0:
        raise InputError(f"frame_interval_s must be positive, got {frame_interval_s!r}")
    return float(frame_interval_s)


def step_features(
    tracks: pd.DataFrame,
    *,
    pixel_size_um: float | Mapping[str, float] | None = None,
    frame_interval_s: float | None = None,
) -> pd.DataFrame:
    """One row per track point: the step from the track's previous point, and its speed.

    Parameters
    ----------
    tracks : pandas.DataFrame
        ``track_id``, ``frame``, ``(z_px,) y_px, x_px``.
    pixel_size_um : float or mapping, optional
        Pixel size in um (or per axis); lengths stay in pixels without it.
    frame_interval_s : float, optional
        Seconds between frames; times stay in frames without it.

    Returns
    -------
    pandas.DataFrame
        In the order of ``tracks``: ``track_id``, ``frame``, ``step_<L>`` (distance
        moved since the previous point), ``dt_<T>``, ``speed_<L>_per_<T>``,
        ``displacement_<L>`` (distance from the track's first point); the
        first point of each track has NaN step and speed.

    Examples
    --------
    >>> tracks = pd.DataFrame({"track_id": 1, "frame": [0, 1, 3], "y_px": 0.0, "x_px": [0, 4, 8.0]})
    >>> step_features(tracks, pixel_size_um=0.25)["speed_um_per_frame"].tolist()
    [nan, 1.0, 0.5]
    """
    length, time = _units(pixel_size_um, frame_interval_s)
    pos = _positions(tracks, pixel_size_um)
    dt_scale = _frame_interval(frame_interval_s)
    order = np.lexsort((tracks[FRAME].to_numpy(), tracks["track_id"].to_numpy()))
    ids = tracks["track_id"].to_numpy()[order]
    t = tracks[FRAME].to_numpy(np.float64)[order]
    p = pos[order]
    same = np.r_[False, ids[1:] == ids[:-1]]
    step = np.full(len(p), np.nan)
    dt = np.full(len(p), np.nan)
    step[1:] = np.linalg.norm(np.diff(p, axis=0), axis=1)
    dt[1:] = np.diff(t) * dt_scale
    step[~same], dt[~same] = np.nan, np.nan
    first = np.maximum.accumulate(np.where(~same, np.arange(len(p)), 0))
    displacement = np.linalg.norm(p - p[first], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        speed = step / dt
    out = pd.DataFrame(
        {
            "track_id": ids,
            FRAME: tracks[FRAME].to_numpy()[order],
            f"step_{length}": step,
            f"dt_{time}": dt,
            f"speed_{length}_per_{time}": speed,
            f"displacement_{length}": displacement,
        },
        index=tracks.index[order],
    )
    return out.loc[tracks.index]


def track_features(
    tracks: pd.DataFrame,
    *,
    pixel_size_um: float | Mapping[str, float] | None = None,
    frame_interval_s: float | None = None,
) -> pd.DataFrame:
    """One row per track: duration, path length, net displacement, straightness, speeds.

    Returns
    -------
    pandas.DataFrame
        ``track_id``, ``n_points``, ``frame_start``, ``frame_end``, ``duration_<T>``,
        ``path_length_<L>`` (sum of steps), ``displacement_<L>`` (first to last
        point), ``straightness`` (displacement / path length, 1 for a straight
        path, NaN for a track that never moves), ``mean_speed_<L>_per_<T>``
        (path length / duration) and ``max_speed_<L>_per_<T>``.

    Examples
    --------
    >>> tracks = pd.DataFrame({"track_id": 7, "frame": [0, 1, 2], "y_px": [0, 3, 0.0], "x_px": 0.0})
    >>> columns = ["path_length_px", "displacement_px", "straightness"]
    >>> track_features(tracks).loc[0, columns].tolist()
    [6.0, 0.0, 0.0]
    """
    length, time = _units(pixel_size_um, frame_interval_s)
    steps = step_features(tracks, pixel_size_um=pixel_size_um, frame_interval_s=frame_interval_s)
    speed = f"speed_{length}_per_{time}"
    grouped = steps.groupby("track_id", sort=True)
    out = pd.DataFrame(
        {
            "n_points": grouped.size(),
            "frame_start": grouped[FRAME].min(),
            "frame_end": grouped[FRAME].max(),
            f"duration_{time}": grouped[f"dt_{time}"].sum(min_count=1).fillna(0.0),
            f"path_length_{length}": grouped[f"step_{length}"].sum(),
        }
    )
    # net displacement: from the first point to the one at the last time point
    last = steps.sort_values(["track_id", FRAME]).groupby("track_id")[f"displacement_{length}"]
    out[f"displacement_{length}"] = last.last()
    with np.errstate(invalid="ignore", divide="ignore"):
        path = out[f"path_length_{length}"].to_numpy()
        out["straightness"] = np.where(path > 0, out[f"displacement_{length}"] / path, np.nan)
        duration = out[f"duration_{time}"].to_numpy()
        out[f"mean_speed_{length}_per_{time}"] = np.where(duration > 0, path / duration, np.nan)
    out[f"max_speed_{length}_per_{time}"] = grouped[speed].max()
    return out.reset_index()


def mean_squared_displacement(
    tracks: pd.DataFrame,
    *,
    pixel_size_um: float | Mapping[str, float] | None = None,
    frame_interval_s: float | None = None,
    max_lag: int | None = None,
) -> pd.DataFrame:
    """Time- and ensemble-averaged mean squared displacement over all tracks, per lag.

    Lags count frames; pairs of points of one track ``lag`` frames apart
    (by ``frame``, so gaps are respected) contribute.

    Returns
    -------
    pandas.DataFrame
        ``lag_frames``, ``lag_<T>``, ``msd_<L>2``, ``n_pairs``, for lags 1 ..
        ``max_lag`` (default: the longest track's span) with at least one pair.

    Examples
    --------
    >>> tracks = pd.DataFrame({"track_id": 1, "frame": range(4), "y_px": 0.0, "x_px": range(4)})
    >>> mean_squared_displacement(tracks, pixel_size_um=2.0)["msd_um2"].tolist()
    [4.0, 16.0, 36.0]
    """
    length, time = _units(pixel_size_um, frame_interval_s)
    pos = _positions(tracks, pixel_size_um)
    dt_scale = _frame_interval(frame_interval_s)
    ids = tracks["track_id"].to_numpy()
    t = tracks[FRAME].to_numpy().astype(np.int64)
    span = 0
    per_track = []
    for tid in np.unique(ids):
        sel = ids == tid
        per_track.append((t[sel], pos[sel]))
        span = max(span, int(t[sel].max() - t[sel].min()))
    max_lag = span if max_lag is None else int(max_lag)
    if max_lag < 1:
        raise InputError(f"max_lag must be at least 1 (tracks span {span} frames)")
    sums = np.zeros(max_lag + 1)
    counts = np.zeros(max_lag + 1, np.int64)
    for tt, pp in per_track:
        index = {int(v): k for k, v in enumerate(tt)}
        for lag in range(1, max_lag + 1):
            pairs = [(index[v], index[v + lag]) for v in index if v + lag in index]
            if not pairs:
                continue
            a, b = np.array(pairs).T
            sums[lag] += np.sum((pp[b] - pp[a]) ** 2)
            counts[lag] += len(pairs)
    lags = np.flatnonzero(counts)
    return pd.DataFrame(
        {
            "lag_frames": lags,
            f"lag_{time}": lags * dt_scale,
            f"msd_{length}2": sums[lags] / counts[lags],
            "n_pairs": counts[lags],
        }
    )
