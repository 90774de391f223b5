"""From links between detections to tracks, lineages and a relabelled movie.

Conventions (those of the Cell Tracking Challenge, so that every table and
movie made here can be written as a CTC result without change):

- a track is a run of one object in consecutive frames; its id is its label
  in the relabelled movie;
- a division ends the mother's track; each daughter starts a new track whose
  ``parent_track_id`` is the mother's;
- a closed gap also starts a new track, whose parent is the track before the
  gap (a parent with a single child is a gap, not a division).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cytolens.core.errors import InputError
from cytolens.core.tables import FRAME
from cytolens.core.validate import is_dask

__all__ = ["assemble_tracks", "ctc_table", "divisions", "relabel"]


def assemble_tracks(table: pd.DataFrame, links: Any) -> pd.DataFrame:
    """Give every detection a ``track_id`` and ``parent_track_id`` from the links between them.

    Parameters
    ----------
    table : pandas.DataFrame
        Detections with at least ``frame`` (e.g. from
        :func:`~cytolens.track.detections.detections`), one row per object.
    links : array_like of int, shape (n, 2)
        ``(from, to)`` pairs of positions (``0 .. len(table) - 1``) in
        ``table``, ``to`` later in time than ``from``. A detection has at
        most one incoming link; two outgoing links make a division.

    Returns
    -------
    pandas.DataFrame
        ``table`` with columns ``track_id`` (1, 2, ... numbered by start
        frame) and ``parent_track_id`` (0 = none) first, sorted by
        ``track_id`` then ``frame``.

    Raises
    ------
    InputError
        When a detection has two incoming links, more than two outgoing
        ones, or a link goes backwards in time.

    Examples
    --------
    >>> table = pd.DataFrame({"frame": [0, 1, 1, 3]})
    >>> assemble_tracks(table, [(0, 1), (0, 2), (1, 3)])[["track_id", "frame", "parent_track_id"]]
       track_id  frame  parent_track_id
    0         1      0                0
    1         2      1                1
    2         3      1                1
    3         4      3                2
    """
    n = len(table)
    links = np.asarray(links, dtype=np.int64).reshape(-1, 2)
    t = table[FRAME].to_numpy()
    if links.size:
        if links.min() < 0 or links.max() >= n:
            raise InputError(f"links refer to rows outside 0..{n - 1}")
        back = np.flatnonzero(t[links[:, 1]] <= t[links[:, 0]])
        if back.size:
            a, b = links[back[0]]
            raise InputError(f"link {a} -> {b} does not go forward in time ({t[a]} -> {t[b]})")
    n_in = np.bincount(links[:, 1], minlength=n)
    n_out = np.bincount(links[:, 0], minlength=n)
    if (n_in > 1).any():
        raise InputError(f"detection {int(np.argmax(n_in > 1))} has more than one incoming link")
    if (n_out > 2).any():
        raise InputError(f"detection {int(np.argmax(n_out > 2))} has more than two outgoing links")
    pred = np.full(n, -1)
    pred[links[:, 1]] = links[:, 0]
    # a detection continues its predecessor's track only along a single link to the next frame
    continues = (pred >= 0) & (n_out[np.maximum(pred, 0)] == 1) & (t - t[np.maximum(pred, 0)] == 1)
    order = np.lexsort((np.arange(n), t))  # by time: predecessors come first
    track = np.zeros(n, np.int64)
    parent = np.zeros(n, np.int64)
    next_id = 1
    for i in order:
        if continues[i]:
            track[i] = track[pred[i]]
            parent[i] = parent[pred[i]]
        else:
            track[i] = next_id
            next_id += 1
            parent[i] = track[pred[i]] if pred[i] >= 0 else 0
    out = table.copy()
    out.insert(0, "track_id", track)
    out["parent_track_id"] = parent
    return out.sort_values(["track_id", FRAME], kind="stable")


def ctc_table(tracks: pd.DataFrame) -> pd.DataFrame:
    """The CTC track table ``label, begin, end, parent`` of a tracks DataFrame.

    Examples
    --------
    >>> tracks = pd.DataFrame({"track_id": [1, 1, 2], "frame": [0, 1, 2],
    ...                        "parent_track_id": [0, 0, 1]})
    >>> ctc_table(tracks).to_numpy().tolist()
    [[1, 0, 1, 0], [2, 2, 2, 1]]
    """
    if tracks.empty:
        return pd.DataFrame(np.zeros((0, 4), np.int64), columns=["label", "begin", "end", "parent"])
    grouped = tracks.groupby("track_id", sort=True)
    table = pd.DataFrame(
        {
            "label": grouped[FRAME].min().index.to_numpy(np.int64),
            "begin": grouped[FRAME].min().to_numpy(np.int64),
            "end": grouped[FRAME].max().to_numpy(np.int64),
            "parent": grouped["parent_track_id"].first().to_numpy(np.int64),
        }
    )
    return table.reset_index(drop=True)


def divisions(tracks: pd.DataFrame) -> pd.DataFrame:
    """One row per division: ``parent_track_id``, ``frame`` (mother's last frame), ``daughters``.

    Examples
    --------
    >>> tracks = pd.DataFrame({"track_id": [1, 2, 3], "frame": [0, 1, 1],
    ...                        "parent_track_id": [0, 1, 1]})
    >>> divisions(tracks).to_dict("records")
    [{'parent_track_id': 1, 'frame': 0, 'daughters': (2, 3)}]
    """
    table = ctc_table(tracks)
    children = table[table["parent"] > 0].groupby("parent")["label"].apply(tuple)
    children = children[children.apply(len) >= 2]
    end = table.set_index("label")["end"]
    return pd.DataFrame(
        {
            "parent_track_id": children.index.to_numpy(np.int64),
            FRAME: end.loc[children.index].to_numpy(np.int64),
            "daughters": [tuple(int(c) for c in v) for v in children.to_numpy()],
        }
    )


def _relabel_frame(frame: np.ndarray, labels: np.ndarray, ids: np.ndarray, dtype: Any) -> Any:
    lut = np.zeros(int(frame.max(initial=0)) + 1, dtype)
    lut[labels] = ids
    return lut[frame]


def relabel(labels: Any, tracks: pd.DataFrame) -> Any:
    """The label movie with each object replaced by its ``track_id`` (0 for untracked objects).

    Parameters
    ----------
    labels : numpy.ndarray or dask.array.Array
        Label movie ``T(Z)YX`` the tracks were computed from.
    tracks : pandas.DataFrame
        Columns ``frame``, ``label``, ``track_id``.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        Same kind and shape as ``labels``; uint16 when the ids fit (as CTC
        expects), else uint32.

    Examples
    --------
    >>> movie = np.array([[[5, 0]], [[0, 7]]])
    >>> tracks = pd.DataFrame({"frame": [0, 1], "label": [5, 7], "track_id": [1, 1]})
    >>> relabel(movie, tracks).tolist()
    [[[1, 0]], [[0, 1]]]
    """
    top = int(tracks["track_id"].max()) if len(tracks) else 0
    dtype = np.uint16 if top < 2**16 else np.uint32
    groups = {
        int(t): (g["label"].to_numpy(np.int64), g["track_id"].to_numpy())
        for t, g in tracks.groupby(FRAME)
    }
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    if is_dask(labels):
        import dask
        import dask.array as da

        planes = [
            da.from_delayed(
                dask.delayed(_relabel_frame)(labels[t], *groups.get(t, empty), dtype),
                labels.shape[1:],
                dtype,
            )
            for t in range(labels.shape[0])
        ]
        return da.stack(planes)
    out = np.zeros(labels.shape, dtype)
    for t in range(labels.shape[0]):
        out[t] = _relabel_frame(np.asarray(labels[t]), *groups.get(t, empty), dtype)
    return out
