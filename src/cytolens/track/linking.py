"""Linking detections into a lineage graph by linear assignment (Jaqaman et al. 2008).

Two stages, as in u-track and TrackMate's LAP tracker:

1. **Frame to frame.** Objects of frame ``t`` are assigned to objects of
   ``t + 1``. A pair closer than ``max_distance`` costs
   ``(d / max_distance)^2 * (1 - overlap_weight * IoU)``; leaving an object
   unlinked (track end or start) costs 1. Maximizing the total saving
   ``1 - cost`` over one-to-one assignments is the augmented LAP of Jaqaman
   et al. with birth + death cost 1, solved with
   :func:`scipy.optimize.linear_sum_assignment` on each connected group of
   candidate pairs.
2. **Segments.** Track starts are assigned at once to (a) track ends 2 to
   ``gap_closing + 1`` frames earlier (gap closing, cost
   ``d^2 / (max_distance^2 * frames elapsed)``) or (b) an object of the
   previous frame whose track goes on (a division: that object becomes a
   mother with two daughters). The division cost sums three cues, each 0 for
   an ideal division and 1 where that cue alone rejects it: the mother's
   distance from the daughters' midpoint (relative to half their
   separation), area conservation ``(log2((a1 + a2) / a_mother))^2``, and how
   little the continuing daughter moved compared with a typical step
   (``(step / displacement)^2``).

Links are returned as pairs of row indices of the detections table.

References
----------
Jaqaman, K. et al. Robust single-particle tracking in live-cell time-lapse
sequences. Nat. Methods 5, 695-702 (2008).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from cytolens.core.tables import FRAME, position_columns
from cytolens.evaluate.matching import overlap_matrix
from cytolens.track.config import TrackerConfig

__all__ = ["assign", "link_frames", "link_segments"]

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


def _components(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> Iterator[Any]:
    """Indices (into the pair arrays) of each connected group of candidate pairs."""
    graph = sparse.coo_matrix(
        (np.ones(rows.size), (rows, n_rows + cols)), shape=(n_rows + n_cols,) * 2
    )
    _, comp = connected_components(graph, directed=False)
    pair_comp = comp[rows]
    order = np.argsort(pair_comp, kind="stable")
    bounds = np.flatnonzero(np.diff(pair_comp[order])) + 1
    yield from np.split(order, bounds)


def assign(
    rows: np.ndarray,
    cols: np.ndarray,
    gain: np.ndarray,
    *,
    method: str = "lap",
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one choice of candidate pairs with positive gain, maximizing the total gain.

    Parameters
    ----------
    rows, cols : numpy.ndarray of int
        Candidate pairs (any non-negative ids; each pair listed once).
    gain : numpy.ndarray of float
        Saving of each pair over leaving both unlinked; pairs with
        ``gain <= 0`` are never chosen.
    method : {"lap", "nearest"}
        Optimal assignment per connected group, or greedy by decreasing gain.

    Returns
    -------
    rows, cols : numpy.ndarray of int
        The chosen pairs.

    Examples
    --------
    >>> r, c = assign(np.array([0, 0, 1]), np.array([0, 1, 0]), np.array([0.9, 0.5, 0.8]))
    >>> sorted(zip(r.tolist(), c.tolist()))
    [(0, 1), (1, 0)]
    >>> assign(np.array([0, 0, 1]), np.array([0, 1, 0]), np.array([0.9, 0.5, 0.8]),
    ...        method="nearest")[1].tolist()
    [0]
    """
    keep = gain > 0
    rows, cols, gain = rows[keep], cols[keep], gain[keep]
    if rows.size == 0:
        return rows, cols
    if method == "nearest":
        used_r, used_c, chosen = set(), set(), []
        for i in np.argsort(-gain, kind="stable"):
            if rows[i] not in used_r and cols[i] not in used_c:
                used_r.add(rows[i])
                used_c.add(cols[i])
                chosen.append(i)
        chosen = np.array(chosen, dtype=int)
        return rows[chosen], cols[chosen]
    r_ids, r_idx = np.unique(rows, return_inverse=True)
    c_ids, c_idx = np.unique(cols, return_inverse=True)
    out_r, out_c = [], []
    for members in _components(r_idx, c_idx, r_ids.size, c_ids.size):
        rr, r_local = np.unique(r_idx[members], return_inverse=True)
        cc, c_local = np.unique(c_idx[members], return_inverse=True)
        matrix = np.zeros((rr.size, cc.size))
        matrix[r_local, c_local] = gain[members]
        i, j = linear_sum_assignment(matrix, maximize=True)
        ok = matrix[i, j] > 0
        out_r.append(r_ids[rr[i[ok]]])
        out_c.append(c_ids[cc[j[ok]]])
    return np.concatenate(out_r), np.concatenate(out_c)


def _positions(table: pd.DataFrame) -> np.ndarray:
    return table[position_columns(table)].to_numpy(np.float64)


def _pairs_within(a: np.ndarray, b: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j) with ``|a[i] - b[j]| <= radius``."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    near = cKDTree(a).query_ball_tree(cKDTree(b), radius)
    rows = np.repeat(np.arange(len(a)), [len(n) for n in near])
    cols = np.fromiter((j for n in near for j in n), dtype=int, count=rows.size)
    return rows, cols


def _iou(
    before: np.ndarray, after: np.ndarray, labels_a: np.ndarray, labels_b: np.ndarray
) -> np.ndarray:
    """IoU between the objects ``labels_a`` of ``before`` and ``labels_b`` of ``after``."""
    inter, ids_a, ids_b, size_a, size_b = overlap_matrix(before, after)
    out = np.zeros((labels_a.size, labels_b.size))
    if ids_a.size == 0 or ids_b.size == 0:
        return out
    union = size_a[:, None] + size_b[None, :] - inter
    iou = inter / np.maximum(union, 1)
    ia = np.searchsorted(ids_a, labels_a)
    ib = np.searchsorted(ids_b, labels_b)
    return iou[np.ix_(ia, ib)]


def link_frames(
    labels: Any,
    table: pd.DataFrame,
    config: TrackerConfig,
    *,
    progress: Progress | None = None,
) -> np.ndarray:
    """Frame-to-frame links, an ``(n, 2)`` array of row indices of ``table`` (from, to).

    ``config.max_distance`` must be set (see
    :func:`~cytolens.track.detections.estimate_max_distance`).
    """
    max_d = float(config.max_distance)
    frames = {t: idx.to_numpy() for t, idx in table.groupby(FRAME).groups.items()}
    label_col = table["label"].to_numpy()
    n_t = labels.shape[0]
    cache: dict[int, np.ndarray] = {}

    def frame(t: int) -> np.ndarray:
        if t not in cache:
            for old in [k for k in cache if k < t - 1]:
                del cache[old]
            cache[t] = np.asarray(labels[t])
        return cache[t]

    links = []
    for t in range(n_t - 1):
        a, b = frames.get(t, np.zeros(0, int)), frames.get(t + 1, np.zeros(0, int))
        pa, pb = _positions(table.loc[a]), _positions(table.loc[b])
        rows, cols = _pairs_within(pa, pb, max_d)
        if rows.size:
            cost = ((pa[rows] - pb[cols]) ** 2).sum(axis=1) / max_d**2
            if config.overlap_weight > 0:
                iou = _iou(frame(t), frame(t + 1), label_col[a], label_col[b])
                cost = cost * (1 - config.overlap_weight * iou[rows, cols])
            r, c = assign(rows, cols, 1.0 - cost, method=config.method)
            links.append(np.stack([a[r], b[c]], axis=1))
        if progress is not None:
            progress("linking", t + 1, n_t - 1)
    return np.concatenate(links) if links else np.zeros((0, 2), int)


def _typical_step(table: pd.DataFrame, links: np.ndarray) -> float:
    """Median displacement along the frame-to-frame links (pixels)."""
    if links.size == 0:
        return 1.0
    pos = _positions(table)
    step = np.linalg.norm(pos[links[:, 0]] - pos[links[:, 1]], axis=1)
    return max(float(np.median(step)), 1e-6)


def _by_frame(t: np.ndarray, idx: np.ndarray) -> dict[int, np.ndarray]:
    """Row indices ``idx`` grouped by their frame ``t[idx]``."""
    order = idx[np.argsort(t[idx], kind="stable")]
    frames, first = np.unique(t[order], return_index=True)
    return dict(zip(frames.tolist(), np.split(order, first[1:]), strict=True))


def _division_cost(
    mother: np.ndarray,
    kept: np.ndarray,
    new: np.ndarray,
    a_mother: float,
    a_kept: float,
    a_new: float,
    step: float,
) -> float:
    """Sum of the three division cues (see the module notes); 0 for an ideal division.

    Examples
    --------
    >>> round(_division_cost(np.array([0.0, 0]), np.array([0.0, 10]), np.array([0.0, -10]),
    ...                      100, 50, 50, step=1.0), 3)
    0.01
    """
    separation = float(np.linalg.norm(new - kept))
    moved = float(np.linalg.norm(kept - mother))
    if separation == 0 or moved == 0:
        return np.inf
    geometry = (np.linalg.norm(mother - (new + kept) / 2) / (separation / 2)) ** 2
    conservation = np.log2((a_new + a_kept) / a_mother) ** 2
    stillness = (step / moved) ** 2
    return float(geometry + conservation + stillness)


def link_segments(table: pd.DataFrame, links: np.ndarray, config: TrackerConfig) -> np.ndarray:
    """Gap-closing and division links joining the segments made by :func:`link_frames`.

    Returns
    -------
    numpy.ndarray, shape (k, 2)
        New links (from, to) as row indices of ``table``; a division adds one
        link from the mother to the second daughter.
    """
    max_d = float(config.max_distance)
    n = len(table)
    succ = np.full(n, -1)
    pred = np.full(n, -1)
    if links.size:
        succ[links[:, 0]] = links[:, 1]
        pred[links[:, 1]] = links[:, 0]
    t = table[FRAME].to_numpy()
    pos = _positions(table)
    area = table["area_px"].to_numpy(np.float64)
    t0 = t.min() if n else 0
    starts = np.flatnonzero((pred < 0) & (t > t0))
    ends = np.flatnonzero(succ < 0)
    row_kind: list[tuple[str, int]] = []  # ("end", i) or ("split", i)
    rows, cols, gains = [], [], []

    def add(kind: str, i: int, s: int, gain: float) -> None:
        row_kind.append((kind, i))
        rows.append(len(row_kind) - 1)
        cols.append(s)
        gains.append(gain)

    if config.gap_closing > 0 and starts.size and ends.size:
        end_trees = {f: (idx, cKDTree(pos[idx])) for f, idx in _by_frame(t, ends).items()}
        for s in starts:
            for elapsed in range(2, config.gap_closing + 2):
                if t[s] - elapsed not in end_trees:
                    continue
                idx, tree = end_trees[t[s] - elapsed]
                for e in idx[tree.query_ball_point(pos[s], max_d * np.sqrt(elapsed))]:
                    cost = ((pos[s] - pos[e]) ** 2).sum() / (max_d**2 * elapsed)
                    if cost < 1:
                        add("end", e, s, 1.0 - cost)
    if config.divisions and starts.size:
        step = _typical_step(table, links)
        going_on = np.flatnonzero(succ >= 0)
        mother_trees = {f: (idx, cKDTree(pos[idx])) for f, idx in _by_frame(t, going_on).items()}
        for s in starts:
            if t[s] - 1 not in mother_trees:
                continue
            idx, tree = mother_trees[t[s] - 1]
            for m in idx[tree.query_ball_point(pos[s], max_d)]:
                cost = _division_cost(
                    pos[m], pos[succ[m]], pos[s], area[m], area[succ[m]], area[s], step
                )
                if cost < config.division_max_cost:
                    add("split", m, s, config.division_max_cost - cost)
    if not rows:
        return np.zeros((0, 2), int)
    # the same detection may be offered as a gap end and as a mother: make rows unique
    keys = {}
    row_ids = np.array([keys.setdefault(row_kind[r], len(keys)) for r in rows])
    r, c = assign(row_ids, np.array(cols), np.array(gains), method="lap")
    inverse = {v: k for k, v in keys.items()}
    new = np.array([[inverse[i][1], s] for i, s in zip(r, c, strict=True)], dtype=int)
    n_split = sum(inverse[i][0] == "split" for i in r)
    logger.info("closed %d gap(s), found %d division(s)", len(new) - n_split, n_split)
    return new.reshape(-1, 2)
