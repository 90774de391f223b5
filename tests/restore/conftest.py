"""Small synthetic images and PSFs for the restore tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy.signal import fftconvolve

from cytolens.restore import gaussian_psf


def _blur(obj: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """Linear convolution (the object is zero outside the array), float32, >= 0."""
    return np.clip(fftconvolve(obj, psf / psf.sum(), mode="same"), 0, None).astype(np.float32)


def _beads(shape: tuple[int, ...], n: int, *, margin: int, seed: int = 0) -> np.ndarray:
    """Point sources of random brightness, at least ``margin`` pixels from every edge."""
    rng = np.random.default_rng(seed)
    obj = np.zeros(shape, np.float32)
    for _ in range(n):
        idx = tuple(int(rng.integers(margin, s - margin)) for s in shape)
        obj[idx] += rng.uniform(200, 1000)
    return obj


@pytest.fixture(scope="session")
def blur() -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``blur(obj, psf)``: linear convolution with the normalized PSF."""
    return _blur


@pytest.fixture(scope="session")
def beads() -> Callable[..., np.ndarray]:
    """``beads(shape, n, margin=, seed=)``: random point sources."""
    return _beads


@pytest.fixture(scope="module")
def sparse3d() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(object, noisy blurred image, PSF): beads in 32x96x96 with Poisson noise."""
    psf = gaussian_psf((9, 9, 9), (2.0, 1.2, 1.2))
    obj = _beads((32, 96, 96), 120, margin=0, seed=1)
    rng = np.random.default_rng(2)
    image = rng.poisson(_blur(obj, psf) + 2.0).astype(np.float32) - 2.0
    return obj, image, psf
