"""Unsupervised exploration of cells: embeddings, a 2-D map, clusters, outliers, a report.

- :func:`explore_crops`: one call from crops to the per-cell table (map
  coordinates, cluster ids, outlier scores, principal components).
- :func:`embed_crops` (learned or classical embeddings),
  :func:`classical_features` (shape, intensity, Haralick/LBP texture),
  :func:`explore_embeddings` (PCA / UMAP map, HDBSCAN or k-means, local outlier factor).
- :func:`knn_accuracy`, :func:`cluster_ami`: agreement with known classes.
- :func:`write_explore_report`: HTML with the thumbnail map and example crops per cluster.

UMAP is used when ``umap-learn`` is installed, PCA otherwise.
"""

from __future__ import annotations

from typing import Any

from cytolens.explore.embed import (
    EMBEDDINGS,
    ExploreResult,
    cluster_ami,
    embed_crops,
    explore_embeddings,
    knn_accuracy,
    map_method,
)
from cytolens.explore.features import classical_features
from cytolens.explore.report import cluster_gallery, thumbnail_map, write_explore_report

__all__ = [
    "EMBEDDINGS",
    "ExploreResult",
    "classical_features",
    "cluster_ami",
    "cluster_gallery",
    "embed_crops",
    "explore_crops",
    "explore_embeddings",
    "knn_accuracy",
    "map_method",
    "thumbnail_map",
    "write_explore_report",
]


def explore_crops(
    crops: Any,
    *,
    embedding: str = "learned",
    model: Any = "mitocheck-v1",
    device: str = "auto",
    **kwargs: Any,
) -> ExploreResult:
    """Embed crops and explore them: map, clusters, outliers (no labels used).

    Parameters
    ----------
    crops : array_like
        ``(N, C, S, S)`` or ``(N, S, S)`` crops.
    embedding : {"learned", "classical"}
        See :func:`embed_crops`.
    model : str or PhenotypeClassifier
        The encoder of a phenotype model, for ``learned``.
    device : str
        Where the network runs.
    **kwargs
        Passed to :func:`explore_embeddings` (``method``, ``clustering``...).

    Returns
    -------
    ExploreResult
        ``table``: one row per crop.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.zeros((40, 1, 24, 24), np.uint8)
    >>> x[:20, :, 8:16, 8:16] = 200; x[20:, :, 4:20, 6:18] = 90
    >>> res = explore_crops(x, embedding="classical", method="pca", clustering="kmeans",
    ...                     n_clusters=2)
    >>> sorted(res.table.groupby("cluster").size().tolist())
    [20, 20]
    """
    return explore_embeddings(
        embed_crops(crops, kind=embedding, model=model, device=device), **kwargs
    )
