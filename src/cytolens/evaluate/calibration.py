"""Calibration of predicted probabilities: are the model's certainties honest?

A classifier is calibrated when, among the predictions made with confidence
``c``, a fraction ``c`` is right. :func:`reliability` bins predictions by
confidence; :func:`expected_calibration_error` (ECE, Guo et al. 2017) is the
bin-size-weighted gap between confidence and accuracy; :func:`fit_temperature`
finds the single temperature ``T`` that minimizes the negative log-likelihood
of ``softmax(log p / T)`` on held-out data (temperature scaling), which changes
the certainties but never the most likely class.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from cytolens.core.errors import InputError

__all__ = ["expected_calibration_error", "fit_temperature", "reliability", "scale_temperature"]


def _check(probabilities: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels)
    if p.ndim != 2 or p.shape[0] == 0:
        raise InputError(f"probabilities must be (N, K) with N > 0, got shape {p.shape}")
    if y.shape != (p.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise InputError(
            f"labels must be {p.shape[0]} integer class indices, got shape {y.shape} ({y.dtype})"
        )
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise InputError(f"labels must lie in [0, {p.shape[1] - 1}], got {y.min()}..{y.max()}")
    if not np.isfinite(p).all() or (p < 0).any():
        raise InputError("probabilities must be finite and >= 0")
    return p, y.astype(np.int64)


def reliability(probabilities: Any, labels: Any, *, n_bins: int = 10) -> pd.DataFrame:
    """Accuracy against confidence in equal-width confidence bins.

    Parameters
    ----------
    probabilities : array_like, shape (N, K)
        Predicted class probabilities (rows sum to 1).
    labels : array_like of int, shape (N,)
        True classes.
    n_bins : int
        Bins over ``[0, 1]``.

    Returns
    -------
    pandas.DataFrame
        One row per non-empty bin: ``lower``, ``upper``, ``count``,
        ``confidence`` (mean top probability), ``accuracy``.

    Examples
    --------
    >>> p = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    >>> reliability(p, np.array([0, 0, 0, 1]), n_bins=5)[["count", "confidence", "accuracy"]]
       count  confidence  accuracy
    0      2         0.6       0.5
    1      2         0.9       1.0
    """
    p, y = _check(probabilities, labels)
    if int(n_bins) < 1:
        raise InputError(f"n_bins must be >= 1, got {n_bins!r}")
    conf = p.max(axis=1)
    right = p.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, int(n_bins) - 1)
    rows = [
        {
            "lower": edges[b],
            "upper": edges[b + 1],
            "count": int((which == b).sum()),
            "confidence": float(conf[which == b].mean()),
            "accuracy": float(right[which == b].mean()),
        }
        for b in range(int(n_bins))
        if (which == b).any()
    ]
    return pd.DataFrame(rows)


def expected_calibration_error(probabilities: Any, labels: Any, *, n_bins: int = 10) -> float:
    """Expected calibration error: sum over bins of ``count / N * |accuracy - confidence|``.

    Examples
    --------
    >>> p = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    >>> round(expected_calibration_error(p, np.array([0, 0, 0, 1]), n_bins=5), 3)
    0.1
    """
    table = reliability(probabilities, labels, n_bins=n_bins)
    weights = table["count"] / table["count"].sum()
    return float((weights * (table["accuracy"] - table["confidence"]).abs()).sum())


def scale_temperature(probabilities: Any, temperature: float) -> np.ndarray:
    """``softmax(log p / T)``: probabilities sharpened (T < 1) or softened (T > 1).

    Examples
    --------
    >>> scale_temperature(np.array([[0.8, 0.2]]), 1e6).round(3).tolist()
    [[0.5, 0.5]]
    """
    if not temperature > 0:
        raise InputError(f"temperature must be > 0, got {temperature!r}")
    logp = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, None)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    q = np.exp(logp)
    return q / q.sum(axis=1, keepdims=True)


def fit_temperature(
    probabilities: Any, labels: Any, *, bounds: tuple[float, float] = (0.05, 20.0)
) -> float:
    """Temperature that minimizes the negative log-likelihood of ``labels``.

    Parameters
    ----------
    probabilities : array_like, shape (N, K)
        Held-out predictions of the uncalibrated model.
    labels : array_like of int, shape (N,)
        True classes.
    bounds : (float, float)
        Search interval for ``T``.

    Returns
    -------
    float

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 2000)
    >>> right = rng.random(2000) < 0.7  # 70 % right, but reported at 99 %
    >>> guess = np.where(right, y, 1 - y)
    >>> p = np.where(guess[:, None] == np.arange(2), 0.99, 0.01)
    >>> t = fit_temperature(p, y)
    >>> round(float(scale_temperature(p, t).max(axis=1).mean()), 1)
    0.7
    """
    p, y = _check(probabilities, labels)

    def nll(t: float) -> float:
        return float(-np.log(scale_temperature(p, t)[np.arange(len(y)), y] + 1e-12).mean())

    result = minimize_scalar(nll, bounds=bounds, method="bounded", options={"xatol": 1e-4})
    return float(result.x)
