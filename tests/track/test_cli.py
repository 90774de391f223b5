"""The `cytolens track` command, mounted on a throwaway typer app as the main CLI does."""

from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from cytolens.core.errors import InputError, MissingFileError
from cytolens.io import imwrite, read_ctc_tracks
from cytolens.track.cli import command

app = typer.Typer()
app.command()(command)
runner = CliRunner()


@pytest.fixture
def movie_file(dividing_movie, tmp_path):
    gt, _ = dividing_movie
    rng = np.random.default_rng(0)
    frames = ((gt > 0) * 180 + rng.normal(20, 4, gt.shape)).clip(0, 255).astype(np.uint8)
    return imwrite(tmp_path / "movie.tif", frames, axes="TYX")


def test_raw_movie_writes_all_outputs(movie_file, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(
        app, [str(movie_file), "--out", str(out), "--segmenter", "threshold", "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["divisions"] == 1 and summary["frames"] == 12
    names = {p.name for p in out.iterdir()}
    assert {"RES", "tracks.csv", "lineage.png", "overlay.gif", "tracker.json"} <= names
    table = read_ctc_tracks(out / "RES" / "res_track.txt")
    assert (table["parent"] > 0).sum() >= 2  # two daughters (a closed gap would add one)
    assert len(list((out / "RES").glob("mask*.tif"))) == 12


def test_label_movie_and_options(dividing_movie, tmp_path):
    gt, _ = dividing_movie
    path = imwrite(tmp_path / "labels.tif", gt, axes="TYX")
    out = tmp_path / "out"
    result = runner.invoke(
        app, [str(path), "--out", str(out), "--labels", "--no-divisions", "--max-distance", "20"]
    )
    assert result.exit_code == 0, result.output
    assert "0 divisions" in result.stdout
    config = json.loads((out / "tracker.json").read_text())
    assert config["max_distance"] == 20 and config["divisions"] is False


def test_ctc_folder_input(shared_data, tmp_path):
    seq = shared_data / "tracking" / "ctc" / "Fluo-N2DH-SIM+" / "01"
    pytest.importorskip("tifffile")
    # a 3-frame CTC copy keeps the test fast
    from cytolens.io import imread

    small = tmp_path / "Toy" / "01"
    small.mkdir(parents=True)
    for t in range(3):
        imwrite(small / f"t{t:03d}.tif", imread(seq / f"t{t:03d}.tif").data, axes="YX")
    result = runner.invoke(
        app, [str(small), "--out", str(tmp_path / "res"), "--segmenter", "threshold"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "res" / "01_RES" / "res_track.txt").is_file()


def test_errors_are_input_errors(tmp_path):
    result = runner.invoke(app, [str(tmp_path / "nope.tif"), "--out", str(tmp_path / "o")])
    assert isinstance(result.exception, MissingFileError)
    flat = imwrite(tmp_path / "flat.tif", np.zeros((8, 8), np.uint8), axes="YX")
    result = runner.invoke(app, [str(flat), "--out", str(tmp_path / "o")])
    assert isinstance(result.exception, InputError) and "time axis" in str(result.exception)
    result = runner.invoke(app, [str(flat), "--out", str(tmp_path / "o"), "--gap-closing", "-1"])
    assert result.exit_code == 2 and "--gap-closing" in result.output  # refused by the option
