"""Simulated defocus: blur an in-focus image with a defocus PSF and record it with a camera.

This is how focus-rating training data is made (after Yang et al. 2018): an
in-focus image is blurred to one of a ladder of absolute defocus levels
(:func:`defocus_levels`), scaled to a photon budget, and given shot noise,
read noise, an offset and saturation (:func:`simulate_defocus`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cytolens.core.errors import InputError
from cytolens.core.validate import check_array
from cytolens.simulate.noise import add_camera_noise, as_rng
from cytolens.simulate.psf import Optics, defocus_psf

__all__ = ["blur", "defocus_levels", "simulate_defocus"]


def defocus_levels(
    n_levels: int = 11, *, blur_step_px: float = 3.0, optics: Optics | None = None
) -> np.ndarray:
    """Defocus distances of a ladder of absolute focus levels.

    Level ``k`` is the defocus at which the geometric blur disc is
    ``k * blur_step_px`` pixels wide (``2 z tan(theta) = k * step * pixel``),
    so the levels are equally spaced in blur, as in Yang et al. 2018
    (about 3 px of blur diameter apart). Level 0 is in focus.

    Parameters
    ----------
    n_levels : int
        Number of levels (>= 2).
    blur_step_px : float
        Growth of the blur diameter from one level to the next, pixels.
    optics : Optics, optional
        Default: :class:`~cytolens.simulate.Optics` () (NA 0.5, 500 nm, 0.65 um pixels).

    Returns
    -------
    numpy.ndarray of float
        ``n_levels`` defocus distances in um, starting at 0.

    Examples
    --------
    >>> defocus_levels(4).round(2)
    array([0.  , 1.69, 3.38, 5.07])
    """
    if int(n_levels) != n_levels or n_levels < 2:
        raise InputError(f"n_levels must be an integer >= 2, got {n_levels!r}")
    if not (np.isfinite(blur_step_px) and blur_step_px > 0):
        raise InputError(f"blur_step_px must be > 0, got {blur_step_px!r}")
    optics = optics or Optics()
    step_um = blur_step_px * optics.pixel_size_um / (2 * np.tan(optics.half_angle))
    return np.arange(int(n_levels)) * step_um


def blur(image: Any, psf: Any) -> np.ndarray:
    """Convolve a 2D image with a PSF, mirroring the image at its borders.

    Parameters
    ----------
    image : array_like
        2D image.
    psf : array_like
        2D kernel with odd sides, normalized here to sum 1.

    Returns
    -------
    numpy.ndarray of float32
        Same shape as ``image``; the total intensity is preserved.

    Examples
    --------
    >>> img = np.zeros((9, 9)); img[4, 4] = 1
    >>> out = blur(img, np.ones((3, 3)))
    >>> round(float(out.sum()), 6), round(float(out[4, 4]), 4)
    (1.0, 0.1111)
    """
    from scipy.signal import fftconvolve

    x = np.asarray(check_array(image, name="image", ndim=2), dtype=np.float32)
    k = np.asarray(check_array(psf, name="psf", ndim=2), dtype=np.float32)
    if any(s % 2 == 0 for s in k.shape):
        raise InputError(f"psf must have odd sides, got shape {k.shape}")
    if not k.sum() > 0:
        raise InputError("psf must have a positive sum")
    k = k / k.sum()
    ry, rx = k.shape[0] // 2, k.shape[1] // 2
    # numpy mirrors repeatedly when the kernel is larger than the image
    padded = np.pad(x, ((ry, ry), (rx, rx)), mode="symmetric")
    return fftconvolve(padded, k, mode="valid").astype(np.float32)


def _to_photons(x: np.ndarray, peak_photons: float) -> np.ndarray:
    """Map the 1st percentile to 0 and the 99.9th (or the maximum, for a sparse image) to
    ``peak_photons``; clip at 0."""
    lo, hi = np.percentile(x, (1.0, 99.9))
    if not hi > lo:
        hi = x.max()
    if not hi > lo:
        return np.zeros_like(x)
    return np.maximum((x - lo) * np.float32(peak_photons / (hi - lo)), 0)


def simulate_defocus(
    image: Any,
    z_um: float,
    *,
    rng: int | np.random.Generator | None = None,
    optics: Optics | None = None,
    peak_photons: float | None = None,
    background_photons: float = 0.0,
    read_noise_e: float = 0.0,
    gain: float = 1.0,
    offset_adu: float = 0.0,
    max_adu: float | None = None,
    quantize: bool = False,
    psf: Any = None,
) -> np.ndarray:
    """Make a defocused, noisy image from an in-focus one.

    Steps: if ``peak_photons`` is given, the image is mapped to photons (its
    1st percentile to 0, its 99.9th, or its maximum when the two coincide, to
    ``peak_photons``, clipped at 0); it is
    blurred with the defocus PSF of ``z_um``; then, if ``peak_photons`` is
    given, recorded with :func:`~cytolens.simulate.add_camera_noise`.

    Parameters
    ----------
    image : array_like
        2D in-focus image.
    z_um : float
        Defocus in um.
    rng : int or numpy.random.Generator, optional
        Seed or generator for the noise.
    optics : Optics, optional
        Optics of the simulated microscope; default :class:`~cytolens.simulate.Optics` ().
    peak_photons : float, optional
        Brightness: photoelectrons at the bright end of the sample. ``None``
        returns the noise-free blurred image in the input's intensity scale.
    background_photons, read_noise_e, gain, offset_adu, max_adu, quantize
        Camera model, see :func:`~cytolens.simulate.add_camera_noise`.
    psf : array_like, optional
        A precomputed PSF (e.g. from :func:`~cytolens.simulate.defocus_psf`)
        to use instead of computing one for ``z_um`` and ``optics``.

    Returns
    -------
    numpy.ndarray of float32
        Same shape as ``image``: grey values (ADU) when ``peak_photons`` is
        given, otherwise the blurred input.

    Examples
    --------
    >>> img = np.zeros((64, 64)); img[32, 32] = 1
    >>> sharp = simulate_defocus(img, 0.0)
    >>> soft = simulate_defocus(img, 10.0)
    >>> bool(soft.max() < sharp.max()), round(float(soft.sum()), 4)
    (True, 1.0)
    >>> noisy = simulate_defocus(img, 5.0, rng=0, peak_photons=1000, offset_adu=100)
    >>> noisy.shape, noisy.dtype
    ((64, 64), dtype('float32'))
    """
    x = np.asarray(check_array(image, name="image", ndim=2), dtype=np.float32)
    if peak_photons is not None:
        if not (np.isfinite(peak_photons) and peak_photons > 0):
            raise InputError(f"peak_photons must be > 0 or None, got {peak_photons!r}")
        x = _to_photons(x, peak_photons)
    kernel = defocus_psf(z_um, optics=optics) if psf is None else psf
    out = blur(x, kernel)
    if peak_photons is None:
        return out
    return add_camera_noise(
        out,
        rng=as_rng(rng),
        background_photons=background_photons,
        read_noise_e=read_noise_e,
        gain=gain,
        offset_adu=offset_adu,
        max_adu=max_adu,
        quantize=quantize,
    )
