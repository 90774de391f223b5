"""Cases of ``cytolens restore deconvolve``: clashing outputs, bad numbers, no signal, overflow.

Most cases run on copies of the bundled bead image and its measured PSF
(``{samples}/bead.tif``, ``{samples}/bead_psf.tif``: 64^3 float32, the
flowdec bead of the shared data), so that an output written over an input is
seen as data loss. The module also defines the image and command of the 2D
chunked deconvolution whose peak memory ``benchmarks/robustness.py``
measures (:func:`decon_2d_chunked_command`, :data:`DECON_2D_IMAGE_BYTES`).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import tifffile

from robustness_cases import Case

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "cytolens" / "data" / "samples"
THEORETICAL = ["--na", "1.0", "--wavelength", "0.5", "--voxel-size", "0.1"]
DECON = ["restore", "deconvolve"]
BEAD = [*DECON, "{tmp}/bead.tif", "--psf", "{tmp}/bead_psf.tif"]
BEAD_THEORETICAL = [*DECON, "{tmp}/bead.tif", "--na", "1.0", "--wavelength", "0.5"]

#: Side of the square uint16 image of the memory measurement.
DECON_2D_SIDE = 12000
#: Size in bytes of that image's pixels (uint16): the unit of the memory goal (4x).
DECON_2D_IMAGE_BYTES = DECON_2D_SIDE * DECON_2D_SIDE * 2


def _bead_plane() -> np.ndarray:
    return tifffile.imread(SAMPLES / "bead.tif")[32]


def _copy_bead(tmp: Path) -> None:
    for name in ("bead.tif", "bead_psf.tif"):
        shutil.copy(SAMPLES / name, tmp / name)


def _with_bead(extra):
    def setup(tmp: Path) -> None:
        _copy_bead(tmp)
        extra(tmp)

    return setup


def _folder(name: str):
    def make(tmp: Path) -> None:
        (tmp / name).mkdir()
        (tmp / name / "notes.txt").write_text("precious")

    return make


def _plane(tmp: Path) -> None:
    tifffile.imwrite(tmp / "plane.tif", _bead_plane())


def _negative_int8(tmp: Path) -> None:
    plane = _bead_plane()
    tifffile.imwrite(tmp / "negative.tif", (-(plane / 40) - 1).astype(np.int8))


def _scaled(name: str, maximum: float):
    def setup(tmp: Path) -> None:
        _copy_bead(tmp)
        data = tifffile.imread(SAMPLES / "bead.tif")
        tifffile.imwrite(tmp / name, (data / data.max() * maximum).astype(np.float32))

    return setup


def _psf_2d(tmp: Path) -> None:
    tifffile.imwrite(tmp / "psf2d.tif", tifffile.imread(SAMPLES / "bead_psf.tif")[32])


def _png_input(tmp: Path) -> None:
    from cytolens.io import imwrite

    imwrite(tmp / "cells_before_after.png", _bead_plane().astype(np.uint16))


def _nan_plane(tmp: Path) -> None:
    plane = _bead_plane()
    plane[10, 10] = np.nan
    tifffile.imwrite(tmp / "nan.tif", plane)


def _two_channels(tmp: Path) -> None:
    data = np.stack([_bead_plane()] * 2).astype(np.uint16)
    tifffile.imwrite(tmp / "two.tif", data, imagej=True, metadata={"axes": "CYX"})


STALE = (".result.0123abcd.tmp.zarr", ".result.89abcdef.tmp.ome.zarr")


def _stale_temporaries(tmp: Path) -> None:
    """Empty folders with the names a killed run leaves (files would count as data lost)."""
    _plane(tmp)
    for name in STALE:
        (tmp / name).mkdir()


def _read(path: Path) -> np.ndarray:
    from cytolens.io import imread

    return np.asarray(imread(path).data)


def _check_huge(tmp: Path, proc: subprocess.CompletedProcess) -> str | None:
    """The 1e37-scaled bead must give the normal result times the scale, not NaN/zeros."""
    from cytolens.restore import deconvolve, load_psf

    out = _read(tmp / "huge_out.tif")
    if not np.isfinite(out).all():
        return f"{int((~np.isfinite(out)).sum())} non-finite output values"
    data = tifffile.imread(SAMPLES / "bead.tif")
    normal = deconvolve(data, load_psf(SAMPLES / "bead_psf.tif"), device="cpu")
    scale = 1e37 / float(data.max())
    err = float(np.abs(out / scale - normal).max() / normal.max())
    return None if err < 1e-3 else f"differs from the unscaled result by {err:.3g} of its max"


def _check_chunked(tmp: Path, proc: subprocess.CompletedProcess) -> str | None:
    """Chunked (bounded-memory) deconvolution must match the whole-image result."""
    from cytolens.restore import deconvolve, load_psf

    out = _read(tmp / "chunked.ome.zarr")
    whole = deconvolve(
        tifffile.imread(SAMPLES / "bead.tif"), load_psf(SAMPLES / "bead_psf.tif"), device="cpu"
    )
    diff = np.abs(out - whole) / np.ptp(whole)
    if not (diff.mean() < 1e-4 and diff.max() < 2e-2):
        return f"chunked differs from whole: mean {diff.mean():.3g}, max {diff.max():.3g}"
    if list(tmp.glob(".*")):
        return f"left {[p.name for p in tmp.glob('.*')]}"
    return None


def _check_stale_removed(tmp: Path, proc: subprocess.CompletedProcess) -> str | None:
    left = [name for name in STALE if (tmp / name).exists()]
    if left:
        return f"stale temporaries of a killed run left: {left}"
    return _check_written("result.ome.zarr")(tmp, proc)


def _check_written(name: str):
    def check(tmp: Path, proc: subprocess.CompletedProcess) -> str | None:
        out = _read(tmp / name)
        if not (np.isfinite(out).all() and out.max() > 0):
            return f"{name} is not a finite, non-zero result"
        return None

    return check


def _bad_number(option: str, value: str, message: str) -> Case:
    return Case(
        f"restore: {option} {value}",
        [*DECON, "{tmp}/plane.tif", *THEORETICAL, option, value, "--out", "{tmp}/o.tif"],
        setup=_plane,
        message=message,
    )


CASES: list[Case] = [
    Case(
        "restore: --out is the input image",
        [*BEAD, "--out", "{tmp}/bead.tif"],
        setup=_copy_bead,
        message=r"--out .*bead\.tif: would overwrite the input",
    ),
    Case(
        "restore: --out is the --psf file",
        [*BEAD, "--out", "{tmp}/bead_psf.tif"],
        setup=_copy_bead,
        message=r"--out .*bead_psf\.tif: would overwrite the input",
    ),
    Case(
        "restore: --out is an existing folder named .tif",
        [*BEAD, "--out", "{tmp}/DIR.tif"],
        setup=_with_bead(_folder("DIR.tif")),
        message=r"--out .*DIR\.tif: is an existing folder",
    ),
    Case(
        "restore: --out is a plain folder named .ome.zarr",
        [*BEAD, "--out", "{tmp}/notes.ome.zarr"],
        setup=_with_bead(_folder("notes.ome.zarr")),
        message=r"--out .*notes\.ome\.zarr: is an existing folder",
    ),
    Case(
        "restore: the before/after PNG would overwrite the input",
        [*DECON, "{tmp}/cells_before_after.png", *THEORETICAL, "--out", "{tmp}/cells.tif"],
        setup=_png_input,
        message=r"before/after PNG .*cells_before_after\.png: would overwrite the input",
    ),
    Case(
        "restore: --out with an unknown suffix",
        [*BEAD, "--out", "{tmp}/o.png"],
        setup=_copy_bead,
        message=r"--out .*o\.png must end with one of",
    ),
    Case(
        "restore: missing image",
        [*DECON, "{tmp}/missing.tif", *THEORETICAL, "--out", "{tmp}/o.tif"],
        message=r"missing\.tif: no such file",
    ),
    Case(
        "restore: missing --psf file",
        [*DECON, "{tmp}/bead.tif", "--psf", "{tmp}/nope.tif", "--out", "{tmp}/o.tif"],
        setup=_copy_bead,
        message=r"--psf .*nope\.tif: no such file",
    ),
    Case(
        "restore: 2D --psf for a 3D image",
        [*DECON, "{tmp}/bead.tif", "--psf", "{tmp}/psf2d.tif", "--out", "{tmp}/o.tif"],
        setup=_with_bead(_psf_2d),
        message=r"--psf .*psf2d\.tif: a 2D PSF .* for the 3D image",
    ),
    Case(
        "restore: both --psf and --na",
        [*BEAD, *THEORETICAL, "--out", "{tmp}/o.tif"],
        setup=_copy_bead,
        message=r"give either --psf FILE .* or --na and --wavelength",
    ),
    Case(
        "restore: --voxel-size 0,0.1,0.1",
        [*BEAD_THEORETICAL, "--voxel-size", "0,0.1,0.1", "--out", "{tmp}/o.tif"],
        setup=_copy_bead,
        message=r"--voxel-size '0,0\.1,0\.1': every value must be a positive number",
    ),
    Case(
        "restore: --voxel-size with 2 values for a 3D image",
        [*BEAD_THEORETICAL, "--voxel-size", "0.1,0.1", "--out", "{tmp}/o.tif"],
        setup=_copy_bead,
        message=r"--voxel-size 0\.1,0\.1 must give 3 values",
    ),
    Case(
        "restore: --chunk-shape 0,32,32",
        [*BEAD, "--chunk-shape", "0,32,32", "--out", "{tmp}/o.tif"],
        setup=_copy_bead,
        message=r"--chunk-shape '0,32,32': every value must be a positive number",
    ),
    Case(
        "restore: --chunk-shape 32.5",
        [*BEAD, "--chunk-shape", "32.5", "--out", "{tmp}/o.tif"],
        setup=_copy_bead,
        message=r"--chunk-shape '32\.5': expected whole numbers",
    ),
    _bad_number("--beta", "2", r"--beta '2': must be 'auto' or a number between 0 and 1"),
    _bad_number("--beta", "0", r"--beta '0': every value must be a positive number"),
    _bad_number("--na", "-1", r"'--na': must be a positive number, got -1"),
    _bad_number("--na", "1.4", r"--na 1\.4 must be below --refractive-index 1\.33"),
    _bad_number("--wavelength", "0", r"'--wavelength': must be a positive number"),
    _bad_number("--refractive-index", "-1", r"'--refractive-index': must be a positive"),
    _bad_number("--excitation-wavelength", "0", r"'--excitation-wavelength': must be a positive"),
    _bad_number("--sheet-fwhm", "-2", r"'--sheet-fwhm': must be a positive number"),
    _bad_number("--iterations", "0", r"'--iterations'.*must be at least 1, got 0"),
    _bad_number("--alpha", "0", r"'--alpha': must be a positive number"),
    _bad_number("--order", "0", r"'--order': must be at least 1"),
    _bad_number("--tv", "-0.1", r"'--tv': must be a number >= 0"),
    _bad_number("--tv", "0.3", r"--tv 0\.3 must be below 0\.25 for a 2D image"),
    _bad_number("--background", "inf", r"'--background': must be a finite number"),
    _bad_number("--method", "lucy", r"--method: unknown method 'lucy'"),
    _bad_number("--psf-kind", "spinning", r"--psf-kind: unknown psf-kind 'spinning'"),
    _bad_number("--device", "tpu", r"--device: unknown device 'tpu'"),
    Case(
        "restore: --background above every pixel",
        [*BEAD, "--background", "1e9", "--out", "{tmp}/o.tif"],
        setup=_copy_bead,
        message=r"--background 1e\+09 is at or above the maximum of .*bead\.tif \(3682",
    ),
    Case(
        "restore: int8 image with no positive pixel",
        [*DECON, "{tmp}/negative.tif", *THEORETICAL, "--out", "{tmp}/o.tif"],
        setup=_negative_int8,
        message=r"negative\.tif has no positive signal to deconvolve: its maximum is -\d+ "
        r"\(--background 0\)",
    ),
    Case(
        "restore: NaN in the image",
        [*DECON, "{tmp}/nan.tif", *THEORETICAL, "--out", "{tmp}/o.tif"],
        setup=_nan_plane,
        message=r"nan\.tif: image has 1 non-finite value",
    ),
    Case(
        "restore: two channels",
        [*DECON, "{tmp}/two.tif", *THEORETICAL, "--out", "{tmp}/o.tif"],
        setup=_two_channels,
        message=r"two\.tif: axes 'CYX' .* needs one channel",
    ),
    Case(
        "restore: float32 values near 1e37 (used to be all NaN)",
        [*DECON, "{tmp}/huge.tif", "--psf", "{tmp}/bead_psf.tif", "--out", "{tmp}/huge_out.tif"],
        expect="ok",
        setup=_scaled("huge.tif", 1e37),
        check=_check_huge,
    ),
    Case(
        "restore: result beyond the float32 range",
        [*DECON, "{tmp}/edge.tif", "--psf", "{tmp}/bead_psf.tif", "--out", "{tmp}/o.tif"],
        setup=_scaled("edge.tif", 3e38),
        message=r"edge\.tif: deconvolution gave non-finite values",
    ),
    Case(
        "restore: chunked 3D to OME-Zarr matches the whole image",
        [*BEAD, "--chunk-shape", "32,32,32", "--out", "{tmp}/chunked.ome.zarr"],
        expect="ok",
        setup=_copy_bead,
        check=_check_chunked,
    ),
    Case(
        "restore: rerun after a killed run (stale temporaries)",
        [*DECON, "{tmp}/plane.tif", *THEORETICAL, "--out", "{tmp}/result.ome.zarr"],
        expect="ok",
        setup=_stale_temporaries,
        check=_check_stale_removed,
    ),
]


def _blurred_spots(side: int, seed: int = 0) -> np.ndarray:
    """Gaussian spots (sigma 2 px) of random brightness on an offset of 100, with Poisson noise."""
    rng = np.random.default_rng(seed)
    half = 6
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    stamp = np.exp(-(yy**2 + xx**2) / 8.0).astype(np.float32)
    count = side * side // 400
    ys = rng.integers(half, side - half, count)
    xs = rng.integers(half, side - half, count)
    amplitude = rng.uniform(100, 1000, count).astype(np.float32)
    clean = np.zeros((side, side), np.float32)
    flat, base = clean.reshape(-1), ys * side + xs
    for dy in range(-half, half + 1):
        for dx in range(-half, half + 1):
            np.add.at(flat, base + dy * side + dx, amplitude * stamp[dy + half, dx + half])
    image = np.empty((side, side), np.uint16)
    for start in range(0, side, 1000):  # Poisson noise strip by strip (bounded memory)
        noisy = rng.poisson(clean[start : start + 1000] + 100.0)
        image[start : start + 1000] = np.minimum(noisy, 65535)
    return image


def decon_2d_chunked_command(tmp: Path) -> list[str]:
    """Make the 12000x12000 uint16 test image in ``tmp``; return the command to measure.

    The image (275 MiB) holds blurred spots on a camera offset of 100 with
    Poisson noise, written as a plain uncompressed TIFF with tifffile; the
    command deconvolves it with a 2D theoretical PSF in 2048x2048 chunks into
    an OME-TIFF (plus the before/after PNG).

    Parameters
    ----------
    tmp : pathlib.Path
        An empty folder (the command's output goes to ``tmp/out``).

    Returns
    -------
    list of str
        ``cytolens`` arguments (without the program), with the ``{tmp}``
        placeholder.
    """
    tifffile.imwrite(tmp / "big.tif", _blurred_spots(DECON_2D_SIDE))
    return [
        *DECON, "{tmp}/big.tif", *THEORETICAL, "--background", "100",
        "--chunk-shape", "2048,2048", "--out", "{tmp}/out/big_decon.ome.tif",
    ]  # fmt: skip
