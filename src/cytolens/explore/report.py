"""Pictures and the HTML report of an exploration: the map with cell thumbnails, example
crops per cluster, cluster sizes and outliers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["cluster_gallery", "thumbnail_map", "write_explore_report"]


def _display(crop: np.ndarray) -> np.ndarray:
    """A crop ``(C, Y, X)`` as a greyscale (1 channel) or RGB (first 3 channels) picture."""
    from cytolens.report.figures import to_display

    c = np.asarray(crop, np.float32)
    if c.shape[0] == 1:
        return to_display(c[0], 1, 99.8)
    rgb = np.zeros((*c.shape[1:], 3), np.float32)
    for i in range(min(3, c.shape[0])):
        rgb[..., i] = to_display(c[i], 1, 99.8)
    return rgb


def _spread(xy: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of up to ``n`` points spread over the map (one per occupied grid cell)."""
    rng = np.random.default_rng(seed)
    side = max(2, int(np.sqrt(n)))
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    cell = np.floor((xy - lo) / np.maximum(hi - lo, 1e-12) * (side - 1e-9)).astype(int)
    keys = cell[:, 0] * side + cell[:, 1]
    chosen = [rng.choice(np.flatnonzero(keys == k)) for k in np.unique(keys)]
    return np.array(chosen[:n], dtype=np.int64)


def thumbnail_map(
    crops: Any, table: pd.DataFrame, *, color: str = "cluster", n_thumbnails: int = 120
) -> Any:
    """The 2-D map: every cell a dot coloured by ``color``, thumbnails of cells spread over it.

    Examples
    --------
    >>> crops = np.random.default_rng(0).random((30, 1, 8, 8))
    >>> t = pd.DataFrame({"map_x": np.arange(30.0), "map_y": np.arange(30.0) % 7,
    ...                   "cluster": np.arange(30) % 3})
    >>> len(thumbnail_map(crops, t, n_thumbnails=9).axes)
    1
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    a = np.asarray(crops)
    if a.ndim == 3:
        a = a[:, None]
    xy = table[["map_x", "map_y"]].to_numpy(np.float64)
    fig, ax = plt.subplots(figsize=(11, 9))
    values = table[color].astype(str) if color in table else pd.Series(["cell"] * len(table))
    cats = sorted(values.unique())
    cmap = plt.get_cmap("tab20", max(len(cats), 1))
    for i, c in enumerate(cats):
        sel = (values == c).to_numpy()
        ax.scatter(xy[sel, 0], xy[sel, 1], s=6, color=cmap(i), label=c, alpha=0.7)
    zoom = 0.9 * 32 / max(a.shape[-1], 1)
    for i in _spread(xy, n_thumbnails):
        img = OffsetImage(_display(a[i]), zoom=zoom, cmap="gray")
        ax.add_artist(AnnotationBbox(img, xy[i], frameon=True, pad=0.05))
    if len(cats) <= 30:
        ax.legend(
            title=color, fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5)
        )
    ax.set_xlabel("map 1")
    ax.set_ylabel("map 2")
    fig.tight_layout()
    return fig


def cluster_gallery(
    crops: Any, table: pd.DataFrame, *, per_cluster: int = 10, max_clusters: int = 30
) -> Any:
    """Example crops of each cluster (most confident members first), one row per cluster.

    Examples
    --------
    >>> crops = np.random.default_rng(0).random((12, 1, 8, 8))
    >>> t = pd.DataFrame({"cluster": np.arange(12) % 2, "cluster_probability": np.ones(12)})
    >>> cluster_gallery(crops, t, per_cluster=3).axes[0].get_ylabel()
    '0 (6)'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = np.asarray(crops)
    if a.ndim == 3:
        a = a[:, None]
    clusters = sorted(table["cluster"].unique().tolist(), key=lambda c: (c == -1, c))
    clusters = clusters[:max_clusters]
    fig, axes = plt.subplots(
        len(clusters),
        per_cluster,
        figsize=(per_cluster * 0.9, len(clusters) * 0.95),
        squeeze=False,
    )
    prob = table["cluster_probability"] if "cluster_probability" in table else None
    for r, c in enumerate(clusters):
        members = np.flatnonzero((table["cluster"] == c).to_numpy())
        if prob is not None:
            members = members[np.argsort(-prob.to_numpy()[members], kind="stable")]
        for j in range(per_cluster):
            ax = axes[r, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if j < len(members):
                ax.imshow(_display(a[members[j]]), cmap="gray")
        name = "noise" if c == -1 else str(c)
        axes[r, 0].set_ylabel(
            f"{name} ({len(np.flatnonzero(table['cluster'] == c))})",
            rotation=0,
            ha="right",
            va="center",
            fontsize=8,
        )
    fig.tight_layout(pad=0.2)
    return fig


def write_explore_report(
    path: str | os.PathLike[str],
    crops: Any,
    table: pd.DataFrame,
    *,
    title: str = "cytolens explore",
    notes: list[str] | None = None,
    scores: dict[str, Any] | None = None,
    color: str = "cluster",
) -> Path:
    """Write ``report.html`` (standalone): the thumbnail map, cluster galleries, tables.

    Examples
    --------
    >>> import tempfile
    >>> crops = np.random.default_rng(0).random((20, 1, 8, 8))
    >>> t = pd.DataFrame({"map_x": np.arange(20.0), "map_y": np.arange(20.0) % 5,
    ...                   "cluster": np.arange(20) % 2, "cluster_probability": np.ones(20),
    ...                   "is_outlier": np.arange(20) == 3, "outlier_score": np.ones(20)})
    >>> p = write_explore_report(Path(tempfile.mkdtemp()) / "report.html", crops, t)
    >>> "<img" in p.read_text()
    True
    """
    from cytolens.report import Report

    rep = Report(title)
    for line in notes or []:
        rep.text(line)
    if scores:
        rep.heading("Agreement with known classes")
        rep.table([scores])
    rep.heading("Map")
    rep.figure(thumbnail_map(crops, table, color=color), f"cells coloured by {color}")
    if "phenotype" in table and color != "phenotype":
        rep.figure(
            thumbnail_map(crops, table, color="phenotype", n_thumbnails=0),
            "cells coloured by predicted phenotype",
        )
    rep.heading("Clusters")
    sizes = table.groupby("cluster").size().rename("cells").reset_index()
    rep.table(sizes)
    rep.figure(cluster_gallery(crops, table), "example crops per cluster (noise: -1)")
    if "is_outlier" in table and table["is_outlier"].any():
        rep.heading("Outliers")
        out = table[table["is_outlier"]].sort_values("outlier_score", ascending=False)
        rep.text(f"{len(out)} cells with a local outlier factor above the threshold.")
        rep.figure(
            cluster_gallery(crops, out.assign(cluster=0).head(20), per_cluster=20),
            "the most unusual cells",
        )
    return rep.save(path)
