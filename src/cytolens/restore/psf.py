"""Point spread functions: load a measured one, make a theoretical one, measure its FWHM.

Every PSF returned here is float32, non-negative, sums to 1 and has its peak at
index ``n // 2`` along each axis (the convention of :func:`numpy.fft.ifftshift`),
which is what :func:`cytolens.restore.deconvolve` expects.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from cytolens.core.errors import InputError
from cytolens.core.validate import check_array

__all__ = ["PSF_KINDS", "fwhm", "gaussian_psf", "load_psf", "theoretical_psf"]

logger = logging.getLogger(__name__)

#: Kinds of theoretical PSF (``kind`` of :func:`theoretical_psf`).
PSF_KINDS = ("widefield", "confocal", "lightsheet")
_MODELS = ("vectorial", "scalar", "gaussian")


def load_psf(
    path_or_array: Any,
    *,
    background: str | float | None = "auto",
    noise_sigmas: float = 3.0,
    crop: int | Sequence[int] | None = None,
    center: bool = True,
) -> np.ndarray:
    """Prepare a measured PSF (a bead image) for deconvolution.

    Steps, in order: subtract the background; suppress the noise floor (set
    to 0 every voxel below ``noise_sigmas`` times the noise level, then every
    voxel outside the connected bright region that holds the peak); find the
    peak (the maximum of a copy smoothed with a Gaussian of sigma 1 voxel, so
    a hot pixel is not taken for it); cut a window centred on that peak;
    normalise to sum 1.

    The noise step matters: clipping background-subtracted camera noise at 0
    leaves about 0.4 sigma per voxel, which over a whole bead stack can hold
    more flux than the bead itself (3x on the lattice light-sheet PSF in the
    shared data).

    Parameters
    ----------
    path_or_array : str, os.PathLike or array_like
        A 2D or 3D image of a single point source, or a file read with
        :func:`cytolens.io.imread` (any camera dtype; it is never rescaled).
    background : "auto", float or None
        ``"auto"`` subtracts the median of the array's outer faces (the camera
        offset plus diffuse background of a bead image); a number subtracts
        that value; ``None`` subtracts nothing.
    noise_sigmas : float
        Threshold of the noise step in units of the noise standard deviation,
        estimated as 1.4826 x the median absolute deviation of the outer
        faces. 0 disables the step (use it for a noise-free PSF whose rings
        are separated by dark gaps).
    crop : int or sequence of int, optional
        Shape of the returned PSF, centred on the peak (one int for all
        axes). Parts outside the input are filled with 0. Default: the largest
        odd-sized window centred on the peak that fits inside the input.
    center : bool
        When False, keep the input's geometry: no re-centring and no cropping
        (``crop`` must then be None).

    Returns
    -------
    numpy.ndarray of float32
        Non-negative, sums to 1, peak at index ``n // 2`` along each axis.

    Raises
    ------
    InputError
        For a PSF that is not 2D/3D, contains NaN or infinity, or has no signal
        above the background.

    Examples
    --------
    >>> bead = np.full((9, 9), 100.0)
    >>> bead[3, 5] += 50
    >>> psf = load_psf(bead)
    >>> psf.shape, float(psf.sum()), np.unravel_index(psf.argmax(), psf.shape)
    ((7, 7), 1.0, (np.int64(3), np.int64(3)))
    """
    name = "psf"
    if isinstance(path_or_array, (str, os.PathLike)):
        from cytolens.io import imread

        name = f"psf file {os.fspath(path_or_array)!r}"
        path_or_array = np.asarray(imread(path_or_array).data)
    arr = check_array(path_or_array, name=name, ndim=(2, 3))
    psf = np.asarray(arr, dtype=np.float64)
    if isinstance(background, str):
        if background != "auto":
            raise InputError(f"background must be 'auto', a number or None, got {background!r}")
        background = float(np.median(_border(psf)))
    if background:
        psf = psf - float(background)
    if noise_sigmas < 0:
        raise InputError(f"noise_sigmas must be >= 0, got {noise_sigmas!r}")
    border = _border(psf)
    sigma = 1.4826 * float(np.median(np.abs(border - np.median(border))))
    if noise_sigmas > 0 and sigma > 0:
        psf = _keep_peak_region(psf, noise_sigmas * sigma)
    np.clip(psf, 0, None, out=psf)
    if not psf.max() > 0:
        raise InputError(
            f"{name} has no signal above the background ({background!r}): every value is "
            f"<= 0 after subtracting it; check the file, or pass background=None"
        )
    if center:
        from scipy.ndimage import gaussian_filter

        peak = np.unravel_index(np.argmax(gaussian_filter(psf, 1.0)), psf.shape)
        psf = _window(psf, peak, _crop_shape(crop, psf.shape, peak))
    elif crop is not None:
        raise InputError("crop needs center=True (the window is centred on the peak)")
    total = psf.sum()
    if not total > 0:
        raise InputError(f"{name} has no signal inside the crop window {psf.shape}")
    return (psf / total).astype(np.float32)


def _keep_peak_region(psf: np.ndarray, threshold: float) -> np.ndarray:
    """Zero voxels below ``threshold`` and outside the bright region connected to the maximum."""
    from scipy import ndimage as ndi

    mask = psf >= threshold
    if not mask.any():
        return np.zeros_like(psf)
    labels, _ = ndi.label(mask, structure=np.ones((3,) * psf.ndim, dtype=bool))
    peak = np.unravel_index(np.argmax(psf), psf.shape)
    return np.where(labels == labels[peak], psf, 0.0)


def _border(a: np.ndarray) -> np.ndarray:
    """The values on the outer faces of ``a``."""
    faces = []
    for ax in range(a.ndim):
        faces.append(np.take(a, [0, a.shape[ax] - 1], axis=ax).ravel())
    return np.concatenate(faces)


def _crop_shape(
    crop: int | Sequence[int] | None, shape: tuple[int, ...], peak: tuple[int, ...]
) -> tuple[int, ...]:
    if crop is None:
        return tuple(2 * min(p, n - 1 - p) + 1 for p, n in zip(peak, shape, strict=True))
    crop = (int(crop),) * len(shape) if np.isscalar(crop) else tuple(int(c) for c in crop)
    if len(crop) != len(shape) or min(crop) < 1:
        raise InputError(
            f"crop {crop} must give one positive size per PSF axis ({len(shape)} axes)"
        )
    return crop


def _window(a: np.ndarray, center: Sequence[int], shape: Sequence[int]) -> np.ndarray:
    """The ``shape`` window of ``a`` with ``center`` at index ``n // 2``, zero outside ``a``."""
    out = np.zeros(tuple(shape), dtype=a.dtype)
    src, dst = [], []
    for c, n, m in zip(center, shape, a.shape, strict=True):
        start = int(c) - n // 2
        lo, hi = max(start, 0), min(start + n, m)
        src.append(slice(lo, hi))
        dst.append(slice(lo - start, hi - start))
    out[tuple(dst)] = a[tuple(src)]
    return out


def gaussian_psf(shape: Sequence[int], sigma: float | Sequence[float]) -> np.ndarray:
    """A sampled Gaussian PSF, peak at ``n // 2``, sum 1.

    Parameters
    ----------
    shape : sequence of int
        Output shape (2 or 3 axes; odd sizes keep the PSF symmetric).
    sigma : float or sequence of float
        Standard deviation in pixels, one for all axes or one per axis
        (FWHM = 2.3548 sigma).

    Examples
    --------
    >>> p = gaussian_psf((5, 5), 1.0)
    >>> p.dtype, round(float(p.sum()), 6), p.argmax()
    (dtype('float32'), 1.0, np.int64(12))
    """
    shape = tuple(int(s) for s in shape)
    sigmas = _per_axis(sigma, len(shape), "sigma")
    psf = np.ones(shape, dtype=np.float64)
    for ax, (n, s) in enumerate(zip(shape, sigmas, strict=True)):
        x = np.arange(n) - n // 2
        prof = np.exp(-0.5 * (x / s) ** 2) if s > 0 else (x == 0).astype(float)
        psf = psf * prof.reshape([-1 if i == ax else 1 for i in range(len(shape))])
    return (psf / psf.sum()).astype(np.float32)


def _per_axis(value: float | Sequence[float], ndim: int, name: str) -> tuple[float, ...]:
    vals = (float(value),) * ndim if np.isscalar(value) else tuple(float(v) for v in value)
    if len(vals) != ndim:
        raise InputError(f"{name} {value!r} must give 1 or {ndim} values (one per axis)")
    if any(not (v >= 0 and math.isfinite(v)) for v in vals):
        raise InputError(f"{name} {value!r} must be finite and >= 0")
    return vals


def theoretical_psf(
    shape: Sequence[int],
    *,
    na: float,
    wavelength_um: float,
    voxel_size_um: float | Sequence[float],
    refractive_index: float = 1.33,
    kind: str = "widefield",
    excitation_wavelength_um: float | None = None,
    sheet_fwhm_um: float | None = None,
    sample_refractive_index: float | None = None,
    depth_um: float = 0.0,
    model: str = "vectorial",
) -> np.ndarray:
    """A theoretical PSF of a widefield, confocal or light-sheet microscope.

    The widefield (detection) PSF comes from :mod:`psfmodels`: the vectorial
    model of Aguet et al. (2009) by default, the scalar Gibson-Lanni model with
    ``model="scalar"``. The objective is assumed to be used as designed
    (immersion index = design index = ``refractive_index``); a different
    ``sample_refractive_index`` with ``depth_um > 0`` adds the matching
    depth-dependent spherical aberration.

    - ``"widefield"``: the detection PSF at ``wavelength_um`` (emission).
    - ``"confocal"``: excitation PSF x detection PSF (a pinhole much smaller
      than one Airy unit).
    - ``"lightsheet"``: detection PSF x a Gaussian sheet profile along Z with
      full width at half maximum ``sheet_fwhm_um``.

    Parameters
    ----------
    shape : sequence of int
        ``(Y, X)`` for the in-focus plane, or ``(Z, Y, X)``.
    na : float
        Numerical aperture of the detection objective, ``0 < na < refractive_index``.
    wavelength_um : float
        Emission wavelength in micrometres, e.g. 0.52.
    voxel_size_um : float or sequence of float
        Voxel size in micrometres, one value per axis of ``shape`` (or one for
        all). Y and X must be equal.
    refractive_index : float
        Immersion medium index: 1.33 water, 1.515 oil.
    kind : {"widefield", "confocal", "lightsheet"}
    excitation_wavelength_um : float, optional
        Confocal excitation wavelength; default ``wavelength_um``.
    sheet_fwhm_um : float, optional
        Light-sheet thickness (FWHM along Z); required for ``"lightsheet"``.
    sample_refractive_index : float, optional
        Index of the sample; default ``refractive_index`` (no aberration).
    depth_um : float
        Depth of the focal plane below the coverslip, micrometres.
    model : {"vectorial", "scalar", "gaussian"}
        The :mod:`psfmodels` model.

    Returns
    -------
    numpy.ndarray of float32
        Sum 1, peak at index ``n // 2`` along each axis.

    Examples
    --------
    >>> psf = theoretical_psf((33, 33), na=0.8, wavelength_um=0.5, voxel_size_um=0.05)
    >>> fw = fwhm(psf, voxel_size_um=0.05)[1]
    >>> bool(abs(fw - 0.51 * 0.5 / 0.8) < 0.15 * 0.51 * 0.5 / 0.8)
    True
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise InputError(f"shape {shape} must be 2D (Y, X) or 3D (Z, Y, X) with sizes >= 1")
    if kind not in PSF_KINDS:
        raise InputError(f"unknown PSF kind {kind!r}; expected one of {', '.join(PSF_KINDS)}")
    if model not in _MODELS:
        raise InputError(f"unknown PSF model {model!r}; expected one of {', '.join(_MODELS)}")
    voxel = _per_axis(voxel_size_um, len(shape), "voxel_size_um")
    if min(voxel) <= 0:
        raise InputError(f"voxel_size_um {voxel_size_um!r} must be > 0")
    if not math.isclose(voxel[-1], voxel[-2], rel_tol=1e-6):
        raise InputError(
            f"voxel_size_um {voxel_size_um!r}: Y and X sizes must be equal "
            f"(got {voxel[-2]} and {voxel[-1]}); resample the image first"
        )
    for label, value in (("wavelength_um", wavelength_um), ("refractive_index", refractive_index)):
        if not (value > 0 and math.isfinite(value)):
            raise InputError(f"{label} must be > 0, got {value!r}")
    if not 0 < na < refractive_index:
        raise InputError(
            f"na {na!r} must be > 0 and below the refractive index {refractive_index!r}"
        )
    dz = voxel[0] if len(shape) == 3 else 1.0
    nz = shape[0] if len(shape) == 3 else 1
    z_um = (np.arange(nz) - nz // 2) * dz
    ns = refractive_index if sample_refractive_index is None else sample_refractive_index
    common = dict(
        z_um=z_um,
        nyx=shape[-2:],
        dxy=voxel[-1],
        na=na,
        ni=refractive_index,
        ns=ns,
        depth_um=depth_um,
        model=model,
    )
    psf = _detection_psf(wavelength_um=wavelength_um, **common)
    if kind == "confocal":
        ex = excitation_wavelength_um or wavelength_um
        psf = psf * _detection_psf(wavelength_um=ex, **common)
    elif kind == "lightsheet":
        if sheet_fwhm_um is None or not sheet_fwhm_um > 0:
            raise InputError(
                f"kind='lightsheet' needs sheet_fwhm_um > 0 (the sheet thickness), "
                f"got {sheet_fwhm_um!r}"
            )
        sheet = np.exp(-4 * math.log(2) * (z_um / sheet_fwhm_um) ** 2)
        psf = psf * sheet[:, None, None]
    psf = psf.reshape(shape)
    return (psf / psf.sum()).astype(np.float32)


def _detection_psf(
    *,
    z_um: np.ndarray,
    nyx: tuple[int, int],
    dxy: float,
    na: float,
    wavelength_um: float,
    ni: float,
    ns: float,
    depth_um: float,
    model: str,
) -> np.ndarray:
    """Widefield PSF ``(Z, Y, X)`` from psfmodels, peak at ``n // 2``, max 1."""
    import psfmodels

    n = max(nyx)
    nx = n + 1 if n % 2 == 0 else n  # psfmodels wants an odd lateral size
    psf = psfmodels.make_psf(
        [float(z) for z in z_um + depth_um],
        nx,
        dxy=dxy,
        pz=depth_um,
        NA=na,
        wvl=wavelength_um,
        ns=ns,
        ni=ni,
        ni0=ni,
        model=model,
    )
    psf = np.asarray(psf, dtype=np.float64).reshape(len(z_um), nx, nx)
    c = nx // 2
    return psf[
        :, c - nyx[0] // 2 : c - nyx[0] // 2 + nyx[0], c - nyx[1] // 2 : c - nyx[1] // 2 + nyx[1]
    ]


def fwhm(psf: Any, voxel_size_um: float | Sequence[float] | None = None) -> tuple[float, ...]:
    """Full width at half maximum of a PSF along each axis, through its peak.

    Each profile through the brightest voxel is interpolated linearly at half
    the peak value on both sides; the background is not subtracted (pass a
    PSF from :func:`load_psf`).

    Parameters
    ----------
    psf : array_like
        2D or 3D PSF.
    voxel_size_um : float or sequence of float, optional
        When given, widths are in micrometres, else in pixels.

    Returns
    -------
    tuple of float
        One width per axis (in array order, e.g. Z, Y, X); NaN where the
        profile does not fall below half the peak on both sides.

    Examples
    --------
    >>> [round(w, 2) for w in fwhm(gaussian_psf((31, 31), (2.0, 4.0)))]
    [4.76, 9.43]
    """
    p = np.asarray(check_array(psf, name="psf", ndim=(1, 2, 3)), dtype=np.float64)
    scale = (
        (1.0,) * p.ndim
        if voxel_size_um is None
        else _per_axis(voxel_size_um, p.ndim, "voxel_size_um")
    )
    peak = np.unravel_index(np.argmax(p), p.shape)
    half = p[peak] / 2
    widths = []
    for ax in range(p.ndim):
        idx = list(peak)
        idx[ax] = slice(None)
        prof = p[tuple(idx)]
        c = peak[ax]
        left = _crossing(prof[c::-1], half)
        right = _crossing(prof[c:], half)
        widths.append((left + right) * scale[ax])
    return tuple(float(w) for w in widths)


def _crossing(prof: np.ndarray, half: float) -> float:
    """Distance from ``prof[0]`` (the peak) to where ``prof`` first drops to ``half``."""
    below = np.nonzero(prof <= half)[0]
    if below.size == 0:
        return math.nan
    i = int(below[0])
    return (i - 1) + (prof[i - 1] - half) / (prof[i - 1] - prof[i])
