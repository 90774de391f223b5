"""Classical focus measures: the baselines of the focus benchmark and a network-free fallback.

Each measure maps a 2D image to one number that changes monotonically with blur.
They rank images of the same field well but have no absolute scale: deciding
in / out of focus with one of them needs a threshold fitted to data like the
images at hand. Definitions:

- ``variance_of_laplacian``: variance of the 4-neighbour Laplacian (Pech-Pacheco et al. 2000).
- ``brenner_gradient``: mean squared difference of pixels two apart, along
  both axes (Brenner et al. 1976).
- ``normalized_variance``: intensity variance divided by the mean (Groen et al. 1985).
- ``power_log_log_slope``: slope of the radially averaged power spectrum in
  log-log axes (Bray et al. 2012, CellProfiler's PowerLogLogSlope). Blur
  steepens a noise-free spectrum, but on noisy fluorescence images (sparse
  objects on a dark background) the measured slope often rises with blur
  instead (``benchmarks/focus.py`` finds that direction on both simulated and
  light-sheet data), so its direction must be fitted with its threshold.

:func:`focus_measures` computes all of them, the scale-dependent ones
(Laplacian, Brenner) on the image divided by its mean, so that exposure does
not change them but, unlike a percentile stretch, noise is not amplified in
dim, blurred images.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cytolens.core.validate import check_array

__all__ = [
    "MEASURES",
    "SHARPNESS_MEASURES",
    "brenner_gradient",
    "focus_measures",
    "normalized_variance",
    "power_log_log_slope",
    "variance_of_laplacian",
]


def _float2d(image: Any) -> np.ndarray:
    return np.asarray(check_array(image, name="image", ndim=2), dtype=np.float64)


def variance_of_laplacian(image: Any) -> float:
    """Variance of the Laplacian of ``image``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> sharp = rng.random((64, 64))
    >>> from scipy.ndimage import gaussian_filter
    >>> variance_of_laplacian(sharp) > variance_of_laplacian(gaussian_filter(sharp, 2))
    True
    """
    from scipy.ndimage import laplace

    return float(laplace(_float2d(image), mode="reflect").var())


def brenner_gradient(image: Any) -> float:
    """Mean squared difference between pixels two apart, averaged over both axes.

    Examples
    --------
    >>> brenner_gradient(np.ones((8, 8)))
    0.0
    """
    x = _float2d(image)
    dy = x[2:, :] - x[:-2, :]
    dx = x[:, 2:] - x[:, :-2]
    return float(0.5 * ((dy**2).mean() + (dx**2).mean()))


def normalized_variance(image: Any) -> float:
    """Variance divided by the mean intensity (NaN when the mean is not positive).

    Examples
    --------
    >>> normalized_variance(np.array([[1.0, 3.0], [1.0, 3.0]]))
    0.5
    """
    x = _float2d(image)
    mean = x.mean()
    return float(x.var() / mean) if mean > 0 else float("nan")


def power_log_log_slope(image: Any, *, fmin: float = 0.02, fmax: float = 0.5) -> float:
    """Slope of log(radial power) against log(spatial frequency).

    Parameters
    ----------
    image : array_like
        2D image.
    fmin, fmax : float
        Frequency band of the fit, in cycles per pixel (0.5 is Nyquist).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> white = rng.random((128, 128))
    >>> from scipy.ndimage import gaussian_filter
    >>> power_log_log_slope(white) > power_log_log_slope(gaussian_filter(white, 2))
    True
    """
    x = _float2d(image)
    x = x - x.mean()
    win = np.outer(np.hanning(x.shape[0]), np.hanning(x.shape[1]))
    power = np.abs(np.fft.fft2(x * win)) ** 2
    fy = np.fft.fftfreq(x.shape[0])[:, None]
    fx = np.fft.fftfreq(x.shape[1])[None, :]
    f = np.sqrt(fy**2 + fx**2)
    nbins = max(8, min(x.shape) // 2)
    edges = np.linspace(fmin, fmax, nbins + 1)
    idx = np.digitize(f.ravel(), edges) - 1
    ok = (idx >= 0) & (idx < nbins)
    counts = np.bincount(idx[ok], minlength=nbins)
    sums = np.bincount(idx[ok], weights=power.ravel()[ok], minlength=nbins)
    centres = 0.5 * (edges[1:] + edges[:-1])
    use = (counts > 0) & (sums > 0)
    if use.sum() < 2:
        return float("nan")
    slope = np.polyfit(np.log(centres[use]), np.log(sums[use] / counts[use]), 1)[0]
    return float(slope)


#: The classical measures by name. The first three are higher for a sharper image;
#: the direction of ``power_log_log_slope`` depends on the noise (see above).
MEASURES: dict[str, Callable[[Any], float]] = {
    "variance_of_laplacian": variance_of_laplacian,
    "brenner_gradient": brenner_gradient,
    "normalized_variance": normalized_variance,
    "power_log_log_slope": power_log_log_slope,
}

#: Measures that rise with sharpness on real data: the network-free best-plane methods.
SHARPNESS_MEASURES = ("variance_of_laplacian", "brenner_gradient", "normalized_variance")

_SCALE_DEPENDENT = ("variance_of_laplacian", "brenner_gradient")


def focus_measures(image: Any) -> dict[str, float]:
    """All classical measures of one image.

    The Laplacian and Brenner measures are computed on the image divided by
    its mean intensity (exposure-invariant), the others on the raw intensities.

    Examples
    --------
    >>> sorted(focus_measures(np.random.default_rng(0).random((32, 32))))
    ['brenner_gradient', 'normalized_variance', 'power_log_log_slope', 'variance_of_laplacian']
    """
    raw = _float2d(image)
    mean = raw.mean()
    scaled = raw / mean if mean > 0 else raw
    return {name: fn(scaled if name in _SCALE_DEPENDENT else raw) for name, fn in MEASURES.items()}
