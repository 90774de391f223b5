"""``cytolens segment nuclei`` on bad inputs: nothing lost, nothing silently wrong.

Each case runs the real command line in a subprocess and checks the exit code,
the one-line message naming the file or option, that the inputs are
byte-identical afterwards and that no partial or temporary file remains.
The images are real (DSB2018 fluorescence, the bundled BBBC006 sample) and
small, and the classical method keeps most cases to about a second.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from tests.clitools import cytolens, digest, no_temporaries, one_error_line, strict_loads
from tests.conftest import shared

from cytolens.core.errors import InputError
from cytolens.io import imread
from cytolens.segment import nuclei, nuclei_classical

SAMPLE = Path(__file__).resolve().parents[2] / "src/cytolens/data/samples/nuclei_bbbc006.png"
#: A 256 x 256 DSB2018 fluorescence image (36 nuclei).
DSB_ID = "003cee89357d9fe13516167fd67b609a164651b21934585648c740d2c3d86dc1"


@pytest.fixture
def dsb_png(tmp_path: Path) -> Path:
    source = shared(f"segmentation/dsb2018/images/{DSB_ID}.png")
    folder = tmp_path / "in"
    folder.mkdir()
    return Path(shutil.copy(source, folder / "dsb.png"))


def test_one_bad_file_fails_alone(dsb_png: Path, tmp_path: Path) -> None:
    folder = dsb_png.parent
    (folder / "corrupt.tif").write_bytes(b"II*\x00 not really a TIFF")
    rng = np.random.default_rng(0)
    tifffile.imwrite(folder / "strip.tif", rng.normal(100, 10, (3, 2000)).astype(np.float32))
    before = digest(folder)
    out = tmp_path / "out"
    proc = cytolens("segment", "nuclei", folder, "--out", out, "--method", "classical", "--json")
    assert proc.returncode == 1, proc.stderr
    assert digest(folder) == before
    summary = strict_loads(proc.stdout.strip().splitlines()[-1])
    assert [r["image"] for r in summary["images"]] == ["dsb.png"]
    failures = pd.read_csv(out / "failures.csv")
    assert sorted(Path(p).name for p in failures["item"]) == ["corrupt.tif", "strip.tif"]
    assert "strip.tif has shape (3, 2000)" in " ".join(failures["message"])
    combined = pd.read_csv(out / "nuclei.csv")
    assert set(combined["image"]) == {"dsb.png"} and len(combined) > 10
    assert "Failed inputs" in (out / "report.html").read_text()
    written = {p.name for p in out.iterdir()}
    assert {"dsb_labels.tif", "dsb_nuclei.csv", "dsb_overlay.png"} <= written
    assert not list(out.glob("strip_*")) and not list(out.glob("corrupt_*"))
    assert "failed: " in proc.stderr and "2 of 3 input(s) failed" in proc.stderr
    no_temporaries(out)


def test_second_run_needs_overwrite(dsb_png: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ("segment", "nuclei", dsb_png, "--out", out, "--method", "classical")
    assert cytolens(*args).returncode == 0
    first = digest(out)
    proc = cytolens(*args)
    assert proc.returncode == 2
    assert "--out" in one_error_line(proc) and "--overwrite" in one_error_line(proc)
    assert digest(out) == first  # the earlier run is untouched
    (out / "failures.csv").write_text("item,error,message\nold.tif,X,an earlier run\n")
    assert cytolens(*args, "--overwrite").returncode == 0
    assert not (out / "failures.csv").exists()  # an earlier run's failures do not pass for ours


def test_output_folder_holding_the_input_is_refused(dsb_png: Path) -> None:
    before = digest(dsb_png.parent)
    proc = cytolens("segment", "nuclei", dsb_png, "--out", dsb_png.parent, "--overwrite")
    assert proc.returncode == 2 and "holds the input" in one_error_line(proc)
    assert digest(dsb_png.parent) == before


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--diameter", "0"),
        ("--diameter-um", "nan"),
        ("--pixel-size-um", "-0.5"),
        ("--tile-shape", "0"),
    ],
)
def test_bad_numbers_are_refused_at_the_command_line(
    dsb_png: Path, tmp_path: Path, option: str, value: str
) -> None:
    out = tmp_path / "out"
    proc = cytolens("segment", "nuclei", dsb_png, "--out", out, option, value)
    assert proc.returncode == 2
    assert f"Invalid value for '{option}'" in one_error_line(proc)
    assert not out.exists()


def test_tiny_diameter_is_refused_before_any_allocation(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    image = Path(shutil.copy(SAMPLE, folder / "bbbc006.png"))
    out = tmp_path / "out"
    proc = cytolens("segment", "nuclei", image, "--out", out, "--diameter", "0.01")
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "bbbc006.png" in line and "0.01 px" in line and "3 to 520 px" in line
    assert "832000 x 1113600 px" in line  # the size the model would have zoomed to
    assert not out.exists() or not any(out.iterdir())


def test_axes_that_do_not_fit_are_refused_before_writing(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    image = Path(shutil.copy(SAMPLE, folder / "bbbc006.png"))
    out = tmp_path / "out"
    proc = cytolens("segment", "nuclei", image, "--out", out, "--axes", "ZYX", "--method=classical")
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "bbbc006.png" in line and "'ZYX'" in line
    assert not out.exists() or not any(out.iterdir())
    proc = cytolens("segment", "nuclei", image, "--out", out, "--axes", "QYX")
    assert proc.returncode == 2 and "--axes" in one_error_line(proc)


def test_transposed_axes_give_consistent_outputs(tmp_path: Path) -> None:
    source = imread(SAMPLE).data[:200, :300]
    image = tmp_path / "crop.tif"
    tifffile.imwrite(image, source)
    out = tmp_path / "out"
    proc = cytolens("segment", "nuclei", image, "--out", out, "--axes", "XY", "--method=classical")
    assert proc.returncode == 0, proc.stderr
    labels = imread(out / "crop_labels.tif").data
    assert labels.shape == (300, 200)  # in YX order, as --axes XY says the file is
    assert imread(out / "crop_overlay.png").shape == (300, 200, 3)


def test_strip_smaller_than_a_nucleus_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    strip = tmp_path / "strip.tif"
    tifffile.imwrite(strip, rng.normal(100, 10, (3, 100000)).astype(np.float32))
    before = digest(tmp_path)
    out = tmp_path / "out"
    proc = cytolens("segment", "nuclei", strip, "--out", out, "--method", "classical")
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "strip.tif has shape (3, 100000)" in line and "16 px" in line
    assert digest(tmp_path) == before  # nothing written, not even an empty result


def test_huge_float_values_never_make_inf_in_the_table(tmp_path: Path) -> None:
    crop = imread(SAMPLE).data[:160, :160].astype(np.float64)
    image = tmp_path / "huge.tif"
    tifffile.imwrite(image, (crop / crop.max() * 1e37).astype(np.float32))
    out = tmp_path / "out"
    proc = cytolens("segment", "nuclei", image, "--out", out, "--method", "classical", "--json")
    assert proc.returncode == 0, proc.stderr
    strict_loads(proc.stdout.strip().splitlines()[-1])
    table = pd.read_csv(out / "huge_nuclei.csv")
    assert len(table) > 0
    numeric = table.drop(columns=["image"]).select_dtypes("number").to_numpy()
    assert np.isfinite(numeric).all()
    assert table["intensity_integrated"].max() > 1e37


def test_api_refuses_what_it_cannot_segment() -> None:
    with pytest.raises(InputError, match=r"shape \(3, 500\): too small"):
        nuclei_classical(np.ones((3, 500), np.float32))
    with pytest.raises(InputError, match=r"0\.01 px .* 3 to 64 px"):
        nuclei_classical(np.ones((64, 96), np.float32), diameter=0.01)
    with pytest.raises(InputError, match="zoom the 64 x 96 px image 1600x"):
        nuclei(np.ones((64, 96), np.float32), diameter=0.01, device="cpu")
    with pytest.raises(InputError, match=r"tile_shape 50 is too small for model 'nuclei-v2'"):
        nuclei(np.ones((64, 96), np.float32), diameter=10, tile_shape=50, device="cpu")
    with pytest.raises(InputError, match="float32 range"):
        nuclei_classical(np.full((32, 32), 1e300))
    labels = np.zeros((32, 32), np.uint16)
    labels[4:12, 4:12] = 1
    from cytolens.segment import measure

    with pytest.raises(InputError, match="not finite"):
        measure(labels, np.full((32, 32), 1e200))
    table = measure(labels, np.full((32, 32), 3e38, np.float32))
    assert math.isfinite(table["intensity_integrated"].iloc[0])
