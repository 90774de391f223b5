"""Unsupervised exploration of cells: embeddings, a 2-D map, clusters, outliers, scores.

- :func:`embed_crops`: learned (a phenotype model's encoder) or classical
  (:func:`~cytolens.explore.features.classical_features`) embeddings.
- :func:`explore_embeddings`: standardize, reduce (PCA), map to 2-D (UMAP
  when ``umap-learn`` is installed, else PCA), cluster (HDBSCAN from
  scikit-learn), flag outliers (local outlier factor); one row per cell.
- :func:`knn_accuracy`, :func:`cluster_ami`: how well an embedding and its
  clusters agree with known classes (labels are used only to score).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cytolens.core.errors import InputError

__all__ = [
    "EMBEDDINGS",
    "ExploreResult",
    "cluster_ami",
    "embed_crops",
    "explore_embeddings",
    "knn_accuracy",
    "map_method",
]

logger = logging.getLogger(__name__)

#: Kinds of embeddings :func:`embed_crops` makes.
EMBEDDINGS = ("learned", "classical")


def embed_crops(
    crops: Any, *, kind: str = "learned", model: Any = "mitocheck-v1", device: str = "auto"
) -> np.ndarray:
    """Per-crop embedding ``(N, d)``.

    Parameters
    ----------
    crops : array_like
        ``(N, C, S, S)`` or ``(N, S, S)`` crops.
    kind : {"learned", "classical"}
        ``learned``: the pooled encoder embedding of a phenotype model
        (:meth:`~cytolens.phenotype.PhenotypeClassifier.embed`); ``classical``:
        shape, intensity and texture features.
    model : str or PhenotypeClassifier
        For ``learned``.
    device : str
        Where the network runs.

    Examples
    --------
    >>> x = np.zeros((3, 1, 24, 24), np.uint8); x[:, :, 8:16, 8:16] = 200
    >>> embed_crops(x, kind="classical").shape[0]
    3
    """
    if kind == "classical":
        from cytolens.explore.features import classical_features

        return classical_features(crops).to_numpy(np.float64)
    if kind != "learned":
        raise InputError(f"embedding {kind!r}: expected one of {', '.join(EMBEDDINGS)}")
    from cytolens.phenotype.model import _resolve

    return _resolve(model, device).embed(crops).astype(np.float64)


def _standardize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or len(x) < 3:
        raise InputError(f"embeddings must be (N >= 3, d), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InputError("embeddings hold NaN or inf")
    sd = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def _reduce(z: np.ndarray, n: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    k = min(n, z.shape[1], len(z) - 1)
    return PCA(n_components=k, random_state=0).fit_transform(z)


def map_method(method: str = "auto") -> str:
    """``"umap"`` when asked or available (``auto``), else ``"pca"``.

    Examples
    --------
    >>> map_method("pca")
    'pca'
    """
    if method not in ("auto", "umap", "pca"):
        raise InputError(f"map method {method!r}: expected auto, umap or pca")
    if method == "pca":
        return "pca"
    try:
        import umap  # noqa: F401
    except ImportError:
        if method == "umap":
            raise InputError(
                "map method 'umap' needs umap-learn (pip install umap-learn)"
            ) from None
        return "pca"
    return "umap"


def knn_accuracy(embedding: Any, labels: Any, *, k: int = 5) -> float:
    """Leave-one-out accuracy of a ``k``-nearest-neighbour vote in the standardized embedding.

    Examples
    --------
    >>> x = np.r_[np.zeros((10, 2)), np.ones((10, 2)) * 5] + np.random.default_rng(0).normal(
    ...     size=(20, 2)) * 0.1
    >>> knn_accuracy(x, [0] * 10 + [1] * 10, k=3)
    1.0
    """
    from sklearn.neighbors import NearestNeighbors

    z = _standardize(embedding)
    y = np.asarray(labels)
    nn = NearestNeighbors(n_neighbors=k + 1).fit(z)
    _, idx = nn.kneighbors(z)
    votes = y[idx[:, 1:]]
    pred = np.array(
        [
            np.bincount(v).argmax() if v.dtype.kind in "iu" else pd.Series(v).mode().iloc[0]
            for v in votes
        ]
    )
    return float((pred == y).mean())


def cluster_ami(clusters: Any, labels: Any) -> float:
    """Adjusted mutual information of cluster ids and known classes (noise -1 is one cluster).

    Examples
    --------
    >>> cluster_ami([0, 0, 1, 1], ["a", "a", "b", "b"])
    1.0
    """
    from sklearn.metrics import adjusted_mutual_info_score

    return float(adjusted_mutual_info_score(np.asarray(labels), np.asarray(clusters)))


@dataclass
class ExploreResult:
    """What :func:`explore_embeddings` found.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per cell: ``map_x``, ``map_y``, ``cluster`` (-1: no cluster),
        ``cluster_probability``, ``outlier_score`` (local outlier factor;
        > 1.5 is unusual), ``is_outlier``, ``pc1..pcK``.
    method : str
        The map: ``umap`` or ``pca``.
    n_clusters : int
    """

    table: pd.DataFrame
    method: str
    n_clusters: int


def explore_embeddings(
    embedding: Any,
    *,
    n_components: int = 20,
    method: str = "auto",
    min_cluster_size: int | None = None,
    clustering: str = "hdbscan",
    n_clusters: int = 10,
    outlier_factor: float = 1.5,
    seed: int = 0,
) -> ExploreResult:
    """Map, clusters and outliers of per-cell embeddings (no labels used).

    Parameters
    ----------
    embedding : array_like, shape (N, d)
        Per-cell embedding (:func:`embed_crops`).
    n_components : int
        PCA components kept after standardizing (clustering, outliers and
        UMAP work on them).
    method : {"auto", "umap", "pca"}
        The 2-D map (``auto``: UMAP when ``umap-learn`` is installed).
    min_cluster_size : int, optional
        HDBSCAN's smallest cluster (default: ``max(5, N // 100)``).
    clustering : {"hdbscan", "kmeans"}
        HDBSCAN (finds the number of clusters, leaves noise as -1) or k-means
        with ``n_clusters``.
    n_clusters : int
        For k-means.
    outlier_factor : float
        Local outlier factor above which a cell is an outlier.
    seed : int
        For PCA, UMAP and k-means.

    Returns
    -------
    ExploreResult

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = np.r_[rng.normal(0, 1, (60, 5)), rng.normal(8, 1, (60, 5))]
    >>> res = explore_embeddings(x, method="pca")
    >>> res.n_clusters, res.method, list(res.table.columns[:3])
    (2, 'pca', ['map_x', 'map_y', 'cluster'])
    """
    from sklearn.cluster import HDBSCAN, KMeans
    from sklearn.neighbors import LocalOutlierFactor

    z = _standardize(embedding)
    pcs = _reduce(z, n_components)
    how = map_method(method)
    if how == "umap":
        import umap

        xy = umap.UMAP(n_neighbors=15, min_dist=0.1, random_state=seed).fit_transform(pcs)
    else:
        xy = pcs[:, :2] if pcs.shape[1] >= 2 else np.c_[pcs, np.zeros(len(pcs))]
    n = len(z)
    if clustering == "hdbscan":
        hd = HDBSCAN(min_cluster_size=int(min_cluster_size or max(5, n // 100)), copy=True)
        labels = hd.fit_predict(pcs)
        prob = hd.probabilities_
    elif clustering == "kmeans":
        km = KMeans(n_clusters=min(int(n_clusters), n), n_init=4, random_state=seed)
        labels = km.fit_predict(pcs)
        prob = np.ones(n)
    else:
        raise InputError(f"clustering {clustering!r}: expected hdbscan or kmeans")
    lof = LocalOutlierFactor(n_neighbors=min(20, n - 1)).fit(pcs)
    score = -lof.negative_outlier_factor_
    table = pd.DataFrame(
        {
            "map_x": xy[:, 0],
            "map_y": xy[:, 1],
            "cluster": labels.astype(int),
            "cluster_probability": np.round(prob, 4),
            "outlier_score": np.round(score, 4),
            "is_outlier": score > outlier_factor,
        }
    )
    for i in range(min(pcs.shape[1], 10)):
        table[f"pc{i + 1}"] = pcs[:, i]
    found = len(set(labels.tolist()) - {-1})
    return ExploreResult(table, how, found)
