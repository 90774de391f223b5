"""Rate the focus of images patch by patch, and find the best plane of a z-stack.

An image is cut into a grid of non-overlapping square patches (84 x 84 by
default, as in Yang et al. 2018; the remainder at the bottom and right edges
is not rated). The network gives each patch a probability distribution over
11 absolute defocus levels (0 = in focus ... 10 = strongly blurred). Patches
without objects come out with a flat distribution, i.e. a low certainty, and
weigh little in the per-image summary, which is certainty-weighted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cytolens.core.axes import check_axes, move_axes
from cytolens.core.errors import InputError
from cytolens.core.image import Image
from cytolens.core.progress import progress_reporter
from cytolens.core.tiling import iter_tiles
from cytolens.core.validate import check_array
from cytolens.focus.model import (
    DEFAULT_MODEL,
    MIN_PATCH_SIZE,
    FocusModel,
    certainty,
    expected_level,
)

__all__ = ["FocusResult", "best_plane", "check_method", "rate_focus"]

logger = logging.getLogger(__name__)

#: Smallest accepted patch side.
_MIN_PATCH = MIN_PATCH_SIZE
#: Bytes of float32 pixels read at once: whole rows of patches, at least one batch.
_BAND_BYTES = 64 * 2**20

_VERDICT_IN, _VERDICT_OUT, _VERDICT_BLANK = "in focus", "out of focus", "no content"


@dataclass
class FocusResult:
    """Focus rating of one 2D image.

    Attributes
    ----------
    patches : pandas.DataFrame
        One row per patch: ``row``, ``col`` (grid position), ``y0_px``,
        ``x0_px`` (top-left pixel), ``p0`` .. ``p10`` (level probabilities), ``level``
        (most likely level), ``expected_level`` (probability-weighted mean
        level), ``certainty`` (1 - normalized entropy; 0 = flat) and
        ``is_blank`` (certainty below the model's calibrated bound).
    probabilities : numpy.ndarray
        The image's level distribution: the certainty-weighted mean of the
        non-blank patches' distributions (uniform if every patch is blank).
    mean_level : float
        Certainty-weighted mean of the non-blank patches' expected levels
        (NaN when all are blank).
    p_in_focus : float
        Probability mass of ``probabilities`` on the in-focus levels.
    verdict : str
        ``"in focus"`` when ``p_in_focus > 0.5``, ``"out of focus"`` when
        not, ``"no content"`` when every patch is blank. No user threshold.
    blank_fraction : float
        Fraction of patches that are blank.
    patch_size : int
        Patch side in pixels.
    image_shape : tuple of int
        Shape of the rated image.
    in_focus_levels : int
        Levels ``0 .. in_focus_levels - 1`` count as in focus.
    model : str
        Name of the model that rated it.
    """

    patches: pd.DataFrame
    probabilities: np.ndarray
    mean_level: float
    p_in_focus: float
    verdict: str
    blank_fraction: float
    patch_size: int
    image_shape: tuple[int, ...]
    in_focus_levels: int
    model: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def in_focus(self) -> bool | None:
        """True / False by the verdict; None when the image has no content."""
        return None if self.verdict == _VERDICT_BLANK else self.verdict == _VERDICT_IN

    @property
    def level(self) -> int:
        """Most likely level of the image's distribution."""
        return int(np.argmax(self.probabilities))

    @property
    def certainty(self) -> float:
        """Certainty of the image's distribution (1 - normalized entropy)."""
        return float(certainty(self.probabilities))

    def summary(self) -> dict[str, Any]:
        """One flat dict for a table row (CSV, JSON).

        ``level`` is ``None`` and ``mean_level`` / ``p_in_focus`` NaN for an
        image without content (every patch blank): there is no level to report.
        """
        row: dict[str, Any] = {
            "verdict": self.verdict,
            "in_focus": self.in_focus,
            "mean_level": round(float(self.mean_level), 4),
            "level": None if self.verdict == _VERDICT_BLANK else self.level,
            "p_in_focus": round(float(self.p_in_focus), 4),
            "certainty": round(self.certainty, 4),
            "blank_fraction": round(float(self.blank_fraction), 4),
            "n_patches": len(self.patches),
            "height_px": self.image_shape[0],
            "width_px": self.image_shape[1],
        }
        row.update({f"p{k}": round(float(v), 4) for k, v in enumerate(self.probabilities)})
        return row


def _as_2d(image: Any, name: str = "image") -> Any:
    """The 2D pixel array of an array or :class:`Image` (singleton axes dropped)."""
    if isinstance(image, Image):
        keep = [
            i
            for i, (a, s) in enumerate(zip(image.axes, image.shape, strict=True))
            if a in "YX" or s != 1
        ]
        axes = "".join(image.axes[i] for i in keep)
        if axes != "YX":
            raise InputError(
                f"{name} has axes {image.axes!r} (shape {image.shape}); rate_focus takes a "
                "single 2D plane (axes 'YX'): select a plane or use best_plane for a z-stack"
            )
        data = image.data
        squeeze = tuple(i for i in range(image.ndim) if i not in keep)
        image = data.squeeze(axis=squeeze) if squeeze else data
    arr = check_array(image, name=name, ndim=2)
    return arr


def _check_patch_size(patch_size: Any, shape: tuple[int, ...], name: str) -> int:
    if isinstance(patch_size, bool) or not isinstance(patch_size, (int, np.integer)):
        raise InputError(f"patch_size must be an integer, got {patch_size!r}")
    if patch_size < _MIN_PATCH:
        raise InputError(f"patch_size must be >= {_MIN_PATCH} pixels, got {patch_size}")
    if shape[0] < patch_size or shape[1] < patch_size:
        raise InputError(
            f"{name} of shape {tuple(shape)} is smaller than one {patch_size}x{patch_size} "
            f"patch; give a larger image or a smaller patch_size"
        )
    return int(patch_size)


def rate_focus(
    image: Any,
    *,
    patch_size: int = 84,
    model: str | FocusModel = DEFAULT_MODEL,
    device: Any = "auto",
    batch_size: int = 256,
    progress: Any = False,
) -> FocusResult:
    """Rate the focus of a 2D image patch by patch.

    Parameters
    ----------
    image : array_like or cytolens.core.image.Image
        A 2D grey image (numpy or Dask; any real dtype, never rescaled
        beyond the model's percentile normalization, computed over the whole
        image).
    patch_size : int
        Side of the square patches. The shipped model was trained on 84.
    model : str or FocusModel
        A shipped model name or a loaded model.
    device : {"auto", "cpu", "cuda", "mps"}
        Where the network runs.
    batch_size : int
        Patches per forward pass; bounds the memory used.
    progress : bool or callable
        True shows a rich progress bar; a callable gets ``(done, total)``.

    Returns
    -------
    FocusResult

    Raises
    ------
    InputError
        For an image that is not 2D, smaller than one patch, or has NaN/inf.

    Examples
    --------
    >>> from cytolens import data
    >>> result = rate_focus(data.nuclei().data, device="cpu")
    >>> result.verdict
    'in focus'
    >>> list(result.patches.columns[:4])
    ['row', 'col', 'y0_px', 'x0_px']
    """
    arr = _as_2d(image)
    ps = _check_patch_size(patch_size, arr.shape, "image")
    if int(batch_size) < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size!r}")
    fm = model if isinstance(model, FocusModel) else FocusModel.load(model, device=device)
    lo, hi = fm.normalizer.limits(arr)
    n_rows, n_cols = arr.shape[0] // ps, arr.shape[1] // ps
    tiles = iter_tiles((n_rows * ps, n_cols * ps), ps)
    probs = np.zeros((len(tiles), fm.n_levels), np.float32)
    # Whole rows of patches are read at once: one slice, one Dask compute per band of
    # about _BAND_BYTES (at least one batch), so file tiles are read few times and the
    # memory stays bounded whatever the image size.
    row_bytes = n_cols * ps * ps * 4
    bands = max(1, batch_size // n_cols, _BAND_BYTES // row_bytes)
    with progress_reporter(progress, len(tiles), "patches") as update:
        for r0 in range(0, n_rows, bands):
            r1 = min(n_rows, r0 + bands)
            block = np.asarray(arr[r0 * ps : r1 * ps, : n_cols * ps], dtype=np.float32)
            if not np.isfinite(block).all():
                raise InputError("image has non-finite values (NaN or inf); replace them first")
            patches = block.reshape(r1 - r0, ps, n_cols, ps).transpose(0, 2, 1, 3)
            probs[r0 * n_cols : r1 * n_cols] = fm.predict(
                patches.reshape(-1, ps, ps), lo=lo, hi=hi, batch_size=batch_size
            )
            update(r1 * n_cols)
    rows = np.array([t.index[0] for t in tiles], dtype=np.int64)
    cols = np.array([t.index[1] for t in tiles], dtype=np.int64)
    return _summarize(probs, rows, cols, ps, tuple(arr.shape), fm)


def _summarize(
    probs: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    ps: int,
    shape: tuple[int, ...],
    fm: FocusModel,
) -> FocusResult:
    cert = certainty(probs)
    blank = cert < fm.blank_certainty
    table = pd.DataFrame({"row": rows, "col": cols, "y0_px": rows * ps, "x0_px": cols * ps})
    for k in range(fm.n_levels):
        table[f"p{k}"] = probs[:, k]
    table["level"] = probs.argmax(axis=1)
    table["expected_level"] = expected_level(probs)
    table["certainty"] = cert
    table["is_blank"] = blank
    weights = np.where(blank, 0.0, cert)
    if weights.sum() > 0:
        agg = (weights[:, None] * probs).sum(axis=0) / weights.sum()
        mean_level = float((weights * table["expected_level"]).sum() / weights.sum())
        p_in = float(agg[: fm.in_focus_levels].sum())
        verdict = _VERDICT_IN if p_in > 0.5 else _VERDICT_OUT
    else:
        agg = np.full(fm.n_levels, 1.0 / fm.n_levels)
        mean_level, p_in, verdict = float("nan"), float("nan"), _VERDICT_BLANK
    return FocusResult(
        patches=table,
        probabilities=agg.astype(np.float64),
        mean_level=mean_level,
        p_in_focus=p_in,
        verdict=verdict,
        blank_fraction=float(blank.mean()) if len(blank) else float("nan"),
        patch_size=ps,
        image_shape=shape,
        in_focus_levels=fm.in_focus_levels,
        model=fm.name,
    )


def best_plane(
    stack: Any,
    *,
    axes: str = "ZYX",
    method: str = "model",
    patch_size: int = 84,
    model: str | FocusModel = DEFAULT_MODEL,
    device: Any = "auto",
    batch_size: int = 256,
    progress: Any = False,
    name: str = "stack",
) -> tuple[int, pd.DataFrame]:
    """Find the best-focused plane of a z-stack; planes without content are never picked.

    Parameters
    ----------
    stack : array_like or cytolens.core.image.Image
        A 3D stack. An :class:`~cytolens.core.image.Image` brings its own axes.
    axes : str
        Axes of an array stack: ``"Z"``, ``"Y"`` and ``"X"`` in any order.
    method : str
        ``"model"`` (default) picks the plane with the lowest certainty-weighted
        mean level (ties go to the higher in-focus probability); or one of the
        classical measures of :data:`cytolens.focus.classical.SHARPNESS_MEASURES` (highest
        value wins), a fallback that needs no network.
    patch_size, model, device, batch_size
        As for :func:`rate_focus`.
    progress : bool or callable
        Progress over planes: True for a rich bar, a callable gets ``(done, total)``.
    name : str
        How the stack is called in error messages (e.g. its file name).

    Returns
    -------
    index : int
        Index of the best plane along Z, among the planes with content.
    scores : pandas.DataFrame
        One row per plane: ``z_px`` (the plane's index) and, for ``method="model"``, ``mean_level``,
        ``p_in_focus``, ``certainty``, ``blank_fraction``, ``verdict``; for a
        classical method, the measure's value; then ``has_content``. A plane
        has no content when its intensity is constant or, for
        ``method="model"``, when every patch is rated blank (verdict
        ``"no content"``).

    Raises
    ------
    InputError
        When no plane has content (e.g. an all-zero or constant stack): there
        is no best plane to report; for an unknown method, a stack that is
        not 3D or planes smaller than one patch.

    Examples
    --------
    >>> from cytolens import data
    >>> from cytolens.simulate import defocus_levels, simulate_defocus
    >>> sharp = data.nuclei().data.astype("float32")
    >>> z = defocus_levels()[[6, 3, 0, 3, 6]]
    >>> stack = np.stack([simulate_defocus(sharp, dz) for dz in z])
    >>> best_plane(stack, device="cpu")[0]
    2
    >>> best_plane(np.zeros((3, 96, 96)), name="empty.tif", method="brenner_gradient")
    Traceback (most recent call last):
    ...
    cytolens.core.errors.InputError: empty.tif: no plane has content (all 3 planes are blank: ...
    """
    from cytolens.focus.classical import MEASURES

    if isinstance(stack, Image):
        data, ax = stack.data, stack.axes
    else:
        data, ax = check_array(stack, name="stack", ndim=3), check_axes(axes)
        if len(ax) != 3:
            raise InputError(f"axes must have 3 letters for a 3D stack, got {axes!r}")
    if sorted(ax) != sorted("ZYX"):
        raise InputError(
            f"stack has axes {ax!r}; best_plane needs exactly Z, Y and X (select one "
            "channel / time point first)"
        )
    data = data.transpose(move_axes(ax, "ZYX"))
    check_method(method)
    if method == "model":
        fm = model if isinstance(model, FocusModel) else FocusModel.load(model, device=device)
        _check_patch_size(patch_size, data.shape[1:], "each plane")
    rows = []
    with progress_reporter(progress, data.shape[0], "planes") as update:
        for z in range(data.shape[0]):
            plane = np.asarray(data[z])
            constant = bool(plane.size == 0 or np.ptp(plane) == 0)
            if method == "model":
                res = rate_focus(plane, patch_size=patch_size, model=fm, batch_size=batch_size)
                rows.append(
                    {
                        "z_px": z,
                        "mean_level": res.mean_level,
                        "p_in_focus": res.p_in_focus,
                        "certainty": res.certainty,
                        "blank_fraction": res.blank_fraction,
                        "verdict": res.verdict,
                        "has_content": not constant and res.verdict != _VERDICT_BLANK,
                    }
                )
            else:
                value = MEASURES[method](plane)
                rows.append(
                    {"z_px": z, method: value, "has_content": not constant and np.isfinite(value)}
                )
            update(z + 1)
    scores = pd.DataFrame(rows)
    content = scores[scores["has_content"]]
    if content.empty:
        why = "every patch is rated blank" if method == "model" else "constant intensity"
        raise InputError(
            f"{name}: no plane has content (all {len(scores)} planes are blank: {why}); "
            "there is no best plane to pick; check the file and the channel"
        )
    if method == "model":
        ranked = content.assign(_lvl=content["mean_level"], _pin=-content["p_in_focus"])
        best = int(ranked.sort_values(["_lvl", "_pin"], kind="stable")["z_px"].iloc[0])
    else:
        best = int(content.loc[content[method].idxmax(), "z_px"])
    return best, scores


def check_method(method: str) -> str:
    """Check a best-plane method name: ``"model"`` or a classical sharpness measure.

    Parameters
    ----------
    method : str
        The name to check.

    Returns
    -------
    str
        ``method``, unchanged.

    Raises
    ------
    InputError
        Naming the method and the accepted ones.

    Examples
    --------
    >>> check_method("brenner_gradient")
    'brenner_gradient'
    >>> check_method("sharpest")
    Traceback (most recent call last):
    ...
    cytolens.core.errors.InputError: unknown method 'sharpest'; expected 'model' or one of ...
    """
    from cytolens.focus.classical import SHARPNESS_MEASURES

    if method != "model" and method not in SHARPNESS_MEASURES:
        raise InputError(
            f"unknown method {method!r}; expected 'model' or one of {', '.join(SHARPNESS_MEASURES)}"
        )
    return method
