"""Camera noise: photon shot noise, read noise, gain, offset, saturation.

The model of an sCMOS/CCD camera: a pixel that expects ``s`` photoelectrons
(signal plus background) records ``Poisson(s)`` of them, the readout adds
Gaussian noise of ``read_noise_e`` electrons, the gain converts electrons to
grey values (ADU), an offset (black level) is added, and the result is clipped
to the range of the analog-to-digital converter (saturation) and optionally
rounded.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cytolens.core.errors import InputError
from cytolens.core.validate import check_array

__all__ = ["add_camera_noise", "as_rng", "poisson_noise"]


def as_rng(rng: int | np.random.Generator | None) -> np.random.Generator:
    """Turn a seed, a Generator or None into a :class:`numpy.random.Generator`.

    Examples
    --------
    >>> as_rng(0).integers(10) == as_rng(0).integers(10)
    np.True_
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise InputError(f"rng must be an int seed, a numpy Generator or None, got {rng!r}")


def poisson_noise(expected: Any, *, rng: int | np.random.Generator | None = None) -> np.ndarray:
    """Draw Poisson counts with the given expected values (photoelectrons).

    Parameters
    ----------
    expected : array_like
        Non-negative expected counts per pixel.
    rng : int or numpy.random.Generator, optional
        Seed or generator, for reproducible noise.

    Returns
    -------
    numpy.ndarray of float32
        Counts, same shape as ``expected``; mean and variance equal ``expected``.

    Examples
    --------
    >>> x = poisson_noise(np.full((200, 200), 50.0), rng=0)
    >>> bool(abs(x.mean() - 50) < 0.5 and abs(x.var() - 50) < 2)
    True
    """
    lam = np.asarray(check_array(expected, name="expected"), dtype=np.float64)
    if (lam < 0).any():
        raise InputError(
            f"expected counts must be >= 0, got a minimum of {float(lam.min()):.4g}; "
            "subtract less background or clip at 0 first"
        )
    return as_rng(rng).poisson(lam).astype(np.float32)


def add_camera_noise(
    photons: Any,
    *,
    rng: int | np.random.Generator | None = None,
    background_photons: float = 0.0,
    read_noise_e: float = 0.0,
    gain: float = 1.0,
    offset_adu: float = 0.0,
    max_adu: float | None = None,
    quantize: bool = False,
) -> np.ndarray:
    """Record an expected photon image with a camera.

    Parameters
    ----------
    photons : array_like
        Expected photoelectrons per pixel from the sample (>= 0).
    rng : int or numpy.random.Generator, optional
        Seed or generator.
    background_photons : float
        Uniform background (autofluorescence, stray light) added before the
        shot noise, photoelectrons per pixel.
    read_noise_e : float
        Standard deviation of the Gaussian read noise, electrons.
    gain : float
        Grey values (ADU) per electron.
    offset_adu : float
        Black level added after the gain, ADU.
    max_adu : float, optional
        Saturation: values are clipped to ``[0, max_adu]`` (e.g. 65535 for a
        16-bit camera, 4095 for 12-bit). ``None`` clips at 0 only.
    quantize : bool
        Round to integer grey values.

    Returns
    -------
    numpy.ndarray of float32
        ``clip(gain * (Poisson(photons + background) + N(0, read_noise_e)) + offset_adu)``.

    Examples
    --------
    >>> img = add_camera_noise(np.full((64, 64), 1e5), rng=1, offset_adu=100, max_adu=4095)
    >>> float(img.max())
    4095.0
    """
    x = np.asarray(check_array(photons, name="photons"), dtype=np.float64)
    for name, value in (
        ("background_photons", background_photons),
        ("read_noise_e", read_noise_e),
        ("gain", gain),
    ):
        if not (np.isfinite(value) and value >= 0):
            raise InputError(f"{name} must be a finite number >= 0, got {value!r}")
    if max_adu is not None and not max_adu > 0:
        raise InputError(f"max_adu must be > 0 or None, got {max_adu!r}")
    gen = as_rng(rng)
    electrons = poisson_noise(np.maximum(x, 0) + background_photons, rng=gen).astype(np.float64)
    if read_noise_e > 0:
        electrons += gen.normal(0.0, read_noise_e, size=electrons.shape)
    adu = gain * electrons + offset_adu
    np.clip(adu, 0, max_adu, out=adu)
    if quantize:
        np.rint(adu, out=adu)
    return adu.astype(np.float32)
