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
