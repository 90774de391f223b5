"""Exploration: classical features, map/clusters/outliers, scores, the report and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.clitools import cytolens, one_error_line
from tests.conftest import shared

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


def _per_crop_reference(crop: np.ndarray) -> dict[str, float]:
    """The features of one crop straight from scikit-image's per-image functions
    (what the batched :func:`classical_features` must reproduce)."""
    from scipy import ndimage as ndi
    from skimage.feature import graycomatrix, graycoprops, local_binary_pattern
    from skimage.filters import threshold_otsu
    from skimage.measure import regionprops

    from cytolens.explore.features import SHAPE_FEATURES

    p = crop.mean(axis=0)
    mask = np.zeros(p.shape, bool)
    if p.max() > p.min():
        lab, n = ndi.label(ndi.binary_fill_holes(p > threshold_otsu(p)))
        if n:
            yy, xx = np.indices(p.shape)
            d = np.hypot(yy - (p.shape[0] - 1) / 2, xx - (p.shape[1] - 1) / 2)
            mask = lab == 1 + int(np.argmin(ndi.minimum(d, lab, np.arange(1, n + 1))))
    props = regionprops(mask.astype(np.uint8))
    row = {k: float(getattr(props[0], k)) if props else 0.0 for k in SHAPE_FEATURES}
    inside = crop[0][mask] if mask.any() else crop[0].ravel()
    row["p90_intensity"] = float(np.percentile(inside, 90))
    row["background_intensity"] = float(np.median(crop[0][~mask])) if (~mask).any() else 0.0
    plane = crop[0]
    q = np.floor((plane - plane.min()) / max(np.ptp(plane), 1e-12) * 31 + 0.5).astype(np.uint8)
    q = np.where(mask, q, 0).astype(np.uint8)
    glcm = graycomatrix(q, [1, 2], [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=32)
    glcm[0], glcm[:, 0] = 0, 0
    glcm = glcm / np.maximum(glcm.sum(axis=(0, 1), keepdims=True), 1)
    for prop in ("contrast", "correlation", "ASM"):
        row[f"haralick_{prop}"] = float(np.nanmean(graycoprops(glcm, prop)))
    lbp = local_binary_pattern(q, 8, 1, method="uniform")
    hist = np.bincount(
        lbp[mask].astype(int) if mask.any() else lbp.ravel().astype(int), minlength=10
    )
    row |= {f"lbp_{i}": h / max(hist.sum(), 1) for i, h in enumerate(hist)}
    return row


def _edge_case_crops() -> np.ndarray:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 30, (8, 1, 28, 28)).astype(np.float64)
    yy, xx = np.indices((28, 28))
    x[0, 0][(yy - 13.5) ** 2 + (xx - 13.5) ** 2 < 64] += 150  # a disc: equal inertia eigenvalues
    x[1] = 5.0  # constant: empty mask
    x[2, 0] = 0
    x[2, 0, 0:4, 0:5] = 80  # one object, in a corner, touching the edges
    x[3, 0] = 0
    x[3, 0, 14, 4:20] = 90  # a line: zero minor axis
    x[4, 0, 6:22, 6:22] += 120
    x[4, 0, 11:16, 11:16] = 0  # a ring: the hole is filled
    x[5, 0, 3:9, 3:9] += 200  # two objects: the one nearer the centre is kept
    x[5, 0, 12:20, 12:19] += 200
    x[6, 0, 10:18, 10:18] += 100
    x[6, 0, 13, 13] = 0  # a one-pixel hole
    x[7, 0] = rng.normal(100, 30, (28, 28))  # noise: many components
    return x


def test_batched_features_equal_scikit_image_per_crop() -> None:
    x = _edge_case_crops()
    got = classical_features(x)
    for k, crop in enumerate(x):
        want = _per_crop_reference(crop)
        for name, value in want.items():
            # float64 sums in another order: 1e-9 is far above rounding, far below a feature's scale
            assert got.loc[k, name] == pytest.approx(value, abs=1e-9), (k, name)
    assert got.loc[1, "area"] == 0 and got.loc[2, "area"] == 20
    assert got.loc[0, "eccentricity"] == pytest.approx(0.0, abs=1e-9)
    assert got.loc[3, "axis_minor_length"] == 0


def test_batched_features_on_mitocheck_crops() -> None:
    from skimage.io import imread

    root = shared("classification/mitocheck")
    files = sorted((root / "images").rglob("*.png"))[::40][:60]
    x = np.stack([imread(f) for f in files])[:, None]
    got = classical_features(x)
    assert got.shape == (len(x), 35) and np.isfinite(got.to_numpy()).all()
    for k in range(0, len(x), 6):
        for name, value in _per_crop_reference(x[k].astype(np.float64)).items():
            assert got.loc[k, name] == pytest.approx(value, abs=1e-9), (files[k].name, name)
    # chunks and batch size do not change a crop's features
    np.testing.assert_array_equal(classical_features(x[5:9]).to_numpy(), got.iloc[5:9].to_numpy())


def test_classical_features_errors_and_empty() -> None:
    with pytest.raises(InputError, match="NaN or infinite"):
        classical_features(np.full((1, 8, 8), np.nan))
    with pytest.raises(InputError, match=r"got shape \(8, 8\)"):
        classical_features(np.zeros((8, 8)))
    empty = classical_features(np.zeros((0, 1, 16, 16)))
    assert len(empty) == 0 and "area" in empty.columns
