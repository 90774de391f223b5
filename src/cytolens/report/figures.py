"""Figures: display scaling of microscope images and atomic PNG saving."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from cytolens.core.files import atomic_path
from cytolens.core.normalize import sample_percentiles

__all__ = ["draw_boxes", "image_panel", "overlay_outlines", "save_figure", "to_display"]


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


#: Box colours per class, in order of first appearance (colour-blind friendly, Okabe-Ito).
BOX_COLORS = [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
              (213, 94, 0), (204, 121, 167)]  # fmt: skip


def draw_boxes(image: Any, boxes: Any, *, label: bool = True) -> np.ndarray:
    """The image as RGB uint8 with labelled boxes (class and score) drawn on it.

    Parameters
    ----------
    image : array_like or Image
        ``(Y, X)``, ``(Y, X, 3|4)`` or an ``Image`` with axes ``CYX`` (shown
        as the mean of its channels unless it has 3).
    boxes : pandas.DataFrame
        Columns ``class, xmin_px, ymin_px, xmax_px, ymax_px`` and optionally ``score``.
    label : bool
        Write ``class score`` above each box.

    Examples
    --------
    >>> import pandas as pd
    >>> b = pd.DataFrame({"class": ["a"], "xmin_px": [2], "ymin_px": [2], "xmax_px": [8],
    ...                   "ymax_px": [8]})
    >>> rgb = draw_boxes(np.zeros((10, 10)), b, label=False)
    >>> rgb.shape, rgb[2, 5].tolist()
    ((10, 10, 3), [230, 159, 0])
    """
    from PIL import Image as PILImage
    from PIL import ImageDraw

    from cytolens.core.image import Image

    data = image.data if isinstance(image, Image) else image
    x = np.asarray(data)
    if isinstance(image, Image) and image.axes == "CYX":
        x = np.moveaxis(x, 0, -1) if x.shape[0] == 3 else x.mean(axis=0)
    shown = to_display(x)
    rgb = (np.repeat(shown[..., None], 3, axis=2) if shown.ndim == 2 else shown) * 255
    canvas = PILImage.fromarray(rgb.astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    classes = list(dict.fromkeys(boxes["class"])) if len(boxes) else []
    width = max(1, round(max(canvas.size) / 400))
    for _, row in boxes.iterrows():
        color = BOX_COLORS[classes.index(row["class"]) % len(BOX_COLORS)]
        x0, y0 = float(row["xmin_px"]), float(row["ymin_px"])
        # the last pixel inside the box; a box under 1 px is drawn as one pixel
        x1, y1 = max(x0, float(row["xmax_px"]) - 1), max(y0, float(row["ymax_px"]) - 1)
        draw.rectangle([x0, y0, x1, y1], outline=color, width=width)
        if label:
            text = str(row["class"]) + (f" {row['score']:.2f}" if "score" in row else "")
            draw.text((x0 + 2, max(0.0, y0 - 11)), text, fill=color)
    return np.asarray(canvas)


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
