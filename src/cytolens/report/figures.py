"""Figures: display scaling of microscope images and atomic PNG saving."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from cytolens.core.files import atomic_path
from cytolens.core.normalize import sample_percentiles

__all__ = ["image_panel", "overlay_outlines", "save_figure", "to_display"]


def to_display(image: Any, pmin: float = 0.5, pmax: float = 99.8) -> np.ndarray:
    """Scale an image to ``[0, 1]`` for display by percentiles (uint8 RGB is kept as is).

    3D ``(Z, Y, X)`` data is shown as its maximum projection along the first
    axis; ``(Y, X, 3|4)`` colour images are scaled jointly.

    Examples
    --------
    >>> d = to_display(np.arange(16).reshape(4, 4))
    >>> d.dtype, float(d.max())
    (dtype('float32'), 1.0)
    """
    x = np.asarray(image)
    if x.ndim == 3 and x.shape[-1] in (3, 4):
        if x.dtype == np.uint8:
            return x[..., :3].astype(np.float32) / 255
        x = x[..., :3]
    elif x.ndim == 3:
        x = x.max(axis=0)
    x = x.astype(np.float32)
    lo, hi = sample_percentiles(np.moveaxis(x, -1, 0) if x.ndim == 3 else x, pmin, pmax)
    return np.clip((x - lo) / (hi - lo + 1e-12), 0, 1).astype(np.float32)


def overlay_outlines(
    image: Any, labels: Any, *, color: tuple[int, int, int] = (255, 40, 200)
) -> np.ndarray:
    """The image scaled for display as RGB uint8, with the outlines of ``labels`` drawn on it.

    Examples
    --------
    >>> lab = np.zeros((8, 8), np.uint32)
    >>> lab[2:6, 2:6] = 1
    >>> rgb = overlay_outlines(np.ones((8, 8)), lab)
    >>> rgb.shape, rgb[2, 2].tolist()
    ((8, 8, 3), [255, 40, 200])
    """
    from skimage.segmentation import find_boundaries

    shown = to_display(image)
    rgb = np.repeat(shown[..., None], 3, axis=2) if shown.ndim == 2 else shown
    rgb = (np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    rgb[find_boundaries(np.asarray(labels), mode="inner")] = color
    return rgb


def image_panel(images: dict[str, Any], *, cmap: str = "gray", ncols: int | None = None) -> Any:
    """A row of images with titles, e.g. before / after; returns a Matplotlib figure.

    Examples
    --------
    >>> fig = image_panel({"a": np.eye(8), "b": np.ones((8, 8))})
    >>> len(fig.axes)
    2
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = len(images)
    ncols = ncols or n
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.6 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, img) in zip(axes.flat, images.items(), strict=False):
        ax.imshow(to_display(img), cmap=cmap, interpolation="nearest")
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def save_figure(fig: Any, path: str | os.PathLike[str], *, dpi: int = 110) -> Path:
    """Save a Matplotlib figure as PNG atomically, close it, and return the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")
    plt.close(fig)
    return path
