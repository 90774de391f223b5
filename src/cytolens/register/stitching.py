"""``stitch``: tiles at stage positions -> pairwise overlaps -> global fit -> blended mosaic.

1. Pairs: every two tiles whose boxes at the stage positions overlap by at
   least ``min_overlap`` pixels along every axis.
2. Pairwise registration: phase correlation of the two overlap regions
   (:func:`~cytolens.register.registration.phase_correlation`), refined to
   subpixel by NCC (:func:`~cytolens.register.register`, translation), gives
   the correction to the stage offset of each pair, with the NCC of the
   overlap before and after.
3. Global fit: tile positions by weighted least squares over the accepted
   pairs (tile 0 fixed). Pairs are rejected, each with its reason, when the
   NCC after is below ``min_ncc``, the correction exceeds ``max_shift``, or
   (one at a time, worst first) their residual after the fit exceeds
   ``max_residual``.
4. Fusion: each tile placed at its fitted position (subpixel, by
   :func:`~cytolens.register.transform_image`) and blended with weights that
   ramp linearly to the tile's edges.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cytolens.core.errors import InputError
from cytolens.core.validate import check_array
from cytolens.register.registration import (
    RegistrationWarning,
    normalized_cross_correlation,
    phase_correlation,
    register,
)
from cytolens.register.resample import transform_image
from cytolens.register.transform import Transform

__all__ = ["StitchResult", "overlap_regions", "stitch"]

logger = logging.getLogger(__name__)


@dataclass
class StitchResult:
    """What :func:`stitch` found and made.

    Attributes
    ----------
    image : numpy.ndarray or None
        The blended mosaic (float32), ``None`` with ``fuse=False``.
    positions : numpy.ndarray
        Fitted tile origins (pixels, ``(n_tiles, ndim)``), in the mosaic's
        frame (the smallest origin at 0).
    stage_positions : numpy.ndarray
        The given positions, shifted the same way.
    pairs : pandas.DataFrame
        One row per overlapping pair: ``tile_a``, ``tile_b``, ``overlap_px``
        (overlap box shape), ``stage_offset`` and ``fitted_offset`` (position
        of b minus a), ``correction_px`` (fitted minus stage, norm),
        ``ncc_before``, ``ncc_after``, ``residual_px``, ``accepted`` and
        ``reason`` (empty when accepted).
    """

    image: Any
    positions: np.ndarray
    stage_positions: np.ndarray
    pairs: Any


def stitch(
    tiles: Sequence[Any],
    positions: Any,
    *,
    min_overlap: int = 8,
    max_shift: float | None = None,
    min_ncc: float = 0.3,
    max_residual: float = 2.0,
    fuse: bool = True,
    device: str = "auto",
) -> StitchResult:
    """Stitch overlapping tiles into one image, refining their stage positions.

    Parameters
    ----------
    tiles : sequence of array_like
        2D or 3D tiles, all with the same number of dimensions.
    positions : array_like
        Stage position of each tile's first pixel, in pixels, ``(n_tiles,
        ndim)`` in the tiles' axis order (e.g. from
        :func:`cytolens.io.czi.read_czi_tiles`).
    min_overlap : int
        Pixels of overlap (along every axis) for two tiles to be compared.
    max_shift : float, optional
        Largest accepted correction of a stage offset, pixels; default a
        half the smallest side of the pair's overlap (phase correlation
        cannot tell larger shifts from wrap-around).
    min_ncc : float
        Pairs whose overlap NCC after registration is below it are rejected.
    max_residual : float
        Pairs that disagree with the global fit by more are rejected.
    fuse : bool
        Blend the mosaic (``False``: only fit positions).
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Returns
    -------
    StitchResult

    Raises
    ------
    InputError
        For tiles of different dimensionality, a positions array of the wrong
        shape, or a tile that overlaps no other tile at the stage positions.

    Examples
    --------
    >>> from scipy import ndimage as ndi
    >>> scene = ndi.gaussian_filter(np.random.default_rng(0).random((64, 120)), 2)
    >>> tiles = [scene[:, :70], scene[:, 48:]]
    >>> res = stitch(tiles, [(0, 0), (0, 50)])  # true offset 48, stage says 50
    >>> np.round(res.positions[1], 1).tolist(), res.image.shape
    ([0.0, 48.0], (64, 120))
    """
    import pandas as pd

    tiles = [check_array(t, name=f"tile {i}", ndim=(2, 3)) for i, t in enumerate(tiles)]
    if len(tiles) < 2:
        raise InputError(f"stitch needs at least 2 tiles, got {len(tiles)}")
    if len({t.ndim for t in tiles}) > 1:
        raise InputError(
            "tiles have different dimensionality: "
            + ", ".join(f"tile {i} {t.shape}" for i, t in enumerate(tiles))
        )
    ndim = tiles[0].ndim
    stage = np.asarray(positions, dtype=np.float64)
    if stage.shape != (len(tiles), ndim) or not np.all(np.isfinite(stage)):
        raise InputError(
            f"positions must be finite, shape ({len(tiles)}, {ndim}) (one origin per tile, "
            f"pixels), got shape {stage.shape}"
        )
    stage = stage - stage.min(axis=0)
    shapes = np.array([t.shape for t in tiles], dtype=np.float64)
    rows = []
    for a in range(len(tiles)):
        for b in range(a + 1, len(tiles)):
            lo = np.maximum(stage[a], stage[b])
            hi = np.minimum(stage[a] + shapes[a], stage[b] + shapes[b])
            if np.all(hi - lo >= min_overlap):
                rows.append(_pair(tiles, stage, a, b, max_shift, min_ncc, device))
    linked = {i for r in rows for i in (r["tile_a"], r["tile_b"])}
    lonely = [i for i in range(len(tiles)) if i not in linked]
    if lonely:
        raise InputError(
            f"tile(s) {lonely} overlap no other tile by >= {min_overlap} px at the given "
            "positions; check the stage positions (pixels, not micrometres?) or min_overlap"
        )
    fitted = _global_fit(stage, rows, max_residual)
    if not any(r["accepted"] for r in rows):
        warnings.warn(
            "no tile pair was registered reliably; the mosaic uses the stage positions",
            RegistrationWarning,
            stacklevel=2,
        )
    origin = fitted.min(axis=0)
    fitted -= origin
    stage_out = stage - origin
    image = _blend(tiles, fitted, device) if fuse else None
    pairs = pd.DataFrame(rows)
    return StitchResult(image=image, positions=fitted, stage_positions=stage_out, pairs=pairs)


def overlap_regions(
    shape_a: tuple[int, ...], shape_b: tuple[int, ...], pos_a: Any, pos_b: Any
) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """The overlap of two tiles placed at ``pos_a`` and ``pos_b``: a region in each, same shape.

    Examples
    --------
    >>> overlap_regions((10, 10), (10, 10), (0, 0), (0, 7.4))
    ((slice(0, 10, None), slice(7, 10, None)), (slice(0, 10, None), slice(0, 3, None)))
    """
    pa, pb = np.asarray(pos_a, dtype=np.float64), np.asarray(pos_b, dtype=np.float64)
    lo = np.maximum(pa, pb)
    hi = np.minimum(pa + np.array(shape_a), pb + np.array(shape_b))
    ia, ib = [], []
    for x, y, p, q in zip(lo, hi, pa, pb, strict=True):
        start_a, start_b = round(x - p), round(x - q)
        n = max(min(round(y - p) - start_a, round(y - q) - start_b), 0)
        ia.append(slice(start_a, start_a + n))
        ib.append(slice(start_b, start_b + n))
    return tuple(ia), tuple(ib)


def _pair(
    tiles: list[Any],
    stage: np.ndarray,
    a: int,
    b: int,
    max_shift: float | None,
    min_ncc: float,
    device: str,
) -> dict[str, Any]:
    """Register the overlap of tiles ``a`` and ``b``; the correction to their stage offset."""
    ia, ib = overlap_regions(tiles[a].shape, tiles[b].shape, stage[a], stage[b])
    n = [s.stop - s.start for s in ia]
    ra = np.asarray(tiles[a][ia], dtype=np.float32)
    rb = np.asarray(tiles[b][ib], dtype=np.float32)
    limit = float(max_shift) if max_shift is not None else max(min(n) / 2, 2.0)
    row: dict[str, Any] = {
        "tile_a": a,
        "tile_b": b,
        "overlap_px": tuple(n),
        "stage_offset": tuple(stage[b] - stage[a]),
    }
    import torch

    ncc_before = float(
        normalized_cross_correlation(
            torch.from_numpy(ra.ravel()).double(), torch.from_numpy(rb.ravel()).double()
        )
    )
    # b's overlap content at index x shows what a shows at x + t: moving=b, fixed=a
    shift = phase_correlation(ra, rb)
    start = Transform.from_translation(shift)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RegistrationWarning)
        try:
            t = register(
                ra,
                rb,
                transform="translation",
                initial=start,
                phase_correlation=False,
                device=device,
                max_iterations=30,
                max_samples=2**14,
            )
            d = t.translation
            ncc_after = float(t.quality["ncc_after"])
        except InputError:
            d, ncc_after = shift, float("nan")
    # rb(x + d) ~ ra(x), ra starting at ia0 in tile a and rb at ib0 in tile b: the offset
    # of b relative to a is ia0 - ib0 - d (the stage offset rounded, then corrected)
    start_a = np.array([s.start for s in ia], dtype=np.float64)
    start_b = np.array([s.start for s in ib], dtype=np.float64)
    correction = start_a - start_b - np.asarray(d) - (stage[b] - stage[a])
    row.update(ncc_before=ncc_before, ncc_after=ncc_after, correction=correction)
    reason = ""
    if not np.isfinite(ncc_after) or ncc_after < min_ncc:
        reason = f"NCC in the overlap {ncc_after:.2f} < min_ncc {min_ncc:g}"
    elif np.linalg.norm(correction) > limit:
        reason = f"correction {np.linalg.norm(correction):.1f} px > max_shift {limit:.1f} px"
    row.update(accepted=not reason, reason=reason)
    return row


def _global_fit(stage: np.ndarray, rows: list[dict[str, Any]], max_residual: float) -> np.ndarray:
    """Least-squares tile positions from the accepted pairs, dropping the worst outliers."""
    n, ndim = stage.shape
    while True:
        used = [r for r in rows if r["accepted"]]
        pos = stage.copy()
        if used:
            a_mat = np.zeros((len(used) + 1, n))
            rhs = np.zeros((len(used) + 1, ndim))
            for k, r in enumerate(used):
                w = max(r["ncc_after"], 0.05)
                a_mat[k, r["tile_b"]], a_mat[k, r["tile_a"]] = w, -w
                rhs[k] = w * (np.asarray(r["stage_offset"]) + r["correction"])
            a_mat[-1, 0], rhs[-1] = 1.0, stage[0]  # anchor tile 0
            pos = np.linalg.lstsq(a_mat, rhs, rcond=None)[0]
            # tiles not linked through accepted pairs keep their stage positions
            linked = {i for r in used for i in (r["tile_a"], r["tile_b"])} | {0}
            for i in range(n):
                if i not in linked:
                    pos[i] = stage[i]
        worst, worst_res = None, 0.0
        for r in rows:
            fitted = pos[r["tile_b"]] - pos[r["tile_a"]]
            res = float(np.linalg.norm(fitted - np.asarray(r["stage_offset"]) - r["correction"]))
            r["fitted_offset"] = tuple(fitted)
            r["residual_px"] = res
            r["correction_px"] = float(np.linalg.norm(fitted - np.asarray(r["stage_offset"])))
            if r["accepted"] and res > max_residual and res > worst_res:
                worst, worst_res = r, res
        if worst is None:
            break
        worst["accepted"] = False
        worst["reason"] = (
            f"residual {worst_res:.2f} px after the global fit > max_residual {max_residual:g} px"
        )
    for r in rows:
        r["correction"] = tuple(float(c) for c in r["correction"])
    return pos


def _blend(tiles: list[Any], positions: np.ndarray, device: str) -> np.ndarray:
    """Place each tile at its (subpixel) position and blend with linear edge ramps."""
    ndim = tiles[0].ndim
    ends = np.array([p + np.array(t.shape) for p, t in zip(positions, tiles, strict=True)])
    shape = tuple(int(np.ceil(e - 0.01)) for e in ends.max(axis=0))
    acc = np.zeros(shape, np.float32)
    wsum = np.zeros(shape, np.float32)
    for tile, pos in zip(tiles, positions, strict=True):
        start = np.floor(pos).astype(int)
        frac = pos - start
        size = tuple(
            int(min(n + 1, s - o)) for n, s, o in zip(tile.shape, shape, start, strict=True)
        )
        region = tuple(slice(o, o + k) for o, k in zip(start, size, strict=True))
        move = Transform.from_translation(-frac)
        data = np.asarray(tile, dtype=np.float32)
        placed = transform_image(data, move, size, cval=np.nan, device=device)
        ramp = _edge_weights(tile.shape)
        w = transform_image(ramp, move, size, cval=0.0, device=device)
        ok = np.isfinite(placed)
        w = np.where(ok, w, 0).astype(np.float32)
        acc[region] += np.where(ok, placed, 0) * w
        wsum[region] += w
    del ndim
    return np.divide(acc, wsum, out=np.zeros_like(acc), where=wsum > 0)


def _edge_weights(shape: tuple[int, ...]) -> np.ndarray:
    """Weights that ramp linearly from the tile's edges (1 pixel in) to its centre."""
    w = np.ones(shape, np.float32)
    for axis, n in enumerate(shape):
        d = np.minimum(np.arange(n), np.arange(n)[::-1]) + 1.0
        w = w * d.reshape([-1 if a == axis else 1 for a in range(len(shape))]).astype(np.float32)
    return w
