"""Classical per-cell features of crops: shape, intensity and texture (Haralick, LBP).

The object of a crop is the connected component of an Otsu threshold mask
nearest the crop's centre (the nucleus or cell the crop was cut around).

All crops of a call are measured together: per-pixel steps (hole filling,
labelling, perimeter, Euler number, LBP) run once on a *mosaic* of the crops
(stacked with a zero row between them and a zero border, so no neighbourhood
reaches from one crop into another and each crop sees zeros outside, as
scikit-image does at an image border), and the statistics are batched numpy
reductions. The values are those of scikit-image's per-crop functions
(``threshold_otsu``, ``regionprops``, ``graycomatrix``/``graycoprops``,
``local_binary_pattern``) up to floating-point rounding; only the convex hull
(solidity, Feret diameter) is still computed crop by crop.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["SHAPE_FEATURES", "classical_features", "object_mask", "object_masks"]

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
_OTSU_BINS = 256
#: GLCM distances and angles (as scikit-image turns them into pixel offsets).
_GLCM_DISTANCES = (1, 2)
_GLCM_ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
#: Inertia eigenvalues closer than this (relative) to each other or to zero are
#: recomputed with scikit-image: there, square roots amplify rounding differences.
_DEGENERATE = 1e-6
#: Crops per mosaic (bounds the memory of the per-pixel steps).
_CHUNK = 2048


def _mosaic(stack: np.ndarray) -> np.ndarray:
    """Crops ``(N, Y, X)`` stacked vertically: a zero row above each and a zero border."""
    n, h, w = stack.shape
    out = np.zeros((n, h + 1, w + 2), stack.dtype)
    out[:, 1:, 1:-1] = stack
    return np.concatenate([out.reshape(n * (h + 1), w + 2), np.zeros((1, w + 2), stack.dtype)])


def _unmosaic(mosaic: np.ndarray, n: int) -> np.ndarray:
    """The crops ``(N, Y, X)`` of :func:`_mosaic`'s output."""
    rows, w2 = mosaic.shape
    return mosaic[:-1].reshape(n, (rows - 1) // n, w2)[:, 1:, 1:-1]


def _crop_of_rows(n: int, h: int, shift: int = 0) -> np.ndarray:
    """Crop index of each mosaic row (a zero row goes with the crop below it; ``shift``
    rows down: with the crop above it)."""
    return np.clip((np.arange(n * (h + 1) + 1) - shift) // (h + 1), 0, n - 1)


def _otsu_thresholds(planes: np.ndarray) -> np.ndarray:
    """``threshold_otsu`` (256 bins over each plane's range) of non-constant planes ``(N, Y, X)``.

    The binning repeats ``numpy.histogram``'s (edges from ``linspace``, the
    same index corrections), the search ``threshold_otsu``'s (float32 counts).
    """
    flat = planes.reshape(len(planes), -1)
    n, nb = len(flat), _OTSU_BINS
    lo, hi = flat.min(axis=1), flat.max(axis=1)
    edges = np.linspace(lo, hi, nb + 1, axis=1)
    idx = ((flat - lo[:, None]) / (hi - lo)[:, None] * nb).astype(np.intp)
    idx[idx == nb] -= 1
    rows = np.arange(n)[:, None]
    idx -= flat < edges[rows, idx]
    idx += (flat >= edges[rows, idx + 1]) & (idx != nb - 1)
    counts = np.bincount((rows * nb + idx).ravel(), minlength=n * nb).reshape(n, nb)
    counts = counts.astype(np.float32)
    centers = (edges[:, :-1] + edges[:, 1:]) / 2.0
    weight1 = np.cumsum(counts, axis=1)
    weight2 = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1]
    mean1 = np.cumsum(counts * centers, axis=1) / weight1
    mean2 = (np.cumsum((counts * centers)[:, ::-1], axis=1) / weight2[:, ::-1])[:, ::-1]
    variance12 = weight1[:, :-1] * weight2[:, 1:] * (mean1[:, :-1] - mean2[:, 1:]) ** 2
    return centers[np.arange(n), np.argmax(variance12, axis=1)]


def object_masks(planes: np.ndarray) -> np.ndarray:
    """Boolean masks ``(N, Y, X)`` of the object nearest the centre of each plane.

    Each plane ``(Y, X)`` is thresholded (Otsu), holes are filled and the
    connected component (4-connected) nearest the plane's centre is kept
    (ties: the first in raster order); a constant plane has an empty mask.

    Examples
    --------
    >>> p = np.zeros((2, 16, 16)); p[:, 5:11, 4:12] = 1; p[:, 0:2, 0:2] = 1
    >>> object_masks(p).sum(axis=(1, 2)).tolist()
    [48, 48]
    """
    from scipy import ndimage as ndi

    p = np.asarray(planes, np.float64)
    n, h, w = p.shape
    flat = p.reshape(n, -1)
    varied = flat.max(axis=1) > flat.min(axis=1)
    fg = np.zeros(p.shape, bool)
    if varied.any():
        fg[varied] = p[varied] > _otsu_thresholds(p[varied])[:, None, None]
    lab, count = ndi.label(ndi.binary_fill_holes(_mosaic(fg)))
    if not count:
        return fg
    cy, cx = (np.array((h, w)) - 1) / 2
    yy, xx = np.indices((h, w))
    dist = _mosaic(np.broadcast_to(np.hypot(yy - cy, xx - cx), p.shape))
    on = lab > 0
    which = lab[on]
    nearest = np.full(count + 1, np.inf)
    np.minimum.at(nearest, which, dist[on])
    crop = np.zeros(count + 1, np.intp)
    crop[which] = np.broadcast_to(_crop_of_rows(n, h)[:, None], lab.shape)[on]
    # labels are numbered in raster order, crop by crop: the lexsort keeps the
    # first of equally near components, as argmin over one crop does
    labels = np.arange(1, count + 1)
    order = np.lexsort((labels, nearest[1:], crop[1:]))
    first = np.r_[True, crop[1:][order][1:] != crop[1:][order][:-1]]
    keep = np.zeros(count + 1, bool)
    keep[labels[order][first]] = True
    return _unmosaic(keep[lab], n)


def object_mask(plane: np.ndarray) -> np.ndarray:
    """Boolean mask of the object nearest the centre of a crop plane (Otsu threshold).

    Examples
    --------
    >>> p = np.zeros((16, 16)); p[5:11, 4:12] = 1; p[0:2, 0:2] = 1
    >>> int(object_mask(p).sum())
    48
    """
    return object_masks(np.asarray(plane)[None])[0]


def _bincount_by_crop(values: np.ndarray, crop: np.ndarray, n: int, bins: int) -> np.ndarray:
    """Histograms ``(N, bins)`` of non-negative integer ``values`` per crop index."""
    codes = crop.astype(np.intp) * bins + values.astype(np.intp)
    return np.bincount(codes.ravel(), minlength=n * bins).reshape(n, bins)


def _perimeter_euler(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``skimage.measure.perimeter(m, 4)`` and ``euler_number(m, 2)`` of each mask."""
    from scipy import ndimage as ndi
    from skimage.measure._regionprops_utils import EULER_COEFS2D_8

    n, h, _ = masks.shape
    m = _mosaic(masks).astype(np.uint8)
    crop = np.broadcast_to(_crop_of_rows(n, h)[:, None], m.shape)
    below = np.broadcast_to(_crop_of_rows(n, h, 1)[:, None], m.shape)
    border = m - ndi.binary_erosion(m, ndi.generate_binary_structure(2, 1), border_value=0)
    kernel = np.array([[10, 2, 10], [2, 1, 2], [10, 2, 10]])
    weights = np.zeros(50, np.float64)
    weights[[5, 7, 15, 17, 25, 27]] = 1
    weights[[21, 33]] = np.sqrt(2)
    weights[[13, 23]] = (1 + np.sqrt(2)) / 2
    codes = ndi.convolve(border, kernel, mode="constant", cval=0)
    perimeter = _bincount_by_crop(codes, crop, n, 50) @ weights
    # 2x2 configurations (this pixel, left, above, above-left); the mosaic's zero
    # rows and border stand in for euler_number's zero padding
    config = ndi.convolve(
        m.astype(int), np.array([[0, 0, 0], [0, 1, 4], [0, 2, 8]]), mode="constant"
    )
    euler = _bincount_by_crop(config, below, n, 16) @ np.asarray(EULER_COEFS2D_8)
    return perimeter, euler.astype(np.float64)


def _feret_max(hull: np.ndarray) -> float:
    """Largest distance between the 0.5-level contour points of a convex hull image.

    The contour of a binary image at level 0.5 passes through the midpoints of
    the edges between inside and outside pixels (``find_contours``); the
    farthest pair lies among the first and last such point of each line.
    """
    from scipy.spatial.distance import pdist

    pts = []
    for axis in (0, 1):  # edges between horizontal, then vertical neighbours
        ys, xs = np.nonzero(np.diff(np.pad(hull, 1).astype(np.int8), axis=1 - axis))
        coords = (ys + 0.5 * axis, xs + 0.5 * (1 - axis))
        new_line = np.r_[True, coords[0][1:] != coords[0][:-1]]
        ends = new_line | np.r_[new_line[1:], True]
        pts.append(np.column_stack([coords[0][ends], coords[1][ends]]))
    return float(np.sqrt(np.max(pdist(np.concatenate(pts), "sqeuclidean"))))


def _inertia_eigvals(masks: np.ndarray) -> np.ndarray:
    """Eigenvalues ``(N, 2)`` (descending, clipped at 0) of each mask's inertia tensor."""
    n, h, w = masks.shape
    m = masks.astype(np.float64)
    area = np.maximum(m.sum(axis=(1, 2)), 1)
    yy, xx = np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64)
    dy = yy[None, :] - ((m.sum(axis=2) @ yy) / area)[:, None]
    dx = xx[None, :] - ((m.sum(axis=1) @ xx) / area)[:, None]
    mu20 = np.einsum("nyx,ny->n", m, dy**2)
    mu02 = np.einsum("nyx,nx->n", m, dx**2)
    mu11 = np.einsum("nyx,ny,nx->n", m, dy, dx)
    tensor = np.stack([mu02, -mu11, -mu11, mu20], axis=1).reshape(n, 2, 2) / area[:, None, None]
    return np.clip(np.linalg.eigvalsh(tensor), 0, None)[:, ::-1]


def _shape_features(masks: np.ndarray) -> dict[str, np.ndarray]:
    """:data:`SHAPE_FEATURES` and ``form_factor`` of each mask (0 for an empty mask)."""
    from skimage.measure import regionprops
    from skimage.morphology import convex_hull_image

    n, h, w = masks.shape
    has = masks.any(axis=(1, 2))
    out = {name: np.zeros(n) for name in SHAPE_FEATURES}
    area = masks.sum(axis=(1, 2)).astype(np.float64)
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    r0, c0 = rows.argmax(axis=1), cols.argmax(axis=1)
    r1, c1 = h - rows[:, ::-1].argmax(axis=1), w - cols[:, ::-1].argmax(axis=1)
    perimeter, euler = _perimeter_euler(masks)
    eig = _inertia_eigvals(masks)
    l1, l2 = eig[:, 0], eig[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ecc = np.where(l1 == 0, 0.0, np.sqrt(1 - l2 / l1))
        out["extent"] = area / ((r1 - r0) * (c1 - c0))
    out |= {
        "area": area,
        "perimeter": perimeter,
        "eccentricity": ecc,
        "axis_major_length": 4 * np.sqrt(l1),
        "axis_minor_length": 4 * np.sqrt(l2),
        "euler_number": euler,
        "equivalent_diameter_area": (2 * 2 * area / np.pi) ** (1 / 2),
    }
    degenerate = (l1 > 0) & (np.minimum(l2, l1 - l2) < _DEGENERATE * l1)
    for k in np.flatnonzero(has):
        image = masks[k, r0[k] : r1[k], c0[k] : c1[k]]
        hull = convex_hull_image(image)
        out["solidity"][k] = area[k] / float(np.sum(hull))
        out["feret_diameter_max"][k] = _feret_max(hull)
        if degenerate[k]:  # near-equal or near-zero eigenvalues: exactly as regionprops
            (props,) = regionprops(image.astype(np.uint8))
            for name in ("eccentricity", "axis_major_length", "axis_minor_length"):
                out[name][k] = float(getattr(props, name))
    for name in SHAPE_FEATURES:
        out[name] = np.where(has, out[name], 0.0)
    out["form_factor"] = np.where(has, 4 * np.pi * area / np.maximum(perimeter, 1.0) ** 2, 0.0)
    return out


def _percentiles(values: np.ndarray, where: np.ndarray, q: tuple[float, ...]) -> np.ndarray:
    """``np.percentile(row[where_row], q)`` (linear) of each row; ``(N, len(q))``, NaN if empty."""
    s = np.sort(np.where(where, values, np.inf), axis=1)
    n = where.sum(axis=1)
    rows = np.arange(len(s))[:, None]
    virtual = (n[:, None] - 1) * (np.asarray(q, np.float64) / 100)[None, :]
    below = np.floor(virtual)
    gamma = virtual - below
    below = np.clip(below, 0, np.maximum(n - 1, 0)[:, None]).astype(np.intp)
    above = np.minimum(below + 1, np.maximum(n - 1, 0)[:, None])
    a, b = s[rows, below], s[rows, above]
    diff = b - a
    with np.errstate(invalid="ignore"):
        out = np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)
    return np.where(n[:, None] > 0, out, np.nan)


def _intensity_features(planes: np.ndarray, masks: np.ndarray) -> dict[str, np.ndarray]:
    """Intensity statistics inside each mask (the whole crop if empty) and the background."""
    n = len(planes)
    flat, m = planes.reshape(n, -1), masks.reshape(n, -1)
    inside = np.where(m.any(axis=1)[:, None], m, True)
    outside = ~m
    count = inside.sum(axis=1)
    total = np.where(inside, flat, 0.0).sum(axis=1)
    mean = total / count
    std = np.sqrt(np.where(inside, (flat - mean[:, None]) ** 2, 0.0).sum(axis=1) / count)
    q = _percentiles(flat, inside, (10, 50, 90))
    s = np.sort(np.where(outside, flat, np.inf), axis=1)
    k = outside.sum(axis=1)
    r = np.arange(n)
    lo, hi = s[r, np.maximum((k - 1) // 2, 0)], s[r, np.maximum(k // 2, 0)]
    background = np.where(k > 0, np.where(k % 2 == 1, hi, (lo + hi) / 2), 0.0)
    return {
        "mean_intensity": mean,
        "std_intensity": std,
        "max_intensity": np.where(inside, flat, -np.inf).max(axis=1),
        "integrated_intensity": total,
        "p10_intensity": q[:, 0],
        "median_intensity": q[:, 1],
        "p90_intensity": q[:, 2],
        "background_intensity": background,
    }


def _glcm_offsets() -> list[tuple[int, int]]:
    """(row, column) offsets of ``graycomatrix``: ``round(sin(a) d)``, ``round(cos(a) d)``."""
    out = []
    for d in _GLCM_DISTANCES:
        for angle in _GLCM_ANGLES:
            out.append((round(float(np.sin(angle)) * d), round(float(np.cos(angle)) * d)))
    return out


def _glcm(q: np.ndarray) -> np.ndarray:
    """Grey-level co-occurrence counts ``(N, L, L, distances, angles)`` of ``q`` ``(N, Y, X)``."""
    n, h, w = q.shape
    crop = np.arange(n)[:, None, None]
    out = []
    for dr, dc in _glcm_offsets():
        i = q[:, max(0, -dr) : h - max(0, dr), max(0, -dc) : w - max(0, dc)]
        j = q[:, max(0, dr) : h + min(0, dr), max(0, dc) : w + min(0, dc)]
        pairs = (i.astype(np.intp) * _LEVELS + j) + crop * _LEVELS**2
        out.append(np.bincount(pairs.ravel(), minlength=n * _LEVELS**2))
    return np.stack(out, axis=-1).reshape(n, _LEVELS, _LEVELS, len(_GLCM_DISTANCES), -1)


def _haralick(glcm: np.ndarray) -> dict[str, np.ndarray]:
    """``graycoprops`` of each GLCM (pairs with level 0 dropped), averaged over offsets."""
    g = glcm.astype(np.float64)
    g[:, 0] = 0
    g[:, :, 0] = 0
    p = g / np.maximum(g.sum(axis=(1, 2), keepdims=True), 1)
    sums = p.sum(axis=(1, 2), keepdims=True)
    p = (p / np.where(sums == 0, 1, sums)).reshape(*g.shape[:3], -1)  # (crop, i, j, offset)
    lv = np.arange(_LEVELS, dtype=np.float64)
    diff = (lv[:, None] - lv[None, :]).ravel()
    p_i, p_j = p.sum(axis=2), p.sum(axis=1)  # marginals (crop, level, offset)
    di = lv[None, :, None] - np.einsum("nld,l->nd", p_i, lv)[:, None, :]
    dj = lv[None, :, None] - np.einsum("nld,l->nd", p_j, lv)[:, None, :]
    std_i = np.sqrt(np.einsum("nld,nld->nd", p_i, di * di))
    std_j = np.sqrt(np.einsum("nld,nld->nd", p_j, dj * dj))
    cov = np.einsum("nid,nid->nd", np.einsum("nijd,njd->nid", p, dj), di)
    p = p.reshape(len(g), _LEVELS**2, -1)  # (crop, i * L + j, offset)

    def total(weights: np.ndarray) -> np.ndarray:  # sum over (i, j) of p * weights
        return np.einsum("nkd,k->nd", p, weights)

    asm = np.einsum("nkd,nkd->nd", p, p)
    flat = (std_i < 1e-15) | (std_j < 1e-15)
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.where(flat, 1.0, cov / (std_i * std_j))
    props = {
        "contrast": total(diff**2),
        "dissimilarity": total(np.abs(diff)),
        "homogeneity": total(1.0 / (1.0 + diff**2)),
        "energy": np.sqrt(asm),
        "correlation": corr,
        "ASM": asm,
    }
    return {name: np.nanmean(props[name], axis=1) for name in _HARALICK}


def _lbp_offsets() -> tuple[np.ndarray, np.ndarray]:
    """Sample offsets of ``local_binary_pattern`` (rounded to 5 decimals, as it does)."""
    angles = 2 * np.pi * np.arange(_LBP_POINTS, dtype=np.float64) / _LBP_POINTS
    return np.round(-1.0 * np.sin(angles), 5), np.round(1.0 * np.cos(angles), 5)


def _lbp_uniform(q: np.ndarray, where: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``local_binary_pattern(q[k], 8, 1, "uniform")`` at the pixels ``where``, and their ``k``.

    Vectorised over crops with scikit-image's arithmetic: each sample is the
    bilinear interpolation at the *crop's own* coordinates (``r + rp``), zero
    outside the crop, compared with the centre (``>= 0``).
    """
    _, h, w = q.shape
    img = np.pad(q.astype(np.float64), ((0, 0), (1, 1), (1, 1))).ravel()
    k, ys, xs = np.nonzero(where)
    base = k * ((h + 2) * (w + 2))
    center = img[base + (ys + 1) * (w + 2) + xs + 1]
    r, c = ys.astype(np.float64), xs.astype(np.float64)

    def pixel(row: np.ndarray, col: np.ndarray) -> np.ndarray:
        return img[base + (row.astype(np.intp) + 1) * (w + 2) + col.astype(np.intp) + 1]

    signs = []
    for rp, cp in zip(*_lbp_offsets(), strict=True):
        rr, cc = r + rp, c + cp
        if rp == np.floor(rp) and cp == np.floor(cp):  # on the grid: the pixel itself
            texture = pixel(rr, cc)
        else:
            r0, r1, c0, c1 = np.floor(rr), np.ceil(rr), np.floor(cc), np.ceil(cc)
            dr, dc = rr - r0, cc - c0
            top = (1 - dc) * pixel(r0, c0) + dc * pixel(r0, c1)
            bottom = (1 - dc) * pixel(r1, c0) + dc * pixel(r1, c1)
            texture = (1 - dr) * top + dr * bottom
        signs.append((texture - center >= 0).astype(np.int8))
    s = np.stack(signs)
    changes = np.abs(np.diff(s, axis=0)).sum(axis=0)
    return np.where(changes <= 2, s.sum(axis=0), _LBP_POINTS + 1), k


def _texture_features(planes: np.ndarray, masks: np.ndarray) -> dict[str, np.ndarray]:
    """Haralick features and a uniform LBP histogram inside each mask (32 grey levels)."""
    n = len(planes)
    lo = planes.min(axis=(1, 2), keepdims=True)
    hi = planes.max(axis=(1, 2), keepdims=True)
    q = np.floor((planes - lo) / np.maximum(hi - lo, 1e-12) * (_LEVELS - 1) + 0.5)
    q = np.where(masks, q.astype(np.uint8), 0).astype(np.uint8)
    out = {f"haralick_{k}": v for k, v in _haralick(_glcm(q)).items()}
    where = np.where(masks.any(axis=(1, 2))[:, None, None], masks, True)
    values, crop = _lbp_uniform(q, where)
    hist = _bincount_by_crop(values, crop, n, _LBP_POINTS + 2)
    hist = hist / np.maximum(hist.sum(axis=1, keepdims=True), 1)
    out |= {f"lbp_{i}": hist[:, i] for i in range(_LBP_POINTS + 2)}
    return out


def _features(c: np.ndarray) -> dict[str, np.ndarray]:
    """All columns for crops ``(N, C, Y, X)`` float64, in :func:`classical_features`' order."""
    masks = object_masks(c.mean(axis=1))
    cols = _shape_features(masks)
    for ch in range(c.shape[1]):
        prefix = f"c{ch}_" if c.shape[1] > 1 else ""
        plane = c[:, ch]
        stats = _intensity_features(plane, masks) | _texture_features(plane, masks)
        cols |= {prefix + k: v for k, v in stats.items()}
    return cols


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

    Raises
    ------
    InputError
        Crops of another shape, or holding NaN or infinite values.

    Examples
    --------
    >>> x = np.zeros((2, 1, 24, 24)); x[:, :, 8:16, 6:18] = 100
    >>> f = classical_features(x)
    >>> f["area"].tolist(), f.shape[1] > 30
    ([96.0, 96.0], True)
    """
    from cytolens.core.errors import InputError

    a = np.asarray(crops)
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4 or min(a.shape[1:], default=0) < 1:
        raise InputError(f"crops must be (N, C, Y, X) or (N, Y, X), got shape {a.shape}")
    c = a.astype(np.float64)
    if not np.isfinite(c).all():
        raise InputError("crops hold NaN or infinite values; expected finite intensities")
    parts = [pd.DataFrame(_features(c[i : i + _CHUNK])) for i in range(0, len(c), _CHUNK)]
    if not parts:
        return pd.DataFrame(_features(np.zeros((1, *c.shape[1:])))).iloc[:0]
    return pd.concat(parts, ignore_index=True)
