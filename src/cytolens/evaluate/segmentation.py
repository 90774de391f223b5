"""Instance-segmentation scores: AP at an IoU threshold, F1 and the DSB2018 score.

For one image and one IoU threshold ``t``, true and predicted objects are
matched one to one (:func:`~cytolens.evaluate.matching.match_instances`, pairs
with IoU >= ``t``); matched pairs are true positives (TP), unmatched
predictions false positives (FP), unmatched true objects false negatives (FN).

- average precision, as defined by the 2018 Data Science Bowl and used by
  StarDist and Cellpose: ``AP(t) = TP / (TP + FP + FN)``;
- ``F1(t) = 2 TP / (2 TP + FP + FN)``;
- DSB2018 score: the mean of ``AP(t)`` over ``t`` = 0.50, 0.55, ..., 0.95.

An image with no true and no predicted objects scores 1 (nothing to find,
nothing invented). The challenge counted a match when IoU > ``t``; here IoU
>= ``t``, which differs only for an IoU exactly at a threshold. Scores are per
image; average them over images as the challenge did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cytolens.core.errors import InputError
from cytolens.evaluate.matching import iou_matrix, match_instances

__all__ = [
    "DSB_THRESHOLDS",
    "MatchCounts",
    "average_precision",
    "dsb_score",
    "f1_score",
    "match_counts",
    "segmentation_scores",
]

#: IoU thresholds of the DSB2018 score: 0.50, 0.55, ..., 0.95.
DSB_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


@dataclass(frozen=True)
class MatchCounts:
    """True positives, false positives and false negatives at one IoU threshold."""

    threshold: float
    tp: int
    fp: int
    fn: int

    @property
    def average_precision(self) -> float:
        """``TP / (TP + FP + FN)``; 1 when there is nothing to count."""
        total = self.tp + self.fp + self.fn
        return self.tp / total if total else 1.0

    @property
    def f1(self) -> float:
        """``2 TP / (2 TP + FP + FN)``; 1 when there is nothing to count."""
        total = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / total if total else 1.0

    @property
    def precision(self) -> float:
        """``TP / (TP + FP)``; with no prediction, 1 if there was nothing to find, else 0."""
        n_pred = self.tp + self.fp
        return self.tp / n_pred if n_pred else float(self.fn == 0)

    @property
    def recall(self) -> float:
        """``TP / (TP + FN)``; with no true object, 1 if nothing was predicted, else 0."""
        n_true = self.tp + self.fn
        return self.tp / n_true if n_true else float(self.fp == 0)


def _thresholds(thresholds: Any) -> tuple[float, ...]:
    values = (thresholds,) if np.ndim(thresholds) == 0 else tuple(thresholds)
    if not values:
        raise InputError("thresholds is empty; give at least one IoU threshold")
    out = []
    for t in values:
        try:
            t = float(t)
        except (TypeError, ValueError):
            raise InputError(f"IoU threshold must be a number in [0, 1], got {t!r}") from None
        if not 0 <= t <= 1:
            raise InputError(f"IoU threshold must be in [0, 1], got {t}")
        out.append(t)
    return tuple(out)


def match_counts(
    true: Any, pred: Any, thresholds: float | Sequence[float] = DSB_THRESHOLDS
) -> list[MatchCounts]:
    """TP, FP and FN of a predicted label image at each IoU threshold.

    Parameters
    ----------
    true, pred : array_like of int
        Ground-truth and predicted label images of the same shape (0 = background).
    thresholds : float or sequence of float
        IoU thresholds in ``[0, 1]``.

    Returns
    -------
    list of MatchCounts
        One per threshold, in the given order.

    Examples
    --------
    >>> t = np.array([[1, 1, 0, 2, 2]])
    >>> p = np.array([[5, 5, 0, 0, 6]])  # object 2 half found: IoU 0.5
    >>> [(c.tp, c.fp, c.fn) for c in match_counts(t, p, [0.5, 0.75])]
    [(2, 0, 0), (1, 1, 1)]
    """
    ts = _thresholds(thresholds)
    iou, true_ids, pred_ids = iou_matrix(true, pred)
    counts = []
    for t in ts:
        rows, _ = match_instances(iou, t)
        tp = int(rows.size)
        counts.append(MatchCounts(t, tp, int(pred_ids.size) - tp, int(true_ids.size) - tp))
    return counts


def average_precision(true: Any, pred: Any, threshold: float = 0.5) -> float:
    """``TP / (TP + FP + FN)`` at one IoU threshold (the DSB2018 / StarDist "AP").

    Examples
    --------
    >>> t = np.array([[1, 1, 0, 2, 2, 0, 3]])
    >>> p = np.array([[1, 1, 0, 2, 2, 0, 0]])  # object 3 missed
    >>> round(average_precision(t, p, 0.5), 4)
    0.6667
    """
    return match_counts(true, pred, threshold)[0].average_precision


def f1_score(true: Any, pred: Any, threshold: float = 0.5) -> float:
    """``2 TP / (2 TP + FP + FN)`` at one IoU threshold.

    Examples
    --------
    >>> t = np.array([[1, 1, 0, 2, 2, 0, 3]])
    >>> p = np.array([[1, 1, 0, 2, 2, 0, 0]])
    >>> f1_score(t, p)
    0.8
    """
    return match_counts(true, pred, threshold)[0].f1


def dsb_score(true: Any, pred: Any, thresholds: Sequence[float] = DSB_THRESHOLDS) -> float:
    """Mean of :func:`average_precision` over IoU thresholds 0.50, 0.55, ..., 0.95.

    Examples
    --------
    >>> t = np.array([[1, 1, 1, 1]])
    >>> p = np.array([[1, 1, 1, 0]])  # IoU 0.75: matched at 0.50 ... 0.75, not above
    >>> dsb_score(t, p)
    0.6
    """
    counts = match_counts(true, pred, thresholds)
    return float(np.mean([c.average_precision for c in counts]))


def segmentation_scores(
    true: Any, pred: Any, thresholds: Sequence[float] = DSB_THRESHOLDS
) -> dict[str, Any]:
    """All scores of one image from a single IoU computation.

    Returns
    -------
    dict
        ``n_true``, ``n_pred``; at IoU 0.5 (which must be among
        ``thresholds``): ``ap50``, ``f1_50``, ``precision_50``, ``recall_50``;
        ``dsb_score`` (mean AP over ``thresholds``); ``ap``: threshold -> AP.

    Examples
    --------
    >>> t = np.array([[1, 1, 1, 1, 0, 2]])
    >>> p = np.array([[1, 1, 1, 0, 0, 0]])
    >>> s = segmentation_scores(t, p)
    >>> s["ap50"], s["f1_50"], s["recall_50"], s["dsb_score"]
    (0.5, 0.6666666666666666, 0.5, 0.3)
    """
    ts = _thresholds(thresholds)
    if 0.5 not in ts:
        raise InputError(f"thresholds must include 0.5, got {ts}")
    counts = match_counts(true, pred, ts)
    at50 = counts[ts.index(0.5)]
    return {
        "n_true": at50.tp + at50.fn,
        "n_pred": at50.tp + at50.fp,
        "ap50": at50.average_precision,
        "f1_50": at50.f1,
        "precision_50": at50.precision,
        "recall_50": at50.recall,
        "dsb_score": float(np.mean([c.average_precision for c in counts])),
        "ap": {c.threshold: c.average_precision for c in counts},
    }
