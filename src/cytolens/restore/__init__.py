"""Image restoration: fast deconvolution, learned denoising and point spread functions.

- :func:`deconvolve`: Richardson-Lucy with the Wiener-Butterworth back
  projector of Guo et al. (2020) or the classic one, 2D/3D, CPU/GPU, chunked
  for images larger than memory.
- :func:`back_projector`: the Wiener-Butterworth (or classic) back projector.
- :class:`NoSignalError`: what :func:`deconvolve` raises for an image with
  nothing above its background (instead of returning zeros).
- :func:`deconvolve_network` (also ``deconvolve(..., method="network")``): one
  forward pass of a 3-D network trained to reproduce Wiener-Butterworth for one
  PSF (shipped: ``decon-llsm-v1``, lattice light-sheet); train one for another
  PSF with :func:`train_deconvolver`.
- :func:`denoise`: learned denoising (CARE-style supervised or Noise2Void-style
  self-supervised models, tiled, with an applicability score); train one with
  :func:`train_denoiser`.
- PSFs: :func:`load_psf` (measured bead), :func:`theoretical_psf`
  (widefield / confocal / light-sheet), :func:`gaussian_psf`, :func:`fwhm`.

Importing this package does not import torch; it is loaded on first use.
"""

from cytolens.restore.deconvolution import DEFAULT_ITERATIONS, METHODS, NoSignalError, deconvolve
from cytolens.restore.denoise import DEFAULT_DENOISER, Restorer, denoise
from cytolens.restore.network_deconvolution import (
    DEFAULT_DECONVOLVER,
    deconvolve_network,
    train_deconvolver,
)
from cytolens.restore.psf import fwhm, gaussian_psf, load_psf, theoretical_psf
from cytolens.restore.train_denoiser import train_denoiser
from cytolens.restore.wiener_butterworth import BackProjector, back_projector

__all__ = [
    "DEFAULT_DECONVOLVER",
    "DEFAULT_DENOISER",
    "DEFAULT_ITERATIONS",
    "METHODS",
    "BackProjector",
    "NoSignalError",
    "Restorer",
    "back_projector",
    "deconvolve",
    "deconvolve_network",
    "denoise",
    "fwhm",
    "gaussian_psf",
    "load_psf",
    "theoretical_psf",
    "train_deconvolver",
    "train_denoiser",
]
