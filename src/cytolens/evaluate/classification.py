"""Multi-label classification scores: per-class F1 with support, macro / micro F1, thresholds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from cytolens.core.errors import InputError

__all__ = ["classification_scores", "per_class_f1", "tune_thresholds"]


def _check(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true).astype(bool)
    p = np.asarray(y_pred).astype(bool)
    if t.ndim == 1:
        t, p = t[:, None], p[:, None] if p.ndim == 1 else p
    if t.shape != p.shape or t.ndim != 2:
        raise InputError(
            f"y_true and y_pred must be (samples, classes) of the same shape, got {t.shape} "
            f"and {p.shape}"
        )
    return t, p


def _f1(tp: Any, fp: Any, fn: Any) -> Any:
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), np.nan)


def per_class_f1(
    y_true: Any, y_pred: Any, *, class_names: Sequence[str] | None = None
) -> pd.DataFrame:
    """Counts, precision, recall and F1 of each class of a multi-label prediction.

    Parameters
    ----------
    y_true, y_pred : array_like of bool
        ``(n_samples, n_classes)`` truth and prediction (multi-hot).
    class_names : sequence of str, optional
        Names for the ``name`` column.

    Returns
    -------
    pandas.DataFrame
        One row per class: ``class``, ``name``, ``support`` (true positives +
        false negatives), ``predicted``, ``tp``, ``fp``, ``fn``, ``precision``,
        ``recall``, ``f1``. F1 is NaN for a class neither present nor predicted.

    Examples
    --------
    >>> t = np.array([[1, 0], [1, 1], [0, 0]])
    >>> p = np.array([[1, 0], [0, 1], [0, 1]])
    >>> per_class_f1(t, p)[["support", "tp", "fp", "fn", "f1"]].values.tolist()
    [[2.0, 1.0, 0.0, 1.0, 0.6666666666666666], [1.0, 1.0, 1.0, 0.0, 0.6666666666666666]]
    """
    t, p = _check(y_true, y_pred)
    tp = (t & p).sum(0).astype(float)
    fp = (~t & p).sum(0).astype(float)
    fn = (t & ~p).sum(0).astype(float)
    n = t.shape[1]
    if class_names is not None and len(class_names) != n:
        raise InputError(f"class_names has {len(class_names)} entries for {n} classes")
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        recall = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
    return pd.DataFrame(
        {
            "class": np.arange(n),
            "name": list(class_names) if class_names is not None else [str(i) for i in range(n)],
            "support": tp + fn,
            "predicted": tp + fp,
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "precision": precision,
            "recall": recall,
            "f1": _f1(tp, fp, fn),
        }
    )


def classification_scores(y_true: Any, y_pred: Any) -> dict[str, float]:
    """Macro F1 over the classes present, macro F1 over all classes, micro F1, exact match.

    ``macro_f1`` averages the F1 of classes with at least one true sample
    (a class absent from the truth but predicted counts nowhere in it);
    ``macro_f1_all`` averages over every class, with 0 for an absent class
    that is predicted and 1 for one absent and never predicted (the Kaggle
    convention scores absent classes like that).

    Examples
    --------
    >>> t = np.array([[1, 0, 0], [1, 1, 0]])
    >>> p = np.array([[1, 0, 0], [1, 0, 1]])
    >>> s = classification_scores(t, p)
    >>> round(s["macro_f1"], 3), round(s["micro_f1"], 3), s["n_classes_present"]
    (0.5, 0.667, 2)
    """
    t, p = _check(y_true, y_pred)
    table = per_class_f1(t, p)
    present = table["support"] > 0
    f1_all = table["f1"].where(present, np.where(table["predicted"] > 0, 0.0, 1.0))
    tp, fp, fn = table["tp"].sum(), table["fp"].sum(), table["fn"].sum()
    return {
        "macro_f1": float(table.loc[present, "f1"].mean()) if present.any() else float("nan"),
        "macro_f1_all": float(f1_all.mean()),
        "micro_f1": float(_f1(tp, fp, fn)),
        "exact_match": float((t == p).all(axis=1).mean()),
        "n_classes_present": int(present.sum()),
    }


def tune_thresholds(
    probabilities: Any,
    y_true: Any,
    *,
    grid: Sequence[float] | None = None,
    default: float = 0.5,
    min_support: int = 1,
) -> np.ndarray:
    """Per-class decision thresholds that maximize F1 on (out-of-fold) predictions.

    Parameters
    ----------
    probabilities : array_like
        ``(n_samples, n_classes)`` scores in ``[0, 1]``.
    y_true : array_like of bool
        ``(n_samples, n_classes)`` truth.
    grid : sequence of float, optional
        Candidate thresholds (default 0.05, 0.10, ..., 0.95).
    default : float
        Threshold of classes with fewer than ``min_support`` positives.
    min_support : int
        Positives a class needs for its own threshold.

    Returns
    -------
    numpy.ndarray
        ``(n_classes,)`` thresholds. Ties between grid values go to the
        middle of the best run, so a threshold does not sit on the edge of
        the interval that happens to fit these samples.

    Examples
    --------
    >>> prob = np.array([[0.9, 0.2], [0.3, 0.4], [0.1, 0.1]])
    >>> truth = np.array([[1, 0], [1, 0], [0, 0]])
    >>> tune_thresholds(prob, truth, grid=[0.2, 0.5, 0.8]).tolist()
    [0.2, 0.5]
    """
    prob = np.asarray(probabilities, float)
    t, _ = _check(y_true, prob > 0.5)
    grid = np.asarray(grid if grid is not None else np.round(np.arange(0.05, 0.96, 0.05), 2))
    out = np.full(t.shape[1], float(default))
    for c in range(t.shape[1]):
        pos = t[:, c]
        if pos.sum() < min_support:
            continue
        pred = prob[:, c][:, None] >= grid[None, :]
        tp = (pred & pos[:, None]).sum(0)
        fp = (pred & ~pos[:, None]).sum(0)
        fn = (~pred & pos[:, None]).sum(0)
        f1 = np.nan_to_num(_f1(tp, fp, fn).astype(float))
        best = np.flatnonzero(f1 == f1.max())
        gaps = np.flatnonzero(np.diff(best) > 1)
        run = best[: gaps[0] + 1] if gaps.size else best
        out[c] = float(grid[run[len(run) // 2]])
    return out
