"""Bad inputs to ``cytolens focus rate|best-plane``: nothing lost, nothing silently wrong.

Every test runs the command line in a subprocess, as a user would, and checks
the exit code, the one-line message naming the file or option, that the
inputs are byte-identical afterwards and that no temporary file remains.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from tests.clitools import cytolens, digest, no_temporaries, one_error_line, strict_loads
from tests.conftest import shared

DFNN_STACK = "focus/dfnn_lightsheet_defocus/mitochondria/stack"
BBBC = "focus/bbbc006_subset"


@pytest.mark.parametrize("option", ["--out", "--plot"])
def test_best_plane_never_replaces_a_folder_with_its_output(tmp_path: Path, option: str) -> None:
    stack = shared(DFNN_STACK)
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "notes.txt").write_text("precious\n")
    before = digest([stack, victim])
    proc = cytolens("focus", "best-plane", stack, option, victim, "--device", "cpu")
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert f"{option} {victim}" in line and "existing folder" in line
    assert digest([stack, victim]) == before
    assert (victim / "sub").is_dir()
    no_temporaries(tmp_path)


def test_best_plane_of_an_all_zero_stack_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.tif"
    tifffile.imwrite(path, np.zeros((4, 96, 96), np.uint16))
    before = digest([path])
    out = tmp_path / "planes.csv"
    proc = cytolens(
        "focus", "best-plane", path, "--axes", "ZYX", "--out", out, "--device", "cpu"
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert f"{path}: no plane has content" in line
    assert not out.exists()
    assert digest([path]) == before
    no_temporaries(tmp_path)


def test_best_plane_api_refuses_a_constant_stack_for_classical_measures() -> None:
    from cytolens.core.errors import InputError
    from cytolens.focus import best_plane

    for method in ("variance_of_laplacian", "brenner_gradient", "normalized_variance"):
        with pytest.raises(InputError, match=r"flat\.tif: no plane has content"):
            best_plane(np.full((3, 32, 32), 7.0), method=method, name="flat.tif")
    stack = np.zeros((3, 32, 32))
    stack[2, 8:16, 8:16] = 1
    best, scores = best_plane(stack, method="normalized_variance")
    assert best == 2 and list(scores["has_content"]) == [False, False, True]


def test_best_plane_never_picks_a_blank_plane(tmp_path: Path) -> None:
    plane = tifffile.imread(sorted(shared(DFNN_STACK).glob("*.tif"))[17])
    stack = np.stack([np.zeros_like(plane), plane, np.full_like(plane, 100)])
    path = tmp_path / "padded.tif"
    tifffile.imwrite(path, stack)
    proc = cytolens("focus", "best-plane", path, "--axes", "ZYX", "--json", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    payload = strict_loads(proc.stdout)  # blank planes have NaN levels: null here
    assert payload["best_plane"] == 1
    assert [p["has_content"] for p in payload["planes"]] == [False, True, False]
    assert payload["planes"][0]["mean_level"] is None


def test_best_plane_with_a_model_of_another_capability_stops_before_any_work(
    tmp_path: Path,
) -> None:
    stack = shared(DFNN_STACK)
    out = tmp_path / "planes.csv"
    proc = cytolens("focus", "best-plane", stack, "--model", "nuclei-v1", "--out", out)
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "'nuclei-v1' is a segment model" in line and "focus-miq-v1" in line
    assert not out.exists()


def test_rate_finishes_the_batch_when_one_file_is_bad(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    good = sorted(shared(BBBC).glob("BBBC006_z_aligned__a09*_10.png"))[0]
    (inputs / good.name).write_bytes(good.read_bytes())
    (inputs / "bad.tif").write_bytes(b"II*\x00 not a tiff")
    tifffile.imwrite(inputs / "blank.tif", np.zeros((200, 200), np.uint16))
    before = digest([inputs])
    out = tmp_path / "out"
    proc = cytolens("focus", "rate", inputs, "--out", out, "--json", "--device", "cpu")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"failed: {inputs / 'bad.tif'}:" in proc.stderr
    payload = strict_loads(proc.stdout)
    assert {Path(r["file"]).name for r in payload["images"]} == {good.name, "blank.tif"}
    blank = next(r for r in payload["images"] if r["file"].endswith("blank.tif"))
    assert blank["verdict"] == "no content" and blank["mean_level"] is None
    assert blank["level"] is None
    table = pd.read_csv(out / "focus.csv")
    assert len(table) == 2
    failures = pd.read_csv(out / "failures.csv")
    assert list(failures["item"]) == [str(inputs / "bad.tif")]
    assert "Failed inputs" in (out / "report.html").read_text()
    assert digest([inputs]) == before
    no_temporaries(tmp_path)

    # a second run into the same folder would mix two runs: refused before any work
    mtime = (out / "focus.csv").stat().st_mtime_ns
    proc = cytolens("focus", "rate", inputs / good.name, "--out", out, "--device", "cpu")
    assert proc.returncode == 2
    assert "--overwrite" in one_error_line(proc)
    assert (out / "focus.csv").stat().st_mtime_ns == mtime
    proc = cytolens(
        "focus", "rate", inputs / good.name, "--out", out, "--overwrite", "--device", "cpu"
    )
    assert proc.returncode == 0, proc.stderr
    assert list(pd.read_csv(out / "focus.csv")["file"]) == [str(inputs / good.name)]
    assert not (out / "failures.csv").exists()  # the earlier run's failures are gone
    assert len(list((out / "overlays").glob("*.png"))) == 1
    assert digest([inputs]) == before


def test_rate_refuses_an_output_folder_that_holds_the_inputs(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((96, 96), np.uint16))
    before = digest([tmp_path])
    proc = cytolens("focus", "rate", tmp_path / "a.tif", "--out", tmp_path, "--device", "cpu")
    assert proc.returncode == 2
    assert "holds the input" in one_error_line(proc)
    assert digest([tmp_path]) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rate", "--patch-size", "8"], "Invalid value for '--patch-size': must be at least 16"),
        (["rate", "--batch-size", "0"], "Invalid value for '--batch-size': must be at least 1"),
        (["rate", "--channel", "-1"], "Invalid value for '--channel': must be a number >= 0"),
        (["best-plane", "--patch-size", "0"], "Invalid value for '--patch-size'"),
        (["best-plane", "--method", "sharpest"], "unknown method 'sharpest'"),
    ],
)
def test_bad_numbers_are_refused_at_the_command_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, np.zeros((96, 96), np.uint16))
    proc = cytolens("focus", args[0], path, *args[1:], "--out", tmp_path / "o")
    assert proc.returncode == 2
    assert message in one_error_line(proc)
    assert not (tmp_path / "o").exists()


def test_a_channel_out_of_range_names_the_file_and_the_channels(tmp_path: Path) -> None:
    path = tmp_path / "one.tif"
    tifffile.imwrite(path, np.zeros((96, 96), np.uint16))
    proc = cytolens("focus", "rate", path, "--channel", "2", "--out", tmp_path / "o")
    assert proc.returncode == 2  # the only input failed
    assert f"channel=2 is out of range for {path} with 1 channel(s)" in proc.stderr
    assert "Traceback" not in proc.stderr
