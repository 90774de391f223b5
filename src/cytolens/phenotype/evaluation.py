"""Scores of a single-label classifier: accuracy, weighted/macro F1, balanced accuracy,
per-class F1 with support, confusion matrix, expected calibration error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["classification_report", "confusion_figure"]


def classification_report(
    labels: Any, probabilities: Any, class_names: Sequence[str]
) -> dict[str, Any]:
    """Scores of predicted probabilities ``(N, K)`` against true class indices ``(N,)``.

    Returns
    -------
    dict
        ``accuracy``, ``weighted_f1``, ``macro_f1``, ``balanced_accuracy``,
        ``ece`` (10 bins), ``per_class`` (DataFrame: ``class``, ``support``,
        ``precision``, ``recall``, ``f1``) and ``confusion`` (K x K counts,
        rows true, columns predicted).

    Examples
    --------
    >>> p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    >>> r = classification_report([0, 1, 1], p, ["a", "b"])
    >>> round(r["accuracy"], 3), r["confusion"].tolist()
    (0.667, [[1, 0], [1, 1]])
    """
    from sklearn.metrics import (
        balanced_accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    from cytolens.evaluate.calibration import expected_calibration_error

    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    pred = p.argmax(axis=1)
    k = list(range(len(class_names)))
    prec, rec, f1, support = precision_recall_fscore_support(y, pred, labels=k, zero_division=0)
    return {
        "accuracy": float((pred == y).mean()),
        "weighted_f1": float(f1_score(y, pred, labels=k, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(y, pred, labels=k, average="macro", zero_division=0)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "ece": expected_calibration_error(p, y),
        "per_class": pd.DataFrame(
            {
                "class": list(class_names),
                "support": support.astype(int),
                "precision": prec,
                "recall": rec,
                "f1": f1,
            }
        ),
        "confusion": confusion_matrix(y, pred, labels=k),
    }


def confusion_figure(confusion: Any, class_names: Sequence[str], title: str = "") -> Any:
    """A Matplotlib figure of a confusion matrix normalized per true class (counts written).

    Examples
    --------
    >>> fig = confusion_figure(np.array([[3, 1], [0, 4]]), ["a", "b"])
    >>> len(fig.axes) >= 1
    True
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = np.asarray(confusion, dtype=np.float64)
    norm = c / np.maximum(c.sum(axis=1, keepdims=True), 1)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(2 + 0.45 * n, 1.5 + 0.45 * n))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            if c[i, j]:
                ax.text(
                    j,
                    i,
                    int(c[i, j]),
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    fig.colorbar(im, ax=ax, fraction=0.04, label="fraction of true class")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
