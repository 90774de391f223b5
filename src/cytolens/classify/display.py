"""Pictures of HPA samples: the 4-channel composite and a 2 x 2 channel panel, as PNG."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cytolens.classify.cells import as_cyx_float

__all__ = ["channel_panel", "composite_png"]

_PANEL = (
    ("microtubules (red)", 0),
    ("protein (green)", 1),
    ("nucleus (blue)", 2),
    ("ER (yellow)", 3),
)


def composite_png(image: Any, path: str | os.PathLike[str]) -> Path:
    """Save the usual RGB view of an HPA sample (half of yellow added to red and to green).

    Parameters
    ----------
    image : Image or array_like
        ``(4, Y, X)`` red, green, blue, yellow (see :func:`cytolens.io.hpa_composite`).
    path : path-like
        PNG file to write.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> p = composite_png(np.zeros((4, 8, 8), np.uint8), Path(tempfile.mkdtemp()) / "c.png")
    >>> p.exists()
    True
    """
    from cytolens.io import hpa_composite, imwrite

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return imwrite(path, hpa_composite(image), axes="YXC")


def channel_panel(
    image: Any, path: str | os.PathLike[str] | None = None, *, title: str = ""
) -> Any:
    """A 2 x 2 panel of the four channels, each in its colour; saved as PNG if ``path`` is given.

    Returns
    -------
    matplotlib.figure.Figure or pathlib.Path
        The figure, or the written path (the figure is then closed).

    Examples
    --------
    >>> import numpy as np
    >>> fig = channel_panel(np.zeros((4, 8, 8), np.uint8))
    >>> len(fig.axes)
    4
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import LinearSegmentedColormap

    from cytolens.report import save_figure

    x = as_cyx_float(image)
    colours = ("red", "lime", "blue", "gold")
    fig, axes = plt.subplots(2, 2, figsize=(7.2, 7.4))
    for ax, (name, c), colour in zip(axes.flat, _PANEL, colours, strict=True):
        cmap = LinearSegmentedColormap.from_list(colour, ["black", colour])
        ax.imshow(x[c], cmap=cmap, vmin=0, vmax=max(float(x[c].max()), 1e-6))
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path) if path is not None else fig
