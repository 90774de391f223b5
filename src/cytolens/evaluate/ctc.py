"""Cell Tracking Challenge measures: DET, SEG, TRA (AOGM-based), link and division scores.

Definitions (Matula et al. 2015; Ulman et al. 2017), as implemented by the
challenge's evaluation software:

- **Vertices** are the objects of each frame. A reference object ``R``
  (a TRA marker) is matched by the result object ``S`` covering more than
  half of it, ``|R ∩ S| > 0.5 |R|``; so each ``R`` has at most one match,
  while one ``S`` may match several ``R`` (a merge).
- **Edges** join an object to the same track in the next frame (track
  links) and a parent track's last object to each child track's first
  object (parent links: divisions, and gaps when a parent has one child).
- **AOGM** is the weighted number of operations that turn the result graph
  into the reference: splitting a vertex matched to ``k > 1`` references
  (NS, ``k - 1`` times, weight 5), adding a missed vertex (FN, 10), deleting
  an unmatched one (FP, 1), deleting a redundant edge (ED, 1), adding a
  missing edge (EA, 1.5) and changing an edge's kind (EC, 1). Only result
  edges between one-to-one matched vertices are judged (ED/EC); a reference
  edge counts as present only if its two references are matched one-to-one
  and the result joins their matches by an edge of either kind.
- ``TRA = 1 - min(AOGM, AOGM_0) / AOGM_0`` with ``AOGM_0 = 10 |V| + 1.5 |E|``
  of the reference graph (the cost of an empty result).
  ``DET`` likewise with the vertex terms only, ``AOGM-D_0 = 10 |V|``.
- ``SEG`` is the mean Jaccard index of each reference segmentation object
  with the result object covering more than half of it (0 when none).

Frames are indexed ``0 .. T-1`` and matched by index; reference and result
movies must have the same shape. Track tables have the columns of
``man_track.txt`` / ``res_track.txt``: ``label, begin, end, parent``.

References
----------
Matula, P. et al. Cell tracking accuracy measurement based on comparison of
acyclic oriented graphs. PLoS ONE 10, e0144959 (2015).
Ulman, V. et al. An objective comparison of cell-tracking algorithms.
Nat. Methods 14, 1141-1152 (2017).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cytolens.core.errors import InputError
from cytolens.core.image import Image
from cytolens.evaluate.matching import overlap_matrix

__all__ = ["AOGM_WEIGHTS", "CTCMeasures", "ctc_det", "ctc_measures", "ctc_seg", "ctc_tra"]

logger = logging.getLogger(__name__)

#: Operation weights of the TRA measure (Matula et al. 2015, as used by the CTC).
AOGM_WEIGHTS = {"ns": 5.0, "fn": 10.0, "fp": 1.0, "ed": 1.0, "ea": 1.5, "ec": 1.0}

Vertex = tuple[int, int]  # (frame, label)


@dataclass(frozen=True)
class CTCMeasures:
    """All tracking measures of one sequence (see the module notes for definitions).

    Attributes
    ----------
    det, tra : float
        CTC DET and TRA in ``[0, 1]``.
    seg : float or None
        CTC SEG, ``None`` without segmentation ground truth.
    aogm, aogm_0, aogm_d, aogm_d0 : float
        The graph costs behind TRA and DET and their empty-result values.
    ns, fn, fp, ed, ea, ec : int
        Operation counts.
    n_vertices, n_edges : int
        Size of the reference graph.
    link_precision, link_recall, link_f1 : float
        Result edges that join the right objects / reference edges found.
        A precision (recall) with nothing predicted (nothing to find) is 1.
    division_precision, division_recall, division_f1 : float
        A division is found when the result's mother (last object) and its
        set of daughters (first objects) match the reference's one to one.
    n_divisions, n_result_divisions : int
        Divisions in the reference and in the result.
    """

    det: float
    tra: float
    seg: float | None
    aogm: float
    aogm_0: float
    aogm_d: float
    aogm_d0: float
    ns: int
    fn: int
    fp: int
    ed: int
    ea: int
    ec: int
    n_vertices: int
    n_edges: int
    link_precision: float
    link_recall: float
    link_f1: float
    division_precision: float
    division_recall: float
    division_f1: float
    n_divisions: int
    n_result_divisions: int

    def as_dict(self) -> dict[str, Any]:
        """The measures as a plain dict (JSON-ready)."""
        return asdict(self)


def _movie(array: Any, name: str) -> Any:
    if isinstance(array, Image):
        array = array.data
    if not hasattr(array, "shape"):
        array = np.asarray(array)
    if array.ndim not in (3, 4):
        raise InputError(
            f"{name} must be a label movie T(Z)YX (3-D or 4-D), got shape {tuple(array.shape)}"
        )
    if array.dtype.kind not in "iu":
        raise InputError(f"{name} must hold integer labels, got dtype {array.dtype}")
    return array


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 1.0


@dataclass
class _Match:
    """Vertex matching of a reference and a result movie, frame by frame."""

    gt_vertices: set[Vertex]
    res_vertices: set[Vertex]
    gt_to_res: dict[Vertex, Vertex]
    res_count: dict[Vertex, int]
    ns: int
    fn: int
    fp: int

    @property
    def res_to_gt(self) -> dict[Vertex, Vertex]:
        """Result vertices matched to exactly one reference, and that reference."""
        return {r: g for g, r in self.gt_to_res.items() if self.res_count[r] == 1}


def _match(gt: Any, res: Any) -> _Match:
    gt, res = _movie(gt, "reference markers"), _movie(res, "result masks")
    if tuple(gt.shape) != tuple(res.shape):
        raise InputError(
            f"reference and result movies differ in shape: {tuple(gt.shape)} vs {tuple(res.shape)}"
        )
    m = _Match(set(), set(), {}, {}, 0, 0, 0)
    for t in range(gt.shape[0]):
        counts, gids, rids, gsize, _ = overlap_matrix(np.asarray(gt[t]), np.asarray(res[t]))
        m.gt_vertices.update((t, int(g)) for g in gids)
        m.res_vertices.update((t, int(r)) for r in rids)
        n_match = np.zeros(rids.size, np.int64)
        if gids.size and rids.size:
            best = counts.argmax(axis=1)
            ok = 2 * counts[np.arange(gids.size), best] > gsize
            for g, r in zip(gids[ok], rids[best[ok]], strict=True):
                m.gt_to_res[(t, int(g))] = (t, int(r))
            n_match = np.bincount(best[ok], minlength=rids.size)
            m.fn += int((~ok).sum())
        else:
            m.fn += int(gids.size)
        m.res_count.update(((t, int(r)), int(k)) for r, k in zip(rids, n_match, strict=True))
        m.fp += int((n_match == 0).sum())
        m.ns += int(np.maximum(n_match - 1, 0).sum())
    return m


def _table(tracks: Any, vertices: set[Vertex], name: str) -> dict[int, tuple[int, int, int]]:
    """``label -> (begin, end, parent)`` from a track table, or from the vertices when None."""
    if tracks is None:
        span: dict[int, list[int]] = {}
        for t, label in vertices:
            s = span.setdefault(label, [t, t])
            s[0], s[1] = min(s[0], t), max(s[1], t)
        return {label: (b, e, 0) for label, (b, e) in span.items()}
    if hasattr(tracks, "columns"):
        missing = {"label", "begin", "end", "parent"} - set(tracks.columns)
        if missing:
            raise InputError(f"{name} lacks column(s) {sorted(missing)}")
        values = tracks[["label", "begin", "end", "parent"]].to_numpy()
    else:
        values = np.asarray(tracks).reshape(-1, 4)
    table = {int(lab): (int(b), int(e), int(p)) for lab, b, e, p in values}
    unlisted = {label for _, label in vertices} - set(table)
    if unlisted:
        logger.warning(
            "%s: label(s) %s are in the masks but not in the table", name, sorted(unlisted)[:10]
        )
    return table


def _edges(
    table: dict[int, tuple[int, int, int]], vertices: set[Vertex]
) -> dict[tuple[Vertex, Vertex], str]:
    """Track links and parent links of a graph, keyed (from, to), valued by kind."""
    edges: dict[tuple[Vertex, Vertex], str] = {}
    for label, (begin, end, parent) in table.items():
        for t in range(begin, end):
            if (t, label) in vertices and (t + 1, label) in vertices:
                edges[((t, label), (t + 1, label))] = "track"
        if parent > 0 and parent in table:
            source, target = (table[parent][1], parent), (begin, label)
            if source in vertices and target in vertices:
                edges[(source, target)] = "parent"
    return edges


def _divisions(
    table: dict[int, tuple[int, int, int]], vertices: set[Vertex]
) -> dict[Vertex, frozenset[Vertex]]:
    """Mother's last vertex -> daughters' first vertices, for parents with two or more children."""
    children: dict[int, list[int]] = {}
    for label, (_, _, parent) in table.items():
        if parent > 0 and parent in table:
            children.setdefault(parent, []).append(label)
    out = {}
    for parent, kids in children.items():
        if len(kids) >= 2:
            mother = (table[parent][1], parent)
            daughters = frozenset((table[k][0], k) for k in kids)
            if mother in vertices and daughters <= vertices:
                out[mother] = daughters
    return out


def _aogm(
    m: _Match,
    gt_edges: dict[tuple[Vertex, Vertex], str],
    res_edges: dict[tuple[Vertex, Vertex], str],
) -> tuple[int, int, int, int]:
    """Edge operations (ed, ea, ec) and the number of result edges joining the right objects."""
    res_to_gt = m.res_to_gt
    ed = ec = correct = 0
    for (u, v), kind in res_edges.items():
        if u in res_to_gt and v in res_to_gt:
            ref = gt_edges.get((res_to_gt[u], res_to_gt[v]))
            if ref is None:
                ed += 1
            else:
                correct += 1
                ec += ref != kind
    ea = 0
    for u, v in gt_edges:
        ru, rv = m.gt_to_res.get(u), m.gt_to_res.get(v)
        found = (
            ru is not None
            and rv is not None
            and m.res_count[ru] == 1
            and m.res_count[rv] == 1
            and (ru, rv) in res_edges
        )
        ea += not found
    return ed, ea, ec, correct


def ctc_seg(gt_seg: Any, res_masks: Any) -> float:
    """CTC SEG: mean Jaccard index of reference objects with the result object covering > 50 %.

    Parameters
    ----------
    gt_seg : Mapping[int, array_like] or array_like
        Reference segmentations by frame index (e.g. ``CTCSequence.seg_masks``),
        or a movie whose every frame is annotated.
    res_masks : array_like
        Result label movie ``T(Z)YX``.

    Returns
    -------
    float
        In ``[0, 1]``; NaN when the reference has no object.

    Examples
    --------
    >>> gt = np.zeros((1, 4, 8), np.uint16)
    >>> gt[0, :, :4] = 1  # 16 px
    >>> gt[0, :, 4:] = 2  # missed below
    >>> res = np.zeros_like(gt)
    >>> res[0, 1:, :5] = 7  # covers 12 px of object 1, 3 px outside: J = 12 / 19
    >>> round(ctc_seg(gt, res), 4) == round((12 / 19 + 0) / 2, 4)
    True
    """
    res = _movie(res_masks, "result masks")
    frames = gt_seg if isinstance(gt_seg, Mapping) else dict(enumerate(_movie(gt_seg, "reference")))
    scores = []
    for t in sorted(frames):
        if not 0 <= t < res.shape[0]:
            raise InputError(f"reference segmentation for frame {t}; the result has {res.shape[0]}")
        ref = np.asarray(frames[t])
        plane = np.asarray(res[t])
        if ref.shape != plane.shape:
            raise InputError(
                f"reference segmentation of frame {t} has shape {ref.shape}, "
                f"the result {plane.shape}"
            )
        counts, gids, rids, gsize, rsize = overlap_matrix(ref, plane)
        if gids.size == 0:
            continue
        if rids.size == 0:
            scores.append(np.zeros(gids.size))
            continue
        best = counts.argmax(axis=1)
        inter = counts[np.arange(gids.size), best]
        jaccard = inter / (gsize + rsize[best] - inter)
        scores.append(np.where(2 * inter > gsize, jaccard, 0.0))
    if not scores:
        return float("nan")
    return float(np.concatenate(scores).mean())


def ctc_measures(
    gt_markers: Any,
    gt_tracks: Any,
    res_masks: Any,
    res_tracks: Any,
    *,
    gt_seg: Any = None,
) -> CTCMeasures:
    """DET, SEG, TRA, link and division scores of a tracking result against CTC ground truth.

    Parameters
    ----------
    gt_markers : array_like
        Reference tracking markers ``T(Z)YX`` (``man_trackTTT.tif`` stacked).
    gt_tracks : pandas.DataFrame or None
        Reference table ``label, begin, end, parent`` (``man_track.txt``);
        None: every label is one track without parent.
    res_masks : array_like
        Result label movie of the same shape.
    res_tracks : pandas.DataFrame or None
        Result table (``res_track.txt``), same columns.
    gt_seg : Mapping[int, array_like] or array_like, optional
        Reference segmentations for SEG (see :func:`ctc_seg`).

    Returns
    -------
    CTCMeasures

    Examples
    --------
    >>> gt = np.zeros((3, 8, 8), np.uint16)
    >>> gt[:, 1:3, 1:3] = 1
    >>> gt[:, 5:7, 5:7] = 2
    >>> perfect = ctc_measures(gt, None, gt * 3, None)
    >>> perfect.tra, perfect.det, perfect.link_f1
    (1.0, 1.0, 1.0)
    """
    m = _match(gt_markers, res_masks)
    gt_table = _table(gt_tracks, m.gt_vertices, "reference tracks")
    res_table = _table(res_tracks, m.res_vertices, "result tracks")
    gt_edges = _edges(gt_table, m.gt_vertices)
    res_edges = _edges(res_table, m.res_vertices)
    ed, ea, ec, correct = _aogm(m, gt_edges, res_edges)
    w = AOGM_WEIGHTS
    n_v, n_e = len(m.gt_vertices), len(gt_edges)
    aogm_d = w["ns"] * m.ns + w["fn"] * m.fn + w["fp"] * m.fp
    aogm = aogm_d + w["ed"] * ed + w["ea"] * ea + w["ec"] * ec
    aogm_d0 = w["fn"] * n_v
    aogm_0 = aogm_d0 + w["ea"] * n_e
    det = 1 - min(aogm_d, aogm_d0) / aogm_d0 if aogm_d0 else float("nan")
    tra = 1 - min(aogm, aogm_0) / aogm_0 if aogm_0 else float("nan")
    precision, recall = _ratio(correct, len(res_edges)), _ratio(n_e - ea, n_e)
    gt_div = _divisions(gt_table, m.gt_vertices)
    res_div = _divisions(res_table, m.res_vertices)
    res_to_gt = m.res_to_gt
    found = 0
    for mother, daughters in res_div.items():
        ref_mother = res_to_gt.get(mother)
        ref_daughters = frozenset(res_to_gt.get(d) for d in daughters)
        found += ref_mother in gt_div and gt_div[ref_mother] == ref_daughters
    seg = None if gt_seg is None else ctc_seg(gt_seg, res_masks)
    return CTCMeasures(
        det=float(det),
        tra=float(tra),
        seg=seg,
        aogm=float(aogm),
        aogm_0=float(aogm_0),
        aogm_d=float(aogm_d),
        aogm_d0=float(aogm_d0),
        ns=m.ns,
        fn=m.fn,
        fp=m.fp,
        ed=ed,
        ea=ea,
        ec=ec,
        n_vertices=n_v,
        n_edges=n_e,
        link_precision=precision,
        link_recall=recall,
        link_f1=_f1(correct, len(res_edges) - correct, ea),
        division_precision=_ratio(found, len(res_div)),
        division_recall=_ratio(found, len(gt_div)),
        division_f1=_f1(found, len(res_div) - found, len(gt_div) - found),
        n_divisions=len(gt_div),
        n_result_divisions=len(res_div),
    )


def _f1(tp: int, fp: int, fn: int) -> float:
    return _ratio(2 * tp, 2 * tp + fp + fn)


def ctc_tra(gt_markers: Any, gt_tracks: Any, res_masks: Any, res_tracks: Any) -> float:
    """CTC TRA (see :func:`ctc_measures`).

    Examples
    --------
    >>> gt = np.zeros((2, 4, 4), np.uint8)
    >>> gt[:, :2, :2] = 1
    >>> ctc_tra(gt, None, gt, None)
    1.0
    """
    return ctc_measures(gt_markers, gt_tracks, res_masks, res_tracks).tra


def ctc_det(gt_markers: Any, res_masks: Any) -> float:
    """CTC DET: ``1 - min(AOGM-D, AOGM-D0) / AOGM-D0`` from vertex errors only.

    Examples
    --------
    >>> gt = np.zeros((1, 4, 4), np.uint8)
    >>> gt[0, :2, :2], gt[0, 2:, 2:] = 1, 2
    >>> res = np.where(gt == 1, 1, 0)  # object 2 missed: 1 - 10 / 20
    >>> ctc_det(gt, res)
    0.5
    """
    return ctc_measures(gt_markers, None, res_masks, None).det
