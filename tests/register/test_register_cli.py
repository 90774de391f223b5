"""``cytolens register align|fuse|stitch`` in a subprocess, as a user runs them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tests.clitools import cytolens, one_error_line
from tests.conftest import shared

from cytolens.io import imread, imwrite
from cytolens.register import Transform
from cytolens.register.synthetic import random_transform, textured_scene, warped_pair


def test_align_writes_transform_overlay_and_applied(tmp_path) -> None:
    true = random_transform("rigid", (64, 64), rng=2, max_shift=4, max_angle_deg=4)
    fixed, moving = warped_pair(textured_scene((96, 96), seed=1), (64, 64), true)
    imwrite(tmp_path / "fixed.tif", fixed, axes="YX")
    imwrite(tmp_path / "moving.tif", moving, axes="YX")
    proc = cytolens(
        "register",
        "align",
        tmp_path / "fixed.tif",
        tmp_path / "moving.tif",
        "--transform",
        "rigid",
        "--out",
        tmp_path / "t.json",
        "--apply",
        tmp_path / "moved.ome.tif",
        "--json",
        "--device",
        "cpu",
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["converged"] and summary["ncc_after"] > 0.98
    found = Transform.from_json(tmp_path / "t.json")
    np.testing.assert_allclose(found.matrix, true.matrix, atol=0.05)
    moved = imread(tmp_path / "moved.ome.tif").data
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(moved[inner] - fixed[inner]).max() < 0.05
    assert (tmp_path / "t_overlay.png").stat().st_size > 1000
    assert "<table>" in (tmp_path / "t_report.html").read_text()


def test_align_bad_inputs_one_line(tmp_path) -> None:
    imwrite(tmp_path / "a.tif", np.zeros((16, 16), np.float32), axes="YX")
    imwrite(tmp_path / "b.tif", np.zeros((4, 16, 16), np.float32), axes="ZYX")
    proc = cytolens(
        "register", "align", tmp_path / "a.tif", tmp_path / "b.tif", "--out", tmp_path / "t.json"
    )
    assert proc.returncode != 0
    assert "2D" in one_error_line(proc) and "3D" in one_error_line(proc)
    (tmp_path / "not.json").write_text('{"hello": 1}')
    proc = cytolens(
        "register",
        "fuse",
        tmp_path / "a.tif",
        tmp_path / "a.tif",
        "--transform",
        tmp_path / "not.json",
        "--transform",
        tmp_path / "not.json",
        "--out",
        tmp_path / "f.tif",
    )
    assert proc.returncode != 0
    assert "is not a transform" in one_error_line(proc)
    proc = cytolens(
        "register",
        "align",
        tmp_path / "a.tif",
        tmp_path / "a.tif",
        "--transform",
        "spline",
        "--out",
        tmp_path / "t.json",
    )
    assert "--transform" in one_error_line(proc)


def test_fuse_two_views(tmp_path) -> None:
    scene = textured_scene((40, 40), seed=3)
    shifted = np.roll(scene, 3, axis=1)
    imwrite(tmp_path / "a.tif", scene, axes="YX")
    imwrite(tmp_path / "b.tif", shifted, axes="YX")
    Transform.identity(2).to_json(tmp_path / "ta.json")
    Transform.from_translation((0, 3)).to_json(tmp_path / "tb.json")
    proc = cytolens(
        "register",
        "fuse",
        tmp_path / "a.tif",
        tmp_path / "b.tif",
        "--transform",
        tmp_path / "ta.json",
        "--transform",
        tmp_path / "tb.json",
        "--out",
        tmp_path / "fused.tif",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    fused = imread(tmp_path / "fused.tif").data
    np.testing.assert_allclose(fused[:, :-3], scene[:, :-3], atol=1e-5)


def test_fuse_memory_mb_writes_the_same_result(tmp_path) -> None:
    scene = textured_scene((20, 56, 56), sigma=2.0, seed=5)
    a, b = scene[:16, :48, :48], scene[2:18, 3:51, 1:49]
    imwrite(tmp_path / "a.tif", a, axes="ZYX")
    imwrite(tmp_path / "b.tif", b, axes="ZYX")
    Transform.identity(3).to_json(tmp_path / "ta.json")
    Transform.from_translation((-2.0, -3.0, -0.5)).to_json(tmp_path / "tb.json")
    common = [
        "register",
        "fuse",
        tmp_path / "a.tif",
        tmp_path / "b.tif",
        "--transform",
        tmp_path / "ta.json",
        "--transform",
        tmp_path / "tb.json",
        "--device",
        "cpu",
    ]
    whole = cytolens(*common, "--out", tmp_path / "whole.tif")
    assert whole.returncode == 0, whole.stderr
    # 2 views x 24 bytes per voxel in 0.1 MiB: 32 tiles of 12 px a side
    tiled = cytolens(*common, "--memory-mb", "0.1", "--out", tmp_path / "tiled.tif")
    assert tiled.returncode == 0, tiled.stderr
    expected = imread(tmp_path / "whole.tif").data
    # sampling coordinates relative to each tile's input region: float32 rounding only
    np.testing.assert_allclose(imread(tmp_path / "tiled.tif").data, expected, atol=1e-5)
    assert np.abs(expected[2:-2, 4:-4, 2:-2] - a[2:-2, 4:-4, 2:-2]).max() < 0.05
    bad = cytolens(*common, "--memory-mb", "0", "--out", tmp_path / "bad.tif")
    assert bad.returncode != 0 and "'--memory-mb': must be a positive number" in bad.stderr
    both = cytolens(
        *common, "--memory-mb", "1", "--chunk-shape", "8,8,8", "--out", tmp_path / "both.tif"
    )
    assert "--memory-mb or --chunk-shape" in one_error_line(both)
    assert not (tmp_path / "bad.tif").exists() and not (tmp_path / "both.tif").exists()


@pytest.mark.slow  # a subprocess stitching 2 real tiles; test_real_czi_mosaic covers the API
def test_stitch_real_czi(tmp_path) -> None:
    czi = shared("registration/mosaic_czi/mosaic_test.czi")
    proc = cytolens("register", "stitch", czi, "--out", tmp_path / "st.ome.zarr", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["pairs_accepted"] == 1
    out = imread(tmp_path / "st.ome.zarr")
    assert out.axes == "YX" and out.shape[1] < 1756
    assert out.pixel_size_um["X"] > 1.0
    assert (tmp_path / "st_pairs.csv").exists() and (tmp_path / "st_overlay.png").exists()
