"""``cytolens restore deconvolve`` end to end on small files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cytolens.core.errors import InputError, MissingFileError
from cytolens.io import imread, imwrite
from cytolens.restore import gaussian_psf
from cytolens.restore.cli import app

runner = CliRunner()


@pytest.fixture
def files(tmp_path: Path, blur, beads) -> tuple[Path, Path]:
    psf = gaussian_psf((9, 13, 13), (1.5, 2.0, 2.0))
    image = blur(beads((16, 48, 48), 12, margin=6, seed=11), psf)
    img_path = imwrite(
        tmp_path / "cells.ome.tif",
        (image + 100).astype(np.uint16),
        axes="ZYX",
        pixel_size_um={"Z": 0.4, "Y": 0.1, "X": 0.1},
    )
    bead = (100 + 5000 * psf / psf.max()).astype(np.uint16)
    psf_path = imwrite(tmp_path / "bead.tif", bead, axes="ZYX")
    return img_path, psf_path


def test_measured_psf(files: tuple[Path, Path], tmp_path: Path) -> None:
    img, psf = files
    out = tmp_path / "out" / "decon.ome.tif"
    result = runner.invoke(
        app,
        [
            "deconvolve",
            str(img),
            "--psf",
            str(psf),
            "--background",
            "100",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["iterations_run"] == 2 and summary["method"] == "wiener-butterworth"
    written = imread(out)
    assert written.dtype == np.float32 and written.shape == (16, 48, 48)
    assert written.pixel_size_um == pytest.approx({"Z": 0.4, "Y": 0.1, "X": 0.1})
    png = out.parent / "decon_before_after.png"
    assert png.exists() and summary["before_after_png"] == str(png)
    assert imread(img).data.max() - 100 < written.data.max()  # sharper, brighter beads


def test_theoretical_psf_classic_rl_to_zarr(files: tuple[Path, Path], tmp_path: Path) -> None:
    img, _ = files
    out = tmp_path / "decon.ome.zarr"
    result = runner.invoke(
        app,
        [
            "deconvolve", str(img), "--na", "1.0", "--wavelength", "0.5",
            "--method", "richardson-lucy", "--iterations", "5",
            "--acceleration", "biggs-andrews", "--out", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert imread(out).shape == (16, 48, 48)
    assert (tmp_path / "decon_before_after.png").exists()


def test_chunked(files: tuple[Path, Path], tmp_path: Path) -> None:
    img, psf = files
    out = tmp_path / "chunked.tif"
    args = ["deconvolve", str(img), "--psf", str(psf), "--chunk-shape", "16,24,24"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert imread(out).shape == (16, 48, 48)


@pytest.mark.parametrize(
    ("extra", "error", "message"),
    [
        ([], InputError, "give either --psf FILE"),
        (["--psf", "nope.tif"], MissingFileError, "--psf nope.tif: no such file"),
        (
            ["--na", "1.0", "--wavelength", "0.5", "--voxel-size", "0.1,0.1"],
            InputError,
            "must give 3 values",
        ),
        (
            ["--na", "1.0", "--wavelength", "0.5", "--method", "lucy"],
            InputError,
            "unknown method 'lucy'",
        ),
    ],
)
def test_errors(
    files: tuple[Path, Path], tmp_path: Path, extra: list, error: type, message: str
) -> None:
    img, _ = files
    result = runner.invoke(app, ["deconvolve", str(img), "--out", str(tmp_path / "o.tif"), *extra])
    assert isinstance(result.exception, error), result.output
    assert message in str(result.exception)


def test_bad_output_suffix(files: tuple[Path, Path], tmp_path: Path) -> None:
    img, psf = files
    result = runner.invoke(
        app, ["deconvolve", str(img), "--psf", str(psf), "--out", str(tmp_path / "o.png")]
    )
    assert isinstance(result.exception, InputError)
