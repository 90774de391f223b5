"""Registration, resampling, multiview fusion and tile stitching.

- :func:`register`: translation (FFT phase correlation, subpixel), rigid or
  affine (NCC over an image pyramid, L-BFGS in torch, CPU or GPU), 2D/3D,
  anisotropic voxels; returns a :class:`Transform` with its fit quality.
- :func:`transform_image`: resample through a transform, chunk by chunk
  (Dask stays lazy).
- :func:`fuse`: multiview fusion: mean, content-weighted, or joint
  Richardson-Lucy deconvolution with a Wiener-Butterworth back projector per
  view (from :mod:`cytolens.restore`).
- :func:`stitch`: tiles at stage positions -> pairwise phase correlation of
  overlaps -> global least squares with outlier rejection -> blended mosaic.

Importing this package does not import torch; it is loaded on first use.
"""

from cytolens.register.registration import RegistrationWarning, register
from cytolens.register.resample import transform_image
from cytolens.register.transform import TRANSFORM_KINDS, Transform

__all__ = [
    "TRANSFORM_KINDS",
    "RegistrationWarning",
    "Transform",
    "register",
    "transform_image",
]
