"""Tests of the defocus simulator: PSF, noise, defocused images."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from cytolens.core.errors import InputError
from cytolens.simulate import (
    Optics,
    add_camera_noise,
    blur,
    defocus_levels,
    defocus_psf,
    geometric_blur_diameter_px,
    poisson_noise,
    psf_rms_radius,
    simulate_defocus,
)


@pytest.mark.parametrize("z", [0.0, 1.7, -5.0, 12.0, 30.0])
def test_psf_is_normalized_centred_and_nonnegative(z):
    psf = defocus_psf(z)
    assert psf.dtype == np.float32
    assert psf.shape[0] == psf.shape[1] and psf.shape[0] % 2 == 1
    assert psf.min() >= 0
    np.testing.assert_allclose(psf.sum(), 1.0, rtol=1e-5)
    c = psf.shape[0] // 2
    yy, xx = np.indices(psf.shape)
    # centre of mass at the centre pixel (symmetric PSF), to float32 round-off
    np.testing.assert_allclose([(psf * yy).sum(), (psf * xx).sum()], [c, c], atol=1e-3)


def test_in_focus_psf_matches_airy_fwhm():
    # FWHM of the Airy intensity pattern is 0.514 lambda / NA; sampled at 10 nm
    optics = Optics(na=0.8, wavelength_um=0.52, pixel_size_um=0.01, refractive_index=1.33)
    psf = defocus_psf(0.0, optics=optics, size=151, oversample=1)
    prof = psf[75].astype(np.float64)
    above = np.flatnonzero(prof >= prof.max() / 2)
    fwhm_um = (above[-1] - above[0] + 1) * optics.pixel_size_um
    assert fwhm_um == pytest.approx(0.514 * 0.52 / 0.8, rel=0.05)


def test_psf_defocus_sign_is_symmetric():
    np.testing.assert_allclose(defocus_psf(4.0), defocus_psf(-4.0), atol=1e-7)


def test_blur_grows_monotonically_with_level():
    z = defocus_levels(11)
    radii = [psf_rms_radius(defocus_psf(dz, size=81)) for dz in z]
    assert np.all(np.diff(radii) > 0)
    # levels are 3 px of geometric blur diameter apart
    diam = [geometric_blur_diameter_px(dz) for dz in z]
    np.testing.assert_allclose(np.diff(diam), 3.0, rtol=1e-9)
    # far from focus the PSF approaches the geometric disc (rms radius = D / (2 sqrt 2))
    assert radii[-1] == pytest.approx(diam[-1] / (2 * np.sqrt(2)), rel=0.1)


def test_defocused_image_loses_high_frequencies_monotonically():
    rng = np.random.default_rng(0)
    img = rng.random((96, 96)).astype(np.float32)
    z = defocus_levels(6)
    var_lap = []
    from scipy.ndimage import laplace

    for dz in z:
        out = simulate_defocus(img, dz)
        np.testing.assert_allclose(out.mean(), img.mean(), rtol=1e-3)  # flux kept
        var_lap.append(laplace(out.astype(np.float64)).var())
    assert np.all(np.diff(var_lap) < 0)


def test_blur_keeps_flux_and_shape():
    img = np.zeros((31, 40), np.float32)
    img[15, 20] = 5.0
    out = blur(img, defocus_psf(3.0))
    assert out.shape == img.shape
    np.testing.assert_allclose(out.sum(), 5.0, rtol=1e-5)
    with pytest.raises(InputError, match="odd"):
        blur(img, np.ones((4, 4)))


def test_poisson_mean_equals_variance():
    lam = 20.0
    x = poisson_noise(np.full((500, 500), lam), rng=3)
    # standard error of the sample variance is ~0.06 for n = 250000, lambda = 20
    assert x.mean() == pytest.approx(lam, abs=0.05)
    assert x.var() == pytest.approx(lam, abs=0.3)
    assert np.array_equal(x, np.round(x))


def test_read_noise_gain_offset():
    img = add_camera_noise(
        np.zeros((400, 400)), rng=0, read_noise_e=3.0, gain=2.0, offset_adu=100.0
    )
    assert img.mean() == pytest.approx(100.0, abs=0.1)
    assert img.std() == pytest.approx(6.0, rel=0.02)  # gain * read noise


def test_shot_noise_scales_with_gain_and_background():
    img = add_camera_noise(np.full((400, 400), 50.0), rng=1, background_photons=50.0, gain=0.5)
    assert img.mean() == pytest.approx(50.0, rel=0.01)  # 0.5 * (50 + 50)
    assert img.var() == pytest.approx(0.25 * 100.0, rel=0.03)


def test_saturation_clips():
    photons = np.linspace(0, 10000, 64 * 64).reshape(64, 64)
    img = add_camera_noise(photons, rng=0, offset_adu=100, max_adu=4095, quantize=True)
    assert img.max() == 4095
    assert (img == 4095).sum() > 1000
    assert img.min() >= 0
    assert np.array_equal(img, np.round(img))


def test_reproducible_with_seed():
    img = np.random.default_rng(0).random((48, 48))
    kw = {"peak_photons": 200.0, "read_noise_e": 2.0, "offset_adu": 100.0}
    a = simulate_defocus(img, 3.0, rng=7, **kw)
    b = simulate_defocus(img, 3.0, rng=np.random.default_rng(7), **kw)
    c = simulate_defocus(img, 3.0, rng=8, **kw)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_peak_photons_sets_brightness():
    img = np.zeros((64, 64))
    img[20:44, 20:44] = 1.0
    out = simulate_defocus(img, 0.0, rng=0, peak_photons=1000.0)
    assert out[28:36, 28:36].mean() == pytest.approx(1000, rel=0.02)


def test_bad_inputs_raise_input_error():
    with pytest.raises(InputError, match="expected counts must be >= 0"):
        poisson_noise(np.array([[-1.0, 2.0]]))
    with pytest.raises(InputError, match="rng"):
        poisson_noise(np.ones((2, 2)), rng="seed")
    with pytest.raises(InputError, match="size must be a positive odd"):
        defocus_psf(1.0, size=10)
    with pytest.raises(InputError, match="z_um"):
        defocus_psf(float("nan"))
    with pytest.raises(InputError, match="2-D"):
        simulate_defocus(np.zeros((3, 8, 8)), 1.0)
    with pytest.raises(InputError, match="n_levels"):
        defocus_levels(1)
    with pytest.raises(ValidationError, match="below refractive_index"):
        Optics(na=1.2, refractive_index=1.0)
