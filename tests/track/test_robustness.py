"""``cytolens track`` and the CTC reader on bad inputs: nothing lost, nothing silently wrong.

Each command-line case runs in a subprocess and checks the exit code, the
one-line message naming the file or option, that the inputs are
byte-identical afterwards and that no partial or temporary file remains. The
movies are real: a few frames of the bundled Fluo-N2DH-SIM+ excerpt and of
the Cell Tracking Challenge sequences in ../shared/data.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from tests.clitools import cytolens, digest, one_error_line
from tests.conftest import shared

from cytolens.core.errors import InputError, MissingFileError
from cytolens.io import imread, imwrite, read_ctc, read_ctc_tracks
from cytolens.track import track, track_movie
from cytolens.track.detections import check_looks_like_labels

SAMPLES = Path(__file__).resolve().parents[2] / "src/cytolens/data/samples"
SIM = "tracking/ctc/Fluo-N2DH-SIM+"


def nothing_written(out: Path) -> None:
    """At most an empty output folder, and no temporary anywhere under it."""
    assert not out.exists() or not any(out.rglob("*")), sorted(out.rglob("*"))


@pytest.fixture
def movies(tmp_path: Path) -> Path:
    """4 frames (128 x 128) of the bundled SIM+ excerpt: raw ``raw.tif`` and ``labels.tif``."""
    folder = tmp_path / "in"
    folder.mkdir()
    raw = imread(SAMPLES / "tracking_sim.tif").data[:4, :128, :128]
    gt = imread(SAMPLES / "tracking_sim_tra.tif").data[:4, :128, :128]
    imwrite(folder / "raw.tif", raw, axes="TYX")
    imwrite(folder / "labels.tif", gt, axes="TYX")
    imwrite(folder / "stack.tif", raw, axes="ZYX")
    return folder


def test_raw_movie_given_as_labels_is_refused(movies: Path, tmp_path: Path) -> None:
    before = digest(movies)
    out = tmp_path / "out"
    proc = cytolens("track", movies / "raw.tif", "--out", out, "--labels")
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "raw.tif does not look like a label movie" in line and "without --labels" in line
    nothing_written(out)
    assert digest(movies) == before
    proc = cytolens("track", movies / "labels.tif", "--out", out, "--labels", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["tracks"] > 0


def test_z_stack_is_not_tracked_as_time(movies: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = cytolens("track", movies / "stack.tif", "--out", out)
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "stack.tif has axes 'ZYX'" in line and "--axes TYX" in line
    nothing_written(out)
    proc = cytolens("track", movies / "stack.tif", "--out", out, "--axes", "TYX")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("option", "value"),
    [("--fps", "0"), ("--fps", "-2"), ("--max-distance", "0"), ("--gap-closing", "-1")],
)
def test_bad_numbers_are_refused_before_any_output(
    movies: Path, tmp_path: Path, option: str, value: str
) -> None:
    out = tmp_path / "out"
    proc = cytolens("track", movies / "raw.tif", "--out", out, option, value)
    assert proc.returncode == 2
    assert f"Invalid value for '{option}'" in one_error_line(proc)
    assert not out.exists()


def test_output_folder_rules(movies: Path, tmp_path: Path) -> None:
    before = digest(movies)
    proc = cytolens("track", movies / "raw.tif", "--out", movies)
    assert proc.returncode == 2 and "holds the input" in one_error_line(proc)
    out = tmp_path / "out"
    assert cytolens("track", movies / "raw.tif", "--out", out).returncode == 0
    first = digest(out)
    proc = cytolens("track", movies / "raw.tif", "--out", out)
    assert proc.returncode == 2 and "--overwrite" in one_error_line(proc)
    assert digest(out) == first
    proc = cytolens("track", movies / "raw.tif", "--out", out, "--overwrite", "--json")
    assert proc.returncode == 0, proc.stderr
    assert digest(movies) == before


def test_a_failed_write_leaves_no_partial_results(movies: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "overlay.gif").mkdir(parents=True)  # the last output cannot be written
    proc = cytolens("track", movies / "raw.tif", "--out", out, "--overwrite")
    assert proc.returncode == 2 and "overlay.gif" in one_error_line(proc)
    assert sorted(p.name for p in out.iterdir()) == ["overlay.gif"]  # RES, tracks.csv... removed
    assert not list(out.rglob(".*tmp*"))


def test_segmentation_without_objects_is_not_a_success(movies: Path, tmp_path: Path) -> None:
    flat = movies / "flat.tif"
    imwrite(flat, np.full((3, 64, 64), 100, np.uint16), axes="TYX")
    out = tmp_path / "out"
    proc = cytolens("track", flat, "--out", out, "--segmenter", "threshold")
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "segmenter 'threshold'" in line and "flat.tif" in line
    assert "--segmenter nuclei" in line
    nothing_written(out)
    zeros = movies / "zeros.tif"
    imwrite(zeros, np.zeros((3, 64, 64), np.uint16), axes="TYX")
    proc = cytolens("track", zeros, "--out", out, "--labels")
    assert proc.returncode == 2 and "zeros.tif holds no objects" in one_error_line(proc)


def _ctc_copy(root: Path, frames: list[int]) -> Path:
    source = shared(f"{SIM}/01")
    seq = root / "Fluo-N2DH-SIM+" / "01"
    seq.mkdir(parents=True)
    for t in frames:
        shutil.copy(source / f"t{t:03d}.tif", seq / f"t{t:03d}.tif")
    return seq


def test_ctc_gap_is_refused(tmp_path: Path) -> None:
    seq = _ctc_copy(tmp_path / "data", [0, 1, 3])
    before = digest(seq)
    out = tmp_path / "out"
    proc = cytolens("track", seq, "--out", out)
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "t002.tif missing between t000.tif and t003.tif" in line
    nothing_written(out)
    assert digest(seq) == before
    with pytest.raises(MissingFileError, match=r"t002\.tif"):
        read_ctc(seq)


def test_ctc_results_keep_the_input_frame_numbers(tmp_path: Path) -> None:
    seq = _ctc_copy(tmp_path / "data", [3, 4, 5])
    out = tmp_path / "out"
    proc = cytolens("track", seq.parent, "--out", out, "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["first_frame"] == 3 and summary["frames"] == 3
    res = out / "01_RES"
    assert sorted(p.name for p in res.glob("mask*.tif")) == [
        "mask003.tif",
        "mask004.tif",
        "mask005.tif",
    ]
    table = read_ctc_tracks(res / "res_track.txt")
    assert table["begin"].min() == 3 and table["end"].max() == 5
    assert sorted(pd.read_csv(out / "tracks.csv")["frame"].unique()) == [3, 4, 5]


def test_ctc_missing_marker_file_is_refused(tmp_path: Path) -> None:
    seq = _ctc_copy(tmp_path / "data", [0, 1, 2])
    tra = seq.parent / "01_GT" / "TRA"
    tra.mkdir(parents=True)
    source = shared(f"{SIM}/01_GT/TRA")
    for t in (0, 2):
        shutil.copy(source / f"man_track{t:03d}.tif", tra / f"man_track{t:03d}.tif")
    with pytest.raises(MissingFileError, match=r"man_track001\.tif missing"):
        read_ctc(seq)


def test_label_check_on_real_ground_truth_and_raw_frames() -> None:
    for dataset in ("Fluo-N2DH-SIM+", "Fluo-N2DH-GOWT1"):
        folder = shared(f"tracking/ctc/{dataset}")
        markers = tifffile.imread(folder / "01_GT/TRA/man_track010.tif")
        check_looks_like_labels(markers[None], "markers")  # passes
        seg = sorted((folder / "01_GT/SEG").glob("man_seg*.tif"))[0]
        check_looks_like_labels(tifffile.imread(seg)[None], "seg")  # passes
        raw = tifffile.imread(folder / "01/t010.tif")
        with pytest.raises(InputError, match="t010 does not look like a label movie"):
            check_looks_like_labels(raw[None].astype(np.uint16), "t010")
    binary = np.zeros((2, 32, 32), np.uint8)
    binary[:, 4:10, 4:10] = binary[:, 20:28, 20:28] = 1
    with pytest.raises(InputError, match="binary mask"):
        track(binary)


def test_api_refuses_an_empty_segmentation() -> None:
    with pytest.raises(InputError, match=r"segmenter 'threshold'.*no objects in any of the 3"):
        track_movie(np.full((3, 32, 32), 7.0, np.float32), segmenter="threshold")


def test_auto_segmenter_message_suggests_the_baseline() -> None:
    from cytolens.track.segmentation import check_found_objects

    with pytest.raises(InputError, match=r"'auto' \(the nucleus model.*Try --segmenter threshold,"):
        check_found_objects(np.zeros((2, 8, 8)), "auto", "cells.tif", option="--segmenter ")
