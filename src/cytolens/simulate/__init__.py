"""Physically based image degradation, shared by training and tests.

- :mod:`~cytolens.simulate.psf`: defocus PSFs from scalar diffraction
  (:class:`Optics`, :func:`defocus_psf`).
- :mod:`~cytolens.simulate.noise`: camera noise (:func:`add_camera_noise`,
  :func:`poisson_noise`).
- :mod:`~cytolens.simulate.defocus`: absolute defocus levels and defocused,
  noisy images (:func:`defocus_levels`, :func:`simulate_defocus`).

Examples
--------
>>> import numpy as np
>>> from cytolens.simulate import defocus_levels, simulate_defocus
>>> z = defocus_levels()  # 11 levels, 3 px of blur diameter apart
>>> img = np.random.default_rng(0).random((96, 96))
>>> out = simulate_defocus(img, z[5], rng=0, peak_photons=500, read_noise_e=2, offset_adu=100)
>>> out.shape
(96, 96)
"""

from cytolens.simulate.defocus import blur, defocus_levels, simulate_defocus
from cytolens.simulate.noise import add_camera_noise, as_rng, poisson_noise
from cytolens.simulate.psf import Optics, defocus_psf, geometric_blur_diameter_px, psf_rms_radius

__all__ = [
    "Optics",
    "add_camera_noise",
    "as_rng",
    "blur",
    "defocus_levels",
    "defocus_psf",
    "geometric_blur_diameter_px",
    "poisson_noise",
    "psf_rms_radius",
    "simulate_defocus",
]
