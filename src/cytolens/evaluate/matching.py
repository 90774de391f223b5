"""Pixel overlaps and IoU between two label images, and one-to-one matching.

The building block of instance-segmentation scores (AP at IoU thresholds, the
DSB2018 score) and of the Cell Tracking Challenge SEG measure.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse
from scipy.optimize import linear_sum_assignment

from cytolens.core.errors import InputError
from cytolens.core.validate import check_array

__all__ = ["iou_matrix", "match_instances", "overlap_matrix"]


def _labels(array: Any, name: str) -> np.ndarray:
    arr = np.asarray(check_array(array, name=name))
    if arr.dtype.kind not in "biu":
        raise InputError(f"{name} must be an integer label image, got dtype {arr.dtype}")
    if arr.dtype.kind == "i" and arr.min() < 0:
        raise InputError(f"{name} has negative labels (min {arr.min()}); expected 0 = background")
    return arr


def overlap_matrix(
    true: Any, pred: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pixel counts shared by every pair of objects of two label images of the same shape.

    Parameters
    ----------
    true, pred : array_like of int
        Label images (0 = background), any dimensionality, same shape.

    Returns
    -------
    overlap : numpy.ndarray, shape (n_true, n_pred)
        ``overlap[i, j]`` = pixels where ``true == true_ids[i]`` and ``pred == pred_ids[j]``.
    true_ids, pred_ids : numpy.ndarray
        The object labels (without 0), sorted.
    true_sizes, pred_sizes : numpy.ndarray
        Pixel count of each object.

    Examples
    --------
    >>> t = np.array([[1, 1, 0, 2]])
    >>> p = np.array([[3, 0, 0, 3]])
    >>> overlap_matrix(t, p)[0]
    array([[1],
           [1]])
    """
    true, pred = _labels(true, "true labels"), _labels(pred, "predicted labels")
    if true.shape != pred.shape:
        raise InputError(
            f"label images differ in shape: true {true.shape} vs predicted {pred.shape}"
        )
    t, p = true.ravel(), pred.ravel()
    true_ids, t_inv = np.unique(t, return_inverse=True)
    pred_ids, p_inv = np.unique(p, return_inverse=True)
    counts = sparse.coo_matrix(
        (np.ones(t.size, np.int64), (t_inv, p_inv)), shape=(true_ids.size, pred_ids.size)
    ).toarray()
    true_sizes, pred_sizes = counts.sum(axis=1), counts.sum(axis=0)
    ti = slice(1, None) if true_ids[0] == 0 else slice(None)
    pi = slice(1, None) if pred_ids[0] == 0 else slice(None)
    return counts[ti, pi], true_ids[ti], pred_ids[pi], true_sizes[ti], pred_sizes[pi]


def iou_matrix(true: Any, pred: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersection over union of every pair of objects.

    Returns
    -------
    iou : numpy.ndarray of float64, shape (n_true, n_pred)
    true_ids, pred_ids : numpy.ndarray

    Examples
    --------
    >>> t = np.array([[1, 1, 0, 0]])
    >>> p = np.array([[1, 1, 1, 0]])
    >>> iou_matrix(t, p)[0].round(3)
    array([[0.667]])
    """
    inter, true_ids, pred_ids, ts, ps = overlap_matrix(true, pred)
    union = ts[:, None] + ps[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return iou, true_ids, pred_ids


def match_instances(iou: np.ndarray, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of objects maximizing total IoU, keeping pairs with IoU >= threshold.

    For ``threshold >= 0.5`` the match is unique whatever the method (an object
    can overlap at most one other by more than half); below, the assignment is
    solved optimally with :func:`scipy.optimize.linear_sum_assignment`.

    Returns
    -------
    true_index, pred_index : numpy.ndarray of int
        Row and column indices of the matched pairs in ``iou``.

    Examples
    --------
    >>> match_instances(np.array([[0.9, 0.1], [0.2, 0.4]]), 0.5)
    (array([0]), array([0]))
    """
    if not 0 <= threshold <= 1:
        raise InputError(f"IoU threshold must be in [0, 1], got {threshold}")
    if iou.size == 0:
        return np.zeros(0, int), np.zeros(0, int)
    rows, cols = linear_sum_assignment(-np.where(iou >= threshold, iou, 0.0))
    keep = iou[rows, cols] >= max(threshold, 1e-12)
    return rows[keep], cols[keep]
