"""The command line: version, info on every image type, demo, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from cytolens import __version__


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """Run ``cytolens ARGS`` in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-c", "from cytolens.cli import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_version():
    res = run_cli("--version")
    assert res.returncode == 0
    assert res.stdout.strip() == f"cytolens {__version__}"


@pytest.mark.parametrize(
    ("relpath", "axes", "dtype"),
    [
        ("focus/bbbc006_subset/BBBC006_z_aligned__a01__s1__w1_10.png", "YX", "uint16"),
        ("deconvolution/flowdec/bars-25pct/data.tif", "ZYX", "float32"),
        ("detection/bccd/JPEGImages/BloodImage_00000.jpg", "YXC", "uint8"),
        ("tracking/ctc/Fluo-N2DH-GOWT1/01/t000.tif", "YX", "uint8"),
        ("tracking/ctc/Fluo-N2DH-SIM+/01", "TYX", "uint16"),
    ],
)
def test_info_json_on_real_files(shared_data, relpath, axes, dtype):
    res = run_cli("info", "--json", str(shared_data / relpath))
    assert res.returncode == 0, res.stderr
    (row,) = json.loads(res.stdout)
    assert row["axes"] == axes and row["dtype"] == dtype
    assert row["max"] >= row["mean"] >= row["min"]


def test_info_on_ome_zarr_written_by_cytolens(tmp_path):
    from cytolens import io

    vol = np.arange(2 * 3 * 40 * 50, dtype=np.uint16).reshape(2, 3, 40, 50)
    path = io.imwrite(tmp_path / "v.ome.zarr", vol, axes="CZYX", pixel_size_um={"Z": 0.5})
    res = run_cli("info", "--json", str(path))
    assert res.returncode == 0, res.stderr
    (row,) = json.loads(res.stdout)
    assert row["axes"] == "CZYX" and row["shape"] == [2, 3, 40, 50]
    assert row["pixel_size_um"]["Z"] == 0.5 and row["max"] == vol.max()


def test_info_table_output_names_the_fields(shared_data):
    res = run_cli("info", str(shared_data / "deconvolution/flowdec/bars-25pct/kernel.tif"))
    assert res.returncode == 0, res.stderr
    for word in ("shape", "axes", "dtype", "ZYX"):
        assert word in res.stdout


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda p: p / "missing.tif", "missing.tif"),
        (lambda p: _write(p / "garbage.tif", b"not a tiff at all" * 10), "garbage.tif"),
        (lambda p: _truncated_tiff(p / "cut.tif"), "cut.tif"),
        (lambda p: _write(p / "notes.txt", b"hello"), "notes.txt"),
    ],
)
def test_bad_input_gives_one_line_error_and_nonzero_exit(tmp_path, make, fragment):
    path = make(tmp_path)
    res = run_cli("info", str(path))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().startswith("error:")
    assert fragment in res.stderr


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _truncated_tiff(path):
    import tifffile

    tifffile.imwrite(path, np.random.default_rng(0).integers(0, 255, (64, 256, 256), np.uint8))
    data = path.read_bytes()
    return _write(path, data[: len(data) // 3])


def test_demo_writes_report(tmp_path):
    res = run_cli("demo", "--out", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    report = tmp_path / "out" / "report.html"
    assert report.exists() and "report written" in res.stdout
    page = report.read_text()
    assert "Bundled samples" in page and "Tiling engine" in page
    assert page.count("data:image/png;base64,") >= 1
    assert (tmp_path / "out" / "samples.png").stat().st_size > 10_000
