"""Classical per-cell features of crops: shape, intensity and texture (Haralick, LBP).

The object of a crop is the connected component of an Otsu threshold mask
nearest the crop's centre (the nucleus or cell the crop was cut around).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["SHAPE_FEATURES", "classical_features", "object_mask"]

#: regionprops shape properties measured on the object mask.
SHAPE_FEATURES = (
    "area",
    "perimeter",
    "eccentricity",
    "solidity",
    "extent",
    "axis_major_length",
    "axis_minor_length",
    "euler_number",
    "equivalent_diameter_area",
    "feret_diameter_max",
)
_HARALICK = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")
_LEVELS = 32
_LBP_POINTS = 8


def object_mask(plane: np.ndarray) -> np.ndarray:
    """Boolean mask of the object nearest the centre of a crop plane (Otsu threshold).

    Examples
    --------
    >>> p = np.zeros((16, 16)); p[5:11, 4:12] = 1; p[0:2, 0:2] = 1
    >>> int(object_mask(p).sum())
    48
    """
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    p = np.asarray(plane, np.float64)
    if p.max() <= p.min():
        return np.zeros(p.shape, bool)
    fg = ndi.binary_fill_holes(p > threshold_otsu(p))
    lab, n = ndi.label(fg)
    if n <= 1:
        return fg
    cy, cx = (np.array(p.shape) - 1) / 2
    yy, xx = np.indices(p.shape)
    dist = ndi.minimum(np.hypot(yy - cy, xx - cx), lab, np.arange(1, n + 1))
    return lab == (int(np.argmin(dist)) + 1)


def _texture(plane: np.ndarray, mask: np.ndarray, prefix: str) -> dict[str, float]:
    from skimage.feature import graycomatrix, graycoprops, local_binary_pattern

    lo, hi = float(plane.min()), float(plane.max())
    q = np.floor((plane - lo) / max(hi - lo, 1e-12) * (_LEVELS - 1) + 0.5).astype(np.uint8)
    q = np.where(mask, q, 0).astype(np.uint8)
    glcm = graycomatrix(
        q, distances=[1, 2], angles=[0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=_LEVELS
    )
    glcm[0, :, :, :] = 0  # ignore pairs with background
    glcm[:, 0, :, :] = 0
    glcm = glcm.astype(np.float64)
    sums = glcm.sum(axis=(0, 1), keepdims=True)
    glcm = glcm / np.maximum(sums, 1)
    out = {f"{prefix}haralick_{p}": float(np.nanmean(graycoprops(glcm, p))) for p in _HARALICK}
    lbp = local_binary_pattern(q, _LBP_POINTS, 1, method="uniform")
    values = lbp[mask] if mask.any() else lbp.ravel()
    hist = np.bincount(values.astype(int), minlength=_LBP_POINTS + 2)[: _LBP_POINTS + 2]
    hist = hist / max(hist.sum(), 1)
    out.update({f"{prefix}lbp_{i}": float(h) for i, h in enumerate(hist)})
    return out


def _one(crop: np.ndarray) -> dict[str, float]:
    from skimage.measure import regionprops

    c = np.asarray(crop, np.float64)
    mask = object_mask(c.mean(axis=0))
    row: dict[str, float] = {}
    props = regionprops(mask.astype(np.uint8)) if mask.any() else []
    for name in SHAPE_FEATURES:
        row[name] = float(getattr(props[0], name)) if props else 0.0
    row["form_factor"] = 4 * np.pi * row["area"] / max(row["perimeter"], 1.0) ** 2 if props else 0.0
    for ch, plane in enumerate(c):
        prefix = f"c{ch}_" if len(c) > 1 else ""
        inside = plane[mask] if mask.any() else plane.ravel()
        outside = plane[~mask] if (~mask).any() else np.zeros(1)
        q = np.percentile(inside, [10, 50, 90])
        row |= {
            f"{prefix}mean_intensity": float(inside.mean()),
            f"{prefix}std_intensity": float(inside.std()),
            f"{prefix}max_intensity": float(inside.max()),
            f"{prefix}integrated_intensity": float(inside.sum()),
            f"{prefix}p10_intensity": float(q[0]),
            f"{prefix}median_intensity": float(q[1]),
            f"{prefix}p90_intensity": float(q[2]),
            f"{prefix}background_intensity": float(np.median(outside)),
        }
        row |= _texture(plane, mask, prefix)
    return row


def classical_features(crops: Any) -> pd.DataFrame:
    """Shape, intensity and texture features of each crop (CellProfiler-like).

    Parameters
    ----------
    crops : array_like
        ``(N, C, Y, X)`` or ``(N, Y, X)`` crops; the object of each crop is
        segmented by an Otsu threshold of the channel mean (the component
        nearest the centre, holes filled).

    Returns
    -------
    pandas.DataFrame
        One row per crop: regionprops shape (:data:`SHAPE_FEATURES`,
        ``form_factor``), intensity statistics inside the mask and the
        background median, Haralick features (grey-level co-occurrence,
        32 levels, distances 1-2, 4 angles, averaged) and a uniform LBP
        histogram (8 points, radius 1) inside the mask; per channel when
        there are several (``c<k>_`` prefix). Units: pixels and the crop's
        intensity units.

    Examples
    --------
    >>> x = np.zeros((2, 1, 24, 24)); x[:, :, 8:16, 6:18] = 100
    >>> f = classical_features(x)
    >>> f["area"].tolist(), f.shape[1] > 30
    ([96.0, 96.0], True)
    """
    a = np.asarray(crops)
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4:
        from cytolens.core.errors import InputError

        raise InputError(f"crops must be (N, C, Y, X) or (N, Y, X), got shape {a.shape}")
    return pd.DataFrame([_one(c) for c in a])
