"""PSFs: measured (load_psf), theoretical (psfmodels), Gaussian, FWHM."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import tifffile

from cytolens.core.errors import InputError
from cytolens.restore import fwhm, gaussian_psf, load_psf, theoretical_psf


def centre(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(s // 2 for s in shape)


def peak(a: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(np.argmax(a), a.shape))


def test_gaussian_psf_and_fwhm() -> None:
    psf = gaussian_psf((15, 31, 31), (1.5, 3.0, 2.5))
    assert psf.dtype == np.float32 and psf.sum() == pytest.approx(1, rel=1e-6)
    assert peak(psf) == centre(psf.shape)
    # FWHM = 2.3548 sigma; linear interpolation of the sampled profile adds < 2 %
    for width, sigma in zip(fwhm(psf), (1.5, 3.0, 2.5), strict=True):
        assert width == pytest.approx(2.3548 * sigma, rel=0.02)
    assert fwhm(psf, voxel_size_um=(0.2, 0.1, 0.1))[1] == pytest.approx(0.1 * fwhm(psf)[1])


def test_fwhm_is_nan_when_profile_never_halves() -> None:
    assert math.isnan(fwhm(np.ones((5, 5)))[0])


@pytest.mark.parametrize("model", ["vectorial", "scalar"])
def test_widefield_psf_matches_textbook_widths(model: str) -> None:
    """Lateral FWHM ~ 0.51 lambda / NA, axial ~ 0.88 lambda / (n - sqrt(n^2 - NA^2))."""
    na, lam, n = 0.8, 0.5, 1.33
    voxel = (0.1, 0.03, 0.03)
    psf = theoretical_psf((41, 65, 65), na=na, wavelength_um=lam, voxel_size_um=voxel, model=model)
    assert psf.dtype == np.float32 and psf.sum() == pytest.approx(1, rel=1e-5)
    assert peak(psf) == centre(psf.shape)
    fz, fy, fx = fwhm(psf, voxel_size_um=voxel)
    lateral = 0.51 * lam / na
    axial = 0.88 * lam / (n - math.sqrt(n * n - na * na))
    # measured: vectorial 1.06-1.08x, scalar 1.01x of the paraxial formulas
    assert fx == pytest.approx(lateral, rel=0.15) and fy == pytest.approx(fx, rel=1e-3)
    assert fz == pytest.approx(axial, rel=0.15)


def test_confocal_and_lightsheet_are_narrower_than_widefield() -> None:
    kw = dict(na=1.0, wavelength_um=0.52, voxel_size_um=(0.1, 0.04, 0.04))
    wide = fwhm(theoretical_psf((41, 33, 33), **kw), voxel_size_um=kw["voxel_size_um"])
    conf = fwhm(
        theoretical_psf((41, 33, 33), kind="confocal", excitation_wavelength_um=0.488, **kw),
        voxel_size_um=kw["voxel_size_um"],
    )
    sheet = fwhm(
        theoretical_psf((41, 33, 33), kind="lightsheet", sheet_fwhm_um=1.0, **kw),
        voxel_size_um=kw["voxel_size_um"],
    )
    # confocal: product of two Airy patterns, ~1/sqrt(2) as wide
    assert all(0.6 * w < c < 0.8 * w for c, w in zip(conf, wide, strict=True))
    # light sheet: same lateral PSF, Z limited by the sheet
    assert sheet[1:] == pytest.approx(wide[1:], rel=1e-3)
    assert sheet[0] < min(1.0, wide[0])


def test_theoretical_psf_even_and_2d_shapes() -> None:
    kw = dict(na=1.2, wavelength_um=0.6, voxel_size_um=0.05)
    psf2 = theoretical_psf((32, 32), **kw)
    assert psf2.shape == (32, 32) and peak(psf2) == (16, 16)
    psf3 = theoretical_psf((10, 20, 16), **kw)
    assert psf3.shape == (10, 20, 16) and peak(psf3) == (5, 10, 8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(na=1.4), "na 1.4 must be > 0 and below the refractive index 1.33"),
        (dict(kind="spinning-disk"), "unknown PSF kind 'spinning-disk'"),
        (dict(kind="lightsheet"), "kind='lightsheet' needs sheet_fwhm_um > 0"),
        (dict(voxel_size_um=(0.2, 0.1, 0.12)), "Y and X sizes must be equal"),
        (dict(model="airy"), "unknown PSF model 'airy'"),
        (dict(wavelength_um=-0.5), "wavelength_um must be > 0, got -0.5"),
    ],
)
def test_theoretical_psf_errors(kwargs: dict, message: str) -> None:
    args = dict(na=1.0, wavelength_um=0.5, voxel_size_um=0.1) | kwargs
    with pytest.raises(InputError, match=re.escape(message)):
        theoretical_psf((9, 9, 9), **args)


def test_load_real_lattice_light_sheet_psf(shared_data) -> None:
    path = shared_data / "deconvolution" / "llsm_psf" / "psf.tif"
    raw = tifffile.imread(path)
    assert raw.dtype == np.uint16 and raw.min() > 50  # camera offset
    psf = load_psf(path)  # read through cytolens.io
    assert psf.dtype == np.float32 and psf.sum() == pytest.approx(1, rel=1e-5)
    assert psf.min() >= 0
    assert peak(psf) == centre(psf.shape)
    # background and noise floor removed: the faces are dark, the bead holds the flux
    c = centre(psf.shape)
    core = psf[c[0] - 10 : c[0] + 11, c[1] - 16 : c[1] + 17, c[2] - 16 : c[2] + 17]
    assert core.sum() > 0.99
    assert psf[0].max() == 0 and psf[:, :, 0].max() == 0
    cropped = load_psf(raw, crop=(31, 41, 41))
    assert cropped.shape == (31, 41, 41) and peak(cropped) == (15, 20, 20)
    assert fwhm(cropped) == pytest.approx(fwhm(psf), rel=1e-3)


def test_load_psf_recentres_and_ignores_hot_pixel() -> None:
    bead = 100 + 900 * gaussian_psf((21, 21), 1.5) / gaussian_psf((21, 21), 1.5).max()
    bead = np.roll(bead, (3, -4), axis=(0, 1))  # peak at (13, 6)
    bead[1, 18] = 5000  # a hot pixel brighter than the bead
    psf = load_psf(bead, background=100, crop=9)
    assert psf.shape == (9, 9) and peak(psf) == (4, 4)
    assert psf.sum() == pytest.approx(1, rel=1e-6)


@pytest.mark.parametrize(
    ("psf", "message"),
    [
        (np.full((9, 9), np.nan), "psf has 81 non-finite value(s)"),
        (np.full((9, 9), 7.0), "psf has no signal above the background (7.0)"),
        (np.zeros((9, 9)), "psf has no signal"),
        (np.ones(9), "psf must be 2-D or 3-D, got 1-D"),
    ],
)
def test_load_psf_errors(psf: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        load_psf(psf)


def test_load_psf_bad_options() -> None:
    bead = gaussian_psf((9, 9), 1.0)
    with pytest.raises(InputError, match="background must be 'auto'"):
        load_psf(bead, background="median")
    with pytest.raises(InputError, match=re.escape("crop (9,) must give one positive size")):
        load_psf(bead, crop=(9,))
