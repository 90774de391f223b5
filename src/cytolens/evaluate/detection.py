"""Object-detection scores: COCO-style average precision per class and IoU threshold.

Definition (as in pycocotools, without area ranges or "crowd" boxes): per
class, all predicted boxes of all images are sorted by decreasing score; each
in turn is matched to the unmatched ground-truth box of its image with which
it has the highest IoU, if that IoU is at least the threshold (a true
positive), else it is a false positive. Precision is made monotone
(non-increasing in recall) and sampled at the 101 recall points 0, 0.01, ...,
1; AP is their mean. mAP@0.5 averages AP at IoU 0.5 over classes, and
mAP@0.5:0.95 averages over the ten thresholds 0.50, 0.55, ..., 0.95 too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from cytolens.core.errors import InputError
from cytolens.core.tables import BOX_COLUMNS

__all__ = [
    "COCO_THRESHOLDS",
    "box_iou_matrix",
    "detection_ap",
    "detection_scores",
    "match_detections",
]

#: IoU thresholds of COCO's mAP@0.5:0.95.
COCO_THRESHOLDS = tuple(np.round(np.arange(0.5, 0.96, 0.05), 2))
_COORDS = list(BOX_COLUMNS)


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between boxes ``(N, 4)`` and ``(M, 4)`` (x0, y0, x1, y1), numpy.

    Examples
    --------
    >>> box_iou_matrix(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 5], [20, 20, 30, 30]]))
    array([[0.5, 0. ]])
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def _check(table: pd.DataFrame, name: str, need_score: bool) -> None:
    need = ["filename", "class", *_COORDS] + (["score"] if need_score else [])
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise InputError(f"{name} table lacks the column(s) {missing}")


def match_detections(
    predictions: pd.DataFrame, truth: pd.DataFrame, cls: Any, *, iou_threshold: float = 0.5
) -> tuple[pd.DataFrame, np.ndarray]:
    """Greedy COCO matching of one class: predictions by decreasing score, each to the free
    true box of highest IoU in its image.

    Parameters
    ----------
    predictions, truth : pandas.DataFrame
        Box tables with ``filename`` and ``class`` (predictions with ``score``).
    cls : str
        The class to match.
    iou_threshold : float
        Minimum IoU of a true positive.

    Returns
    -------
    predictions : pandas.DataFrame
        The class's predictions, sorted by decreasing score (stable).
    true_positive : numpy.ndarray of bool
        One flag per row of ``predictions``.

    Examples
    --------
    >>> truth = pd.DataFrame({"filename": ["a"], "class": ["c"],
    ...     "xmin_px": [0], "ymin_px": [0], "xmax_px": [10], "ymax_px": [10]})
    >>> pred = pd.concat([truth, truth]).assign(score=[0.5, 0.9])
    >>> match_detections(pred, truth, "c")[1].tolist()  # a second hit on one box is false
    [True, False]
    """
    gt = truth[truth["class"] == cls]
    gt_by_image = {f: g[_COORDS].to_numpy(np.float64) for f, g in gt.groupby("filename")}
    used = {f: np.zeros(len(b), bool) for f, b in gt_by_image.items()}
    pred = predictions[predictions["class"] == cls].sort_values(
        "score", ascending=False, kind="mergesort"
    )
    tp = np.zeros(len(pred), bool)
    for i, (filename, box) in enumerate(
        zip(pred["filename"], pred[_COORDS].to_numpy(np.float64), strict=True)
    ):
        boxes = gt_by_image.get(filename)
        if boxes is None:
            continue
        iou = box_iou_matrix(box[None], boxes)[0]
        iou[used[filename]] = -1
        j = int(np.argmax(iou))
        if iou[j] >= iou_threshold:
            used[filename][j] = tp[i] = True
    return pred, tp


def detection_ap(
    predictions: pd.DataFrame, truth: pd.DataFrame, *, iou_threshold: float = 0.5
) -> dict[str, float]:
    """Average precision per class at one IoU threshold.

    Parameters
    ----------
    predictions : pandas.DataFrame
        ``filename, class, xmin_px, ymin_px, xmax_px, ymax_px, score``.
    truth : pandas.DataFrame
        ``filename, class, xmin_px, ymin_px, xmax_px, ymax_px``.
    iou_threshold : float
        Minimum IoU of a true positive.

    Returns
    -------
    dict
        Class name -> AP, for every class with ground truth (a class with
        ground truth and no prediction has AP 0).

    Examples
    --------
    >>> truth = pd.DataFrame({"filename": ["a", "a"], "class": ["c", "c"],
    ...     "xmin_px": [0, 20], "ymin_px": [0, 0], "xmax_px": [10, 30], "ymax_px": [10, 10]})
    >>> pred = truth.assign(score=[0.9, 0.3])
    >>> detection_ap(pred, truth)
    {'c': 1.0}
    >>> round(detection_ap(pred.iloc[:1], truth)["c"], 4)  # half found: recall stops at 0.5
    0.505
    """
    _check(predictions, "predictions", True)
    _check(truth, "truth", False)
    if not 0 < iou_threshold <= 1:
        raise InputError(f"iou_threshold must be in (0, 1], got {iou_threshold!r}")
    recall_points = np.linspace(0, 1, 101)
    out = {}
    for cls in sorted(truth["class"].unique()):
        n_gt = int((truth["class"] == cls).sum())
        _, tp = match_detections(predictions, truth, cls, iou_threshold=iou_threshold)
        ctp = np.cumsum(tp)
        recall = ctp / n_gt
        precision = ctp / np.arange(1, len(tp) + 1)
        precision = np.maximum.accumulate(precision[::-1])[::-1] if len(tp) else precision
        idx = np.searchsorted(recall, recall_points, side="left")
        sampled = np.array([precision[k] if k < len(precision) else 0.0 for k in idx])
        out[str(cls)] = float(sampled.mean())
    return out


def detection_scores(
    predictions: pd.DataFrame,
    truth: pd.DataFrame,
    *,
    thresholds: Sequence[float] = COCO_THRESHOLDS,
) -> dict[str, Any]:
    """mAP@0.5, mAP@0.5:0.95 and per-class AP, COCO-style.

    Returns
    -------
    dict
        ``map50``, ``map50_95`` and ``per_class`` (class -> ``ap50``,
        ``ap50_95``, ``n_truth``, ``n_predicted``).

    Examples
    --------
    >>> truth = pd.DataFrame({"filename": ["a"], "class": ["c"],
    ...     "xmin_px": [0], "ymin_px": [0], "xmax_px": [10], "ymax_px": [10]})
    >>> pred = pd.DataFrame({"filename": ["a"], "class": ["c"],
    ...     "xmin_px": [0], "ymin_px": [0], "xmax_px": [10], "ymax_px": [7], "score": [0.8]})
    >>> s = detection_scores(pred, truth)  # IoU 0.7: right up to the 0.70 threshold
    >>> s["map50"], round(s["map50_95"], 2)
    (1.0, 0.5)
    """
    per_t = {t: detection_ap(predictions, truth, iou_threshold=t) for t in thresholds}
    classes = sorted(truth["class"].unique())
    per_class = {
        c: {
            "ap50": per_t[0.5][c] if 0.5 in per_t else float("nan"),
            "ap50_95": float(np.mean([per_t[t][c] for t in thresholds])),
            "n_truth": int((truth["class"] == c).sum()),
            "n_predicted": int((predictions["class"] == c).sum()),
        }
        for c in classes
    }
    return {
        "map50": float(np.mean([v["ap50"] for v in per_class.values()])) if classes else 0.0,
        "map50_95": float(np.mean([v["ap50_95"] for v in per_class.values()])) if classes else 0.0,
        "per_class": per_class,
    }
