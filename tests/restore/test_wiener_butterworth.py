"""The Wiener-Butterworth back projector against its definition (Guo et al. 2020)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cytolens.core.errors import InputError
from cytolens.restore import back_projector, fwhm, gaussian_psf


@pytest.fixture(scope="module")
def psf() -> np.ndarray:
    return gaussian_psf((15, 33, 33), (2.5, 1.8, 1.8))


def otf(kernel: np.ndarray) -> np.ndarray:
    return np.fft.rfftn(np.fft.ifftshift(kernel.astype(np.float64)))


def test_kernel_is_normalised_centred_symmetric(psf: np.ndarray) -> None:
    bp = back_projector(psf)
    k = bp.kernel
    assert k.shape == psf.shape and k.dtype == np.float32
    assert k.sum() == pytest.approx(1, rel=1e-5)
    assert np.unravel_index(k.argmax(), k.shape) == (7, 16, 16)
    np.testing.assert_allclose(k, k[::-1, ::-1, ::-1], atol=1e-6 * k.max())
    assert k.min() < 0  # the Wiener part sharpens: negative side lobes


def test_gain_at_resolution_limit_is_beta(psf: np.ndarray) -> None:
    """|OTF_bp| at the X cutoff over |OTF_bp(0)| = beta (1 + alpha)."""
    alpha, beta = 0.01, 0.005
    res = (3.0, 33 / 8, 33 / 8)  # cutoff 8/33 cycles/pixel: exactly on the 33-point grid
    bp = back_projector(psf, alpha=alpha, beta=beta, order=8, resolution_px=res)
    assert bp.cutoff == pytest.approx((1 / 3, 8 / 33, 8 / 33))
    gain = np.abs(otf(bp.kernel))
    # W(0) = 1 / (1 + alpha): the kernel's normalisation divides by it
    assert gain[0, 0, 8] / gain[0, 0, 0] == pytest.approx(beta * (1 + alpha), rel=1e-4)
    default = back_projector(psf)
    assert default.cutoff == pytest.approx(tuple(1 / f for f in fwhm(psf)))


def test_auto_beta_is_the_otf_gain_at_the_cutoff(psf: np.ndarray) -> None:
    bp = back_projector(psf)
    gain = np.abs(otf(psf / psf.sum()))
    iz = round(bp.cutoff[0] * psf.shape[0])
    # along Z: the largest |OTF| on the planes kz = +-kc, then averaged with Y and X
    assert gain[iz].max() == pytest.approx(gain[-iz].max())
    assert 0 < bp.beta == bp.otf_gain_at_cutoff < 0.2
    assert back_projector(psf, beta=1).beta == bp.beta  # the reference's "1 means auto"
    assert back_projector(psf, alpha="auto").alpha == bp.beta


def test_passes_more_than_the_flipped_psf_below_the_cutoff(psf: np.ndarray) -> None:
    wb = np.abs(otf(back_projector(psf).kernel))
    classic = back_projector(psf, kind="traditional")
    np.testing.assert_allclose(classic.kernel, psf[::-1, ::-1, ::-1] / psf.sum(), atol=1e-7)
    trad = np.abs(otf(classic.kernel))
    # half way to the lateral cutoff the classic back projector has lost most of its gain
    i = round(0.5 * back_projector(psf).cutoff[2] * psf.shape[2])
    assert wb[0, 0, i] > 2 * trad[0, 0, i]
    # far beyond the cutoff the Butterworth filter suppresses noise
    assert wb[0, 0, -1] < 1e-3


def test_higher_order_cuts_more_sharply(psf: np.ndarray) -> None:
    res = (3.0, 4.0, 4.0)  # cutoff 0.25 cycles/pixel
    i = round(0.3 * psf.shape[2])  # 1.2x the cutoff
    soft = np.abs(otf(back_projector(psf, order=4, resolution_px=res).kernel))[0, 0, i]
    sharp = np.abs(otf(back_projector(psf, order=15, resolution_px=res).kernel))[0, 0, i]
    assert sharp < 0.5 * soft


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(kind="gaussian"), "unknown back projector 'gaussian'"),
        (dict(alpha=-1.0), "alpha must be > 0 or 'auto', got -1.0"),
        (dict(beta=2.0), "beta must be in (0, 1) or 'auto', got 2.0"),
        (dict(beta="max"), "expected a number or 'auto', got 'max'"),
        (dict(order=0), "order must be an integer >= 1, got 0"),
        (dict(resolution_px=(2.0,)), "resolution_px (2.0,) must give one positive value"),
    ],
)
def test_errors(psf: np.ndarray, kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        back_projector(psf, **kwargs)


def test_unmeasurable_fwhm_needs_resolution() -> None:
    flat = np.ones((5, 5))
    with pytest.raises(InputError, match="cannot measure the FWHM"):
        back_projector(flat)
    assert back_projector(flat, resolution_px=(2.0, 2.0)).kernel.shape == (5, 5)


def test_auto_needs_transfer_at_the_cutoff() -> None:
    box = np.zeros((9, 9))
    box[3:6, 3:6] = 1  # its OTF is zero at 1/3 cycle/pixel, its resolution limit
    with pytest.raises(InputError, match="give alpha and beta as numbers"):
        back_projector(box)
    bp = back_projector(box, alpha=0.01, beta=0.01)
    assert np.isclose(bp.kernel.sum(), 1.0)


def test_traditional_needs_no_measurable_fwhm() -> None:
    psf = gaussian_psf((3, 3), 1.0)  # never falls to half maximum inside the array
    bp = back_projector(psf, kind="traditional")
    assert bp.cutoff == () and bp.order == 0
    np.testing.assert_allclose(bp.kernel, psf[::-1, ::-1], atol=1e-7)
