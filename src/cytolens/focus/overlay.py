"""The QC picture of a focus rating: the image with a coloured border around each patch.

As in the original tool, the border's hue is the patch's most likely defocus
level and its strength is the certainty: a confident patch has a vivid
border, a blank (flat-distribution) patch an almost invisible one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from cytolens.core.errors import InputError
from cytolens.focus.rate import FocusResult, _as_2d

__all__ = ["LEVEL_CMAP", "level_rgba", "overlay_rgb", "save_overlay", "save_plane_scores"]

#: Colormap of the levels: green (in focus) through yellow to red (blurred).
LEVEL_CMAP = "RdYlGn_r"


def _level_colors(n_levels: int) -> np.ndarray:
    import matplotlib

    cmap = matplotlib.colormaps[LEVEL_CMAP]
    return np.array([cmap(k / max(1, n_levels - 1))[:3] for k in range(n_levels)], np.float32)


def level_rgba(levels: Any, n_levels: int, certainty: Any = None) -> np.ndarray:
    """RGBA colours of patch levels as the overlays draw them (:data:`LEVEL_CMAP`).

    Parameters
    ----------
    levels : array_like of int
        Most likely level per patch, ``0 .. n_levels - 1``.
    n_levels : int
        Number of levels of the model.
    certainty : array_like of float, optional
        Per patch in ``[0, 1]``; opacity is ``0.15 + 0.85 * certainty``
        (uncertain patches fade out). Opaque when omitted.

    Returns
    -------
    numpy.ndarray
        ``(n, 4)`` float32 in ``[0, 1]``.

    Examples
    --------
    >>> rgba = level_rgba([0, 10], 11, certainty=[1.0, 0.0])
    >>> bool(rgba[0, 1] > rgba[0, 0]), bool(rgba[1, 0] > rgba[1, 1])  # green, red
    (True, True)
    >>> [round(float(a), 2) for a in rgba[:, 3]]
    [1.0, 0.15]
    """
    idx = np.asarray(levels, np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n_levels):
        raise InputError(f"levels must lie in 0..{n_levels - 1}, got {idx.min()}..{idx.max()}")
    rgb = _level_colors(n_levels)[idx]
    alpha = np.ones(len(idx), np.float32)
    if certainty is not None:
        alpha = (0.15 + 0.85 * np.clip(np.asarray(certainty, np.float32), 0, 1)).astype(np.float32)
    return np.concatenate([rgb, alpha[:, None]], axis=1)


def overlay_rgb(
    image: Any,
    result: FocusResult,
    *,
    border: int | None = None,
    max_side: int | None = None,
) -> np.ndarray:
    """The image in grey with each rated patch framed in its level's colour.

    Parameters
    ----------
    image : array_like or dask.array.Array
        The 2D image that was rated.
    result : FocusResult
        Its rating.
    border : int, optional
        Frame width in pixels of the drawn picture; default
        ``max(2, patch_size // 20)`` (at least 1 after shrinking).
    max_side : int, optional
        Shrink the picture by a whole factor (every ``f``-th pixel) so that its
        longer side is at most this many pixels; only the kept pixels are
        read, so the memory stays bounded for huge (Dask) images.

    Returns
    -------
    numpy.ndarray of uint8
        ``(H, W, 3)`` RGB (``H, W`` divided by the shrink factor, rounded up).
        Frame colour = most likely level (green 0 ... red 10); frame opacity =
        ``0.15 + 0.85 * certainty``.

    Examples
    --------
    >>> from cytolens import data
    >>> from cytolens.focus import rate_focus
    >>> img = data.nuclei().data
    >>> rgb = overlay_rgb(img, rate_focus(img, device="cpu"))
    >>> rgb.shape, rgb.dtype
    ((520, 696, 3), dtype('uint8'))
    """
    from cytolens.report import to_display

    arr = _as_2d(image)
    if tuple(arr.shape) != tuple(result.image_shape):
        raise InputError(
            f"image of shape {arr.shape} is not the rated image (shape {result.image_shape})"
        )
    if max_side is not None and int(max_side) < 1:
        raise InputError(f"max_side must be >= 1 pixel, got {max_side!r}")
    f = 1 if max_side is None else max(1, -(-max(arr.shape) // int(max_side)))
    ps = result.patch_size
    b = max(2, ps // 20) if border is None else int(border)
    if not 0 < b <= ps // 2:
        raise InputError(f"border must be between 1 and {ps // 2} pixels, got {border!r}")
    b = max(1, b // f) if border is None else b
    grey = to_display(np.asarray(arr[::f, ::f]))
    rgb = np.repeat(grey[..., None], 3, axis=2)
    t = result.patches
    colors = level_rgba(t["level"], len(result.probabilities), t["certainty"])
    for y0, x0, (*color, alpha) in zip(t["y0_px"], t["x0_px"], colors, strict=True):
        # the patch's pixels kept by the stride: rows y0 .. y0 + ps - 1 at y // f
        ya, yb = -(-int(y0) // f), -(-(int(y0) + ps) // f)
        xa, xb = -(-int(x0) // f), -(-(int(x0) + ps) // f)
        view = rgb[ya:yb, xa:xb]
        frame = np.zeros(view.shape[:2], bool)
        frame[:b], frame[-b:], frame[:, :b], frame[:, -b:] = True, True, True, True
        view[frame] = alpha * np.asarray(color) + (1 - alpha) * view[frame]
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def save_overlay(
    path: str | os.PathLike[str],
    image: Any,
    result: FocusResult,
    *,
    title: str | None = None,
    dpi: int = 100,
    max_side: int = 2048,
) -> Path:
    """Write the overlay with a legend and the image's verdict as a PNG (atomically).

    Parameters
    ----------
    path : path
        Output PNG.
    image : array_like or dask.array.Array
        The rated 2D image.
    result : FocusResult
        Its rating.
    title : str, optional
        Title above the picture (default: the verdict and mean level).
    dpi : int
        Resolution of the saved figure.
    max_side : int
        Larger images are drawn shrunk to this side (see :func:`overlay_rgb`),
        which bounds the memory for huge images.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import tempfile
    >>> from cytolens import data
    >>> from cytolens.focus import rate_focus
    >>> img = data.nuclei().data
    >>> out = save_overlay(Path(tempfile.mkdtemp()) / "o.png", img, rate_focus(img, device="cpu"))
    >>> out.read_bytes()[:4]
    b'\\x89PNG'
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm, ListedColormap

    from cytolens.report import save_figure

    rgb = overlay_rgb(image, result, max_side=max_side)
    n = len(result.probabilities)
    h, w = rgb.shape[:2]
    scale = 7.0 / max(h, w)
    fig, ax = plt.subplots(figsize=(max(3.0, w * scale) + 1.4, max(3.0, h * scale) + 0.6))
    ax.imshow(rgb, interpolation="nearest")
    ax.axis("off")
    if title is None:
        title = (
            f"{result.verdict}: mean level {result.mean_level:.1f}, "
            f"P(in focus) {result.p_in_focus:.2f}, blank {result.blank_fraction:.0%}"
        )
    ax.set_title(title, fontsize=10)
    cmap = ListedColormap(_level_colors(n))
    norm = BoundaryNorm(np.arange(-0.5, n + 0.5), n)
    bar = fig.colorbar(
        plt.cm.ScalarMappable(norm=norm, cmap=cmap),
        ax=ax,
        fraction=0.04,
        pad=0.02,
        ticks=range(n),
    )
    bar.set_label(
        f"defocus level (0-{result.in_focus_levels - 1} in focus); frame strength = certainty",
        fontsize=8,
    )
    bar.ax.tick_params(labelsize=8)
    return save_figure(fig, path, dpi=dpi)


def save_plane_scores(
    path: str | os.PathLike[str],
    scores: Any,
    best: int,
    *,
    in_focus_levels: int | None = None,
    title: str | None = None,
    dpi: int = 100,
) -> Path:
    """Plot the per-plane focus curve of :func:`~cytolens.focus.best_plane` as a PNG.

    For the model: the certainty-weighted mean level per plane (lower is
    sharper) and P(in focus) on a second axis; for a
    classical measure: its value. The best plane is marked.

    Parameters
    ----------
    path : path
        Output PNG, written atomically.
    scores : pandas.DataFrame
        The per-plane table returned by ``best_plane``.
    best : int
        The best plane's index.
    in_focus_levels : int, optional
        Shade the mean levels ``0 .. in_focus_levels - 1`` as in focus
        (:attr:`FocusModel.in_focus_levels <cytolens.focus.FocusModel>`).
    title : str, optional
        Figure title (default: the best plane).
    dpi : int
        Resolution of the saved figure.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import tempfile, pandas as pd
    >>> scores = pd.DataFrame({"z_px": [0, 1, 2], "mean_level": [4.0, 1.0, 3.5],
    ...                        "p_in_focus": [0.1, 0.9, 0.2]})
    >>> out = save_plane_scores(Path(tempfile.mkdtemp()) / "z.png", scores, 1)
    >>> out.read_bytes()[:4]
    b'\\x89PNG'
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from cytolens.report import save_figure

    if "z_px" not in scores or len(scores.columns) < 2:
        raise InputError("scores must be the table of best_plane: a 'z_px' column and a score")
    z = scores["z_px"].to_numpy()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    if "mean_level" in scores:
        ax.plot(z, scores["mean_level"], "o-", color="tab:blue")
        ax.set_ylabel("mean defocus level (lower = sharper)", color="tab:blue")
        if in_focus_levels:
            ax.axhspan(0, in_focus_levels - 0.5, color="tab:green", alpha=0.1, lw=0)
            ax.text(
                0.01,
                0.05,
                f"in-focus levels 0-{in_focus_levels - 1}",
                transform=ax.get_yaxis_transform(),
                color="tab:green",
                fontsize=8,
                va="bottom",
            )
        twin = ax.twinx()
        twin.plot(z, scores["p_in_focus"], "s--", color="tab:orange", ms=4)
        twin.set_ylim(-0.02, 1.02)
        twin.set_ylabel("P(in focus)", color="tab:orange")
    else:
        measure = next(c for c in scores.columns if c != "z_px")
        ax.plot(z, scores[measure], "o-", color="tab:blue")
        ax.set_ylabel(f"{measure} (higher = sharper)")
    ax.axvline(best, color="k", ls=":", lw=1)
    ax.set_xlabel("plane (z index)")
    ax.set_title(title or f"best plane: z = {best}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=dpi)
