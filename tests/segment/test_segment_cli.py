"""``cytolens segment nuclei`` on small synthetic images, through typer's CliRunner."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cytolens.core.errors import MissingFileError
from cytolens.io import imread, imwrite
from cytolens.segment.cli import app

runner = CliRunner()


def _write_inputs(folder):
    yy, xx = np.mgrid[:96, :128]
    paths = []
    for k, centres in enumerate([[(30, 30), (60, 90)], [(48, 40), (48, 64), (20, 100)]]):
        mask = np.zeros(yy.shape, bool)
        for cy, cx in centres:
            mask |= (yy - cy) ** 2 + (xx - cx) ** 2 < 9**2
        image = (300 + 2000 * mask + np.random.default_rng(k).normal(0, 30, mask.shape)).astype(
            np.uint16
        )
        paths.append(imwrite(folder / f"cells{k}.tif", image, axes="YX", pixel_size_um=0.5))
    return paths


@pytest.mark.parametrize("method", ["model", "classical"])
def test_cli_writes_labels_tables_overlays_and_report(tmp_path, method):
    inputs = _write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["nuclei", str(tmp_path / "in"), "--out", str(out), "--method", method, "--json"],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert [r["nuclei"] for r in summary["images"]] == [2, 3]
    for path, n in zip(inputs, (2, 3), strict=True):
        labels = imread(out / f"{path.stem}_labels.tif").data
        assert labels.shape == (96, 128) and labels.max() == n
        table = pd.read_csv(out / f"{path.stem}_nuclei.csv")
        assert len(table) == n
        # pixel size read from the TIFF: 0.5 um, so a disc of radius 9 px has ~63.6 um2
        assert table["area_um2"].to_numpy() == pytest.approx(np.pi * 9**2 * 0.25, rel=0.2)
        overlay = imread(out / f"{path.stem}_overlay.png")
        assert overlay.axes == "YXC" and overlay.shape == (96, 128, 3)
    combined = pd.read_csv(out / "nuclei.csv")
    assert combined["image"].value_counts().to_dict() == {"cells0.tif": 2, "cells1.tif": 3}
    html = (out / "report.html").read_text()
    assert "Nucleus segmentation" in html and html.count("<img") == 2


def test_cli_missing_input(tmp_path):
    result = runner.invoke(app, ["nuclei", str(tmp_path / "nope.tif"), "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert isinstance(result.exception, MissingFileError)
    assert "nope.tif" in str(result.exception)
