"""Bad inputs to ``cytolens restore deconvolve``: nothing lost, nothing silently wrong.

The command-line tests run ``python -m cytolens`` in a subprocess, as a user
would, on the real bead image and its measured PSF (flowdec, in the shared
data), and check the exit code, the one-line message naming the file or
option, that the inputs are byte-identical afterwards and that no temporary
or partial output remains. The API tests check that Python users get the
same protection from :func:`cytolens.restore.deconvolve`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from tests.clitools import cytolens, digest, one_error_line, temporaries
from tests.conftest import shared

from cytolens.core.errors import InputError
from cytolens.io import imread, imwrite
from cytolens.restore import deconvolve, gaussian_psf
from cytolens.restore.chunked_files import preview, scratch_array
from cytolens.restore.deconvolution import NoSignalError

BEAD = "deconvolution/flowdec/bead-25pct"
THEORETICAL_2D = ["--na", "1.0", "--wavelength", "0.5", "--voxel-size", "0.1"]


@pytest.fixture
def bead(tmp_path: Path) -> tuple[Path, Path]:
    """Copies of the real 64^3 bead image and its measured PSF."""
    image = shutil.copy(shared(f"{BEAD}/data.tif"), tmp_path / "bead.tif")
    psf = shutil.copy(shared(f"{BEAD}/kernel.tif"), tmp_path / "bead_psf.tif")
    return Path(image), Path(psf)


@pytest.fixture
def plane(tmp_path: Path) -> Path:
    """The bead image's central plane (2D, float32, 64x64)."""
    path = tmp_path / "plane.tif"
    tifffile.imwrite(path, tifffile.imread(shared(f"{BEAD}/data.tif"))[32])
    return path


def refused(folder: Path, proc: subprocess.CompletedProcess[str], before: dict, pattern: str):
    """Exit 2, one line matching ``pattern``, inputs untouched, nothing new left."""
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert re.search(pattern, line), line
    assert digest(folder) == before
    assert not temporaries(folder)


@pytest.mark.parametrize("target", ["image", "psf"])
def test_out_never_overwrites_an_input(bead: tuple[Path, Path], target: str) -> None:
    image, psf = bead
    clash = image if target == "image" else psf
    before = digest(image.parent)
    proc = cytolens("restore", "deconvolve", image, "--psf", psf, "--out", clash)
    refused(image.parent, proc, before, rf"--out .*{clash.name}: would overwrite the input")


def test_out_folder_is_refused_before_any_work(bead: tuple[Path, Path]) -> None:
    image, psf = bead
    folder = image.parent / "result.tif"
    folder.mkdir()
    (folder / "notes.txt").write_text("precious")
    before = digest(image.parent)
    proc = cytolens("restore", "deconvolve", image, "--psf", psf, "--out", folder)
    refused(image.parent, proc, before, r"--out .*result\.tif: is an existing folder")
    assert "deconvolving" not in proc.stderr  # refused before computing


def test_before_after_png_never_overwrites_an_input(tmp_path: Path) -> None:
    image = tmp_path / "cells_before_after.png"
    plane = tifffile.imread(shared(f"{BEAD}/data.tif"))[32]
    imwrite(image, plane.astype(np.uint16))
    before = digest(tmp_path)
    proc = cytolens(
        "restore", "deconvolve", image, *THEORETICAL_2D, "--out", tmp_path / "cells.tif"
    )
    refused(tmp_path, proc, before, r"before/after PNG .*would overwrite the input")


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        (["--voxel-size", "0,0.1"], r"--voxel-size '0,0\.1': every value must be a positive"),
        (["--voxel-size", "0.1,0.1,0.1"], r"--voxel-size 0\.1,0\.1,0\.1 must give 2 values"),
        (["--chunk-shape", "0,32"], r"--chunk-shape '0,32': every value must be a positive"),
        (["--chunk-shape", "32.5,32"], r"--chunk-shape '32\.5,32': expected whole numbers"),
        (["--beta", "2"], r"--beta '2': must be 'auto' or a number between 0 and 1"),
        (["--beta", "-1"], r"--beta '-1': every value must be a positive"),
        (["--na", "-1"], r"'--na': must be a positive number, got -1"),
        (["--na", "1.4"], r"--na 1\.4 must be below --refractive-index 1\.33"),
        (["--wavelength", "0"], r"'--wavelength': must be a positive number"),
        (["--refractive-index", "0"], r"'--refractive-index': must be a positive number"),
        (["--excitation-wavelength", "-0.4"], r"'--excitation-wavelength': must be a positive"),
        (["--sheet-fwhm", "0"], r"'--sheet-fwhm': must be a positive number"),
        (["--iterations", "0"], r"'--iterations'.*must be at least 1, got 0"),
        (["--alpha", "0"], r"'--alpha': must be a positive number"),
        (["--order", "0"], r"'--order': must be at least 1"),
        (["--tv", "-0.1"], r"'--tv': must be a number >= 0"),
        (["--tv", "0.3"], r"--tv 0\.3 must be below 0\.25 for a 2D image"),
        (["--background", "nan"], r"'--background': must be a finite number"),
        (["--method", "lucy"], r"--method: unknown method 'lucy'"),
        (["--device", "tpu"], r"--device: unknown device 'tpu'"),
    ],
)
def test_bad_numbers_are_refused_naming_the_option(
    plane: Path, extra: list[str], pattern: str
) -> None:
    args = dict(zip(THEORETICAL_2D[::2], THEORETICAL_2D[1::2], strict=True))
    for option, value in zip(extra[::2], extra[1::2], strict=True):
        args[option] = value
    before = digest(plane.parent)
    flat = [x for kv in args.items() for x in kv]
    proc = cytolens("restore", "deconvolve", plane, *flat, "--out", plane.parent / "o.tif")
    refused(plane.parent, proc, before, pattern)


def test_background_above_every_pixel_is_refused(bead: tuple[Path, Path]) -> None:
    image, psf = bead
    before = digest(image.parent)
    out = image.parent / "o.tif"
    proc = cytolens(
        "restore", "deconvolve", image, "--psf", psf, "--background", "1e9", "--out", out
    )
    refused(
        image.parent,
        proc,
        before,
        r"--background 1e\+09 is at or above the maximum of .*bead\.tif \(3682\.38\)",
    )


def test_all_negative_int8_image_is_refused(tmp_path: Path) -> None:
    image = tmp_path / "negative.tif"
    data = -np.abs(tifffile.imread(shared(f"{BEAD}/data.tif"))[32] / 40).astype(np.int8) - 1
    tifffile.imwrite(image, data)
    before = digest(tmp_path)
    proc = cytolens("restore", "deconvolve", image, *THEORETICAL_2D, "--out", tmp_path / "o.tif")
    refused(
        tmp_path,
        proc,
        before,
        r"negative\.tif has no positive signal to deconvolve: its maximum is -\d+ "
        r"\(--background 0\)",
    )


def test_huge_values_are_deconvolved_like_any_scale(tmp_path: Path) -> None:
    """float32 values near 1e37 used to give an all-NaN output with exit 0."""
    data = tifffile.imread(shared(f"{BEAD}/data.tif"))[32]
    factor = np.float32(1e37 / data.max())
    tifffile.imwrite(tmp_path / "normal.tif", data)
    tifffile.imwrite(tmp_path / "huge.tif", data * factor)
    for name in ("normal", "huge"):
        proc = cytolens(
            "restore", "deconvolve", tmp_path / f"{name}.tif", *THEORETICAL_2D,
            "--out", tmp_path / f"{name}_out.tif",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    normal = tifffile.imread(tmp_path / "normal_out.tif")
    huge = tifffile.imread(tmp_path / "huge_out.tif")
    assert np.isfinite(huge).all()
    np.testing.assert_allclose(huge / factor, normal, rtol=1e-4, atol=1e-5 * normal.max())


def test_overflowing_result_is_refused_not_written(bead: tuple[Path, Path]) -> None:
    image, psf = bead
    data = tifffile.imread(image)
    tifffile.imwrite(image, (data / data.max() * 3e38).astype(np.float32))
    before = digest(image.parent)
    proc = cytolens("restore", "deconvolve", image, "--psf", psf, "--out", image.parent / "o.tif")
    refused(image.parent, proc, before, r"bead\.tif: deconvolution gave non-finite values")
    assert "RuntimeWarning" not in proc.stderr


def test_chunked_2d_matches_whole_and_leaves_no_scratch(tmp_path: Path) -> None:
    """The bounded-memory path (scratch store, streamed writing) gives the whole-image result."""
    rng = np.random.default_rng(0)
    image = tmp_path / "spots.tif"
    spots = np.zeros((300, 260), np.float32)
    spots[rng.integers(5, 295, 300), rng.integers(5, 255, 300)] = rng.uniform(200, 900, 300)
    from scipy.ndimage import gaussian_filter

    tifffile.imwrite(image, rng.poisson(gaussian_filter(spots, 2) + 100).astype(np.uint16))
    common = [image, *THEORETICAL_2D, "--background", "100"]
    whole = cytolens("restore", "deconvolve", *common, "--out", tmp_path / "whole.tif")
    assert whole.returncode == 0, whole.stderr
    for out in ("chunked.ome.tif", "chunked.ome.zarr"):
        proc = cytolens(
            "restore", "deconvolve", *common, "--chunk-shape", "96,80", "--out", tmp_path / out
        )
        assert proc.returncode == 0, proc.stderr
        assert "chunk by chunk" in proc.stderr
        result = imread(tmp_path / out)
        assert result.pixel_size_um == pytest.approx({"Y": 0.1, "X": 0.1})
        reference = tifffile.imread(tmp_path / "whole.tif")
        diff = np.abs(np.asarray(result.data) - reference) / np.ptp(reference)
        assert diff.mean() < 1e-4 and diff.max() < 2e-2, (diff.mean(), diff.max())
        assert (tmp_path / (out.split(".")[0] + "_before_after.png")).exists()
    assert not temporaries(tmp_path)


def test_sigterm_leaves_no_partial_zarr(tmp_path: Path) -> None:
    """SIGTERM while a chunked run writes .ome.zarr: exit 143, nothing partial left."""
    rng = np.random.default_rng(1)
    image = tmp_path / "big.tif"
    tifffile.imwrite(image, rng.poisson(100, (1500, 1500)).astype(np.uint16))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = [
        sys.executable, "-m", "cytolens", "restore", "deconvolve", str(image), *THEORETICAL_2D,
        "--method", "richardson-lucy", "--iterations", "40", "--chunk-shape", "256,256",
        "--out", str(out_dir / "result.ome.zarr"),
    ]  # fmt: skip
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 60
        while not temporaries(out_dir):  # working: the scratch store exists
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline, "the run never started writing"
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err.decode()
    assert "terminated: no partial output was kept" in err.decode()
    assert "Traceback" not in err.decode()
    assert list(out_dir.iterdir()) == []


def test_rerun_removes_stale_temporaries_and_replaces_earlier_zarr(plane: Path) -> None:
    folder = plane.parent
    out = folder / "result.ome.zarr"
    stale = [folder / ".result.0123abcd.tmp.zarr", folder / ".result.89abcdef.tmp.ome.zarr"]
    for s in stale:  # what a killed run leaves (scratch store, half-written output)
        s.mkdir()
        (s / "zarr.json").write_text("{}")
    for _ in range(2):  # the second run replaces the first one's OME-Zarr
        proc = cytolens("restore", "deconvolve", plane, *THEORETICAL_2D, "--out", out)
        assert proc.returncode == 0, proc.stderr
    assert not temporaries(folder)
    assert imread(out).shape == (64, 64)


def test_plain_folder_named_zarr_is_not_replaced(plane: Path) -> None:
    folder = plane.parent / "notes.ome.zarr"
    folder.mkdir()
    (folder / "notes.txt").write_text("precious")
    before = digest(plane.parent)
    proc = cytolens("restore", "deconvolve", plane, *THEORETICAL_2D, "--out", folder)
    refused(plane.parent, proc, before, r"--out .*notes\.ome\.zarr: is an existing folder")


# -- the API gives Python users the same protection ----------------------------------------


def test_api_refuses_no_signal_and_warns_about_clipping(caplog: pytest.LogCaptureFixture) -> None:
    psf = gaussian_psf((9, 9), 1.5)
    image = np.random.default_rng(0).uniform(90, 110, (48, 48)).astype(np.float32)
    with pytest.raises(NoSignalError, match=r"background=1e\+09 is at or above .* 109\.9"):
        deconvolve(image, psf, background=1e9)
    with pytest.raises(NoSignalError, match="its maximum is -90"):
        deconvolve(-image, psf)
    with caplog.at_level(logging.WARNING, logger="cytolens.restore.deconvolution"):
        out = deconvolve(image, psf, background=100, device="cpu")
    assert "clipped to 0" in caplog.text and out.min() >= 0
    assert image.min() >= 90  # never modified


def test_api_scale_equivariance_and_overflow() -> None:
    psf = gaussian_psf((9, 9), 1.5)
    image = np.random.default_rng(0).uniform(1, 100, (48, 48)).astype(np.float32)
    normal = deconvolve(image, psf, device="cpu")
    huge = deconvolve(image * np.float32(1e35), psf, device="cpu")
    np.testing.assert_allclose(huge / np.float32(1e35), normal, rtol=1e-5, atol=1e-6 * 100)
    blurred = np.zeros((48, 48), np.float32)
    blurred[20:29, 20:29] = psf / psf.max() * np.float32(3e38)  # a point source near the limit
    with pytest.raises(InputError, match=r"non-finite values .* exceeds the float32 range"):
        deconvolve(blurred, psf, iterations=5, device="cpu")


def test_api_dask_into_out_matches_whole(tmp_path: Path) -> None:
    """Dask input written into ``out`` goes one chunk at a time, same values."""
    da = pytest.importorskip("dask.array")
    psf = gaussian_psf((7, 9, 9), (1.5, 1.2, 1.2))
    image = np.random.default_rng(2).poisson(50, (20, 70, 60)).astype(np.uint16)
    whole = deconvolve(image, psf, background=10, device="cpu")
    with scratch_array(tmp_path / "x.tif", image.shape) as out:
        got = deconvolve(
            da.from_array(image, chunks=(10, 35, 30)), psf, out=out, background=10, device="cpu"
        )
        assert got is out
        diff = np.abs(out[:] - whole) / np.ptp(whole)
    assert diff.mean() < 1e-4 and diff.max() < 2e-2
    assert list(tmp_path.iterdir()) == []


def test_preview_dask_numpy_and_zarr_agree(tmp_path: Path) -> None:
    da = pytest.importorskip("dask.array")
    image = np.random.default_rng(3).integers(0, 1000, (5, 300, 200)).astype(np.uint16)
    small = preview(image, max_side=50)
    assert small.shape == (50, 34) and small.max() == image.max()
    assert (preview(da.from_array(image, chunks=(5, 60, 102)), max_side=50) == small).all()
    with scratch_array(tmp_path / "p.tif", image.shape) as scratch:
        scratch[:] = image
        assert (preview(scratch, max_side=50) == small).all()
