"""Exploration: classical features, map/clusters/outliers, scores, the report and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.clitools import cytolens, one_error_line

from cytolens.core.errors import InputError
from cytolens.explore import (
    classical_features,
    cluster_ami,
    explore_crops,
    explore_embeddings,
    knn_accuracy,
    write_explore_report,
)
from cytolens.explore.features import object_mask
from cytolens.io import imwrite


def _two_kinds(n: int = 25, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Small bright discs and large dim squares, with noise."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 20, (2 * n, 1, size, size)).astype(np.uint8)
    yy, xx = np.indices((size, size)) - size / 2
    x[:n, 0][:, yy**2 + xx**2 < 20] += 200
    x[n:, 0][:, (abs(yy) < 9) & (abs(xx) < 9)] += 60
    return x, np.repeat([0, 1], n)


def test_classical_features_measure_the_central_object() -> None:
    x = np.zeros((1, 1, 32, 32), np.uint8)
    x[0, 0, 10:20, 8:24] = 100  # 10 x 16 rectangle in the middle
    x[0, 0, 0:3, 0:3] = 100  # another object in the corner: ignored
    f = classical_features(x)
    assert f.loc[0, "area"] == 160
    assert f.loc[0, "mean_intensity"] == 100
    assert f.loc[0, "background_intensity"] == 0
    assert f.loc[0, "solidity"] == pytest.approx(1.0)
    assert f.loc[0, "axis_major_length"] > f.loc[0, "axis_minor_length"]
    assert not object_mask(x[0, 0])[1, 1]
    two = classical_features(np.concatenate([x, x], axis=1))
    assert {"c0_mean_intensity", "c1_haralick_contrast"} <= set(two.columns)


def test_scores_of_embeddings() -> None:
    x, y = _two_kinds()
    f = classical_features(x).to_numpy()
    assert knn_accuracy(f, y, k=5) == 1.0
    shuffled = np.random.default_rng(1).permutation(y)
    assert knn_accuracy(f, shuffled, k=5) < 0.8
    assert cluster_ami([0, 0, 1, 1, -1], [0, 0, 1, 1, 1]) < 1.0
    assert cluster_ami([1, 1, 0, 0], ["a", "a", "b", "b"]) == 1.0


def test_explore_finds_the_two_kinds_and_an_outlier() -> None:
    x, y = _two_kinds()
    x[3] = 255  # a saturated crop: an outlier
    res = explore_crops(x, embedding="classical", method="pca", min_cluster_size=8)
    t = res.table
    assert len(t) == len(x) and res.method == "pca"
    assert {"map_x", "map_y", "cluster", "outlier_score", "is_outlier", "pc1"} <= set(t)
    assert res.n_clusters >= 2
    assert cluster_ami(t["cluster"], y) > 0.7
    assert t["outlier_score"].idxmax() == 3
    with pytest.raises(InputError, match="map method 'tsne'"):
        explore_embeddings(np.zeros((10, 3)), method="tsne")
    with pytest.raises(InputError, match="NaN"):
        explore_embeddings(np.full((10, 3), np.nan))


def test_learned_embedding_of_the_shipped_model() -> None:
    x, y = _two_kinds(size=64)
    res = explore_crops(
        x, embedding="learned", method="pca", clustering="kmeans", n_clusters=2, device="cpu"
    )
    assert cluster_ami(res.table["cluster"], y) > 0.7


def test_report_has_map_and_gallery(tmp_path: Path) -> None:
    x, _ = _two_kinds(10)
    res = explore_crops(x, embedding="classical", method="pca", clustering="kmeans", n_clusters=2)
    html = write_explore_report(tmp_path / "r.html", x, res.table, notes=["hello"]).read_text()
    assert html.count("<img") >= 2 and "hello" in html and "Clusters" in html


def test_cli_explore_crops(tmp_path: Path) -> None:
    x, y = _two_kinds(12, size=64)
    for i, (crop, label) in enumerate(zip(x, y, strict=True)):
        imwrite(tmp_path / "crops" / f"k{label}" / f"{i:02d}.png", crop[0])
    out = tmp_path / "out"
    proc = cytolens(
        "explore",
        tmp_path / "crops",
        "--out",
        out,
        "--embedding",
        "classical",
        "--method",
        "pca",
        "--clustering",
        "kmeans",
        "--n-clusters",
        "2",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["cells"] == 24 and summary["ami_clusters_vs_folders"] > 0.7
    cells = pd.read_csv(out / "cells.csv")
    assert {"file", "map_x", "cluster", "phenotype"} <= set(cells.columns)
    assert (out / "report.html").is_file() and (out / "clusters.csv").is_file()
    proc = cytolens("explore", tmp_path / "crops", "--out", tmp_path / "o2", "--embedding", "x")
    assert proc.returncode == 2 and "--embedding 'x'" in one_error_line(proc)
