"""Known-truth registration and fusion cases for tests and benchmarks.

- :func:`random_transform`: a random translation / rigid / affine transform
  about an image's centre, within given bounds.
- :func:`warped_pair`: a fixed crop of a larger scene and a moving image such
  that ``moving(T(x)) == fixed(x)`` for the true transform ``T``, both cut
  from the scene (no empty borders to cheat with).
- :func:`dual_view`: a diSPIM-like dual view of beads and spheres: view B is
  the object turned 90 degrees about Y plus a small rigid offset; each view
  is blurred by a PSF elongated along its own detection (Z) axis, with
  Poisson and read noise from :mod:`cytolens.simulate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cytolens.register.resample import transform_image
from cytolens.register.transform import Transform

__all__ = ["DualView", "dual_view", "random_transform", "textured_scene", "warped_pair"]


def textured_scene(shape: tuple[int, ...], *, sigma: float = 2.5, seed: int = 0) -> np.ndarray:
    """Smooth random texture with a few bright blobs, float32 in [0, 1].

    Examples
    --------
    >>> textured_scene((32, 32)).shape
    (32, 32)
    """
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    x = ndi.gaussian_filter(rng.random(shape), sigma)
    blobs = np.zeros(shape)
    for p in rng.integers(0, np.array(shape), (max(4, int(np.prod(shape)) // 4000), len(shape))):
        blobs[tuple(p)] = 1
    x = x + 0.5 * ndi.gaussian_filter(blobs, sigma) / max(
        ndi.gaussian_filter(blobs, sigma).max(), 1e-9
    )
    x -= x.min()
    return (x / x.max()).astype(np.float32)


def _rotation(ndim: int, angles_rad: np.ndarray) -> np.ndarray:
    if ndim == 2:
        c, s = np.cos(angles_rad[0]), np.sin(angles_rad[0])
        return np.array([[c, -s], [s, c]])
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(angles_rad).as_matrix()


def random_transform(
    kind: str,
    shape: tuple[int, ...],
    *,
    rng: Any,
    max_shift: float = 4.0,
    max_angle_deg: float = 5.0,
    max_affine: float = 0.04,
    pixel_size_um: Any = None,
) -> Transform:
    """A random transform about the centre of an image of ``shape`` (units: um if sizes given)."""
    rng = np.random.default_rng(rng)
    ndim = len(shape)
    sizes = np.ones(ndim) if pixel_size_um is None else np.broadcast_to(pixel_size_um, (ndim,))
    center = (np.array(shape) - 1) / 2 * sizes
    shift = rng.uniform(-max_shift, max_shift, ndim) * sizes
    linear = np.eye(ndim)
    if kind in ("rigid", "affine"):
        n_angles = 1 if ndim == 2 else 3
        linear = _rotation(ndim, np.deg2rad(rng.uniform(-max_angle_deg, max_angle_deg, n_angles)))
    if kind == "affine":
        linear = linear @ (np.eye(ndim) + rng.uniform(-max_affine, max_affine, (ndim, ndim)))
    units = "px" if pixel_size_um is None else "um"
    return Transform.from_linear(linear, shift, center=center, kind=kind, units=units)


def warped_pair(
    scene: np.ndarray, shape: tuple[int, ...], transform: Transform, *, pixel_size_um: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fixed = the centre crop of ``scene`` of ``shape``; moving with ``moving(T(x)) = fixed(x)``.

    Examples
    --------
    >>> scene = textured_scene((48, 48))
    >>> fixed, moving = warped_pair(scene, (32, 32), Transform.from_translation((2, 0)))
    >>> bool(np.allclose(fixed[:-2], moving[2:]))
    True
    """
    margin = [(n - m) // 2 for n, m in zip(scene.shape, shape, strict=True)]
    fixed = scene[tuple(slice(a, a + m) for a, m in zip(margin, shape, strict=True))]
    sizes = (
        np.ones(len(shape))
        if pixel_size_um is None
        else np.broadcast_to(pixel_size_um, (len(shape),))
    )
    offset = Transform.from_translation(np.array(margin) * sizes, units=transform.units)
    # moving(y) = scene(offset(T^-1(y))): then moving(T(x)) = scene(x + margin) = fixed(x)
    moving = transform_image(
        scene, offset @ transform.inverse(), shape, pixel_size_um=pixel_size_um, device="cpu"
    )
    return np.ascontiguousarray(fixed, dtype=np.float32), moving


@dataclass
class DualView:
    """A simulated dual view: truth, the two views, their PSFs and B's true transform."""

    truth: np.ndarray
    view_a: np.ndarray
    view_b: np.ndarray
    psf: np.ndarray
    transform_b: Transform
    beads: np.ndarray


def dual_view(
    shape: tuple[int, int, int] = (64, 64, 64),
    *,
    seed: int = 0,
    n_beads: int = 30,
    psf_sigma: tuple[float, float, float] = (4.0, 1.2, 1.2),
    max_angle_deg: float = 3.0,
    max_shift: float = 3.0,
    peak_photons: float = 200.0,
    read_noise: float = 2.0,
) -> DualView:
    """diSPIM-like dual view with known truth (isotropic voxels, pixel units).

    ``transform_b`` maps the common frame (view A's) to view B; it is the
    90-degree turn about Y composed with a small random rigid offset.
    """
    from scipy.signal import fftconvolve

    from cytolens.restore import gaussian_psf
    from cytolens.simulate import add_camera_noise

    rng = np.random.default_rng(seed)
    truth = np.zeros(shape, np.float32)
    beads = rng.integers(10, np.array(shape) - 10, (n_beads, 3))
    truth[tuple(beads.T)] = 1.0
    zz, yy, xx = np.indices(shape)
    for c in rng.integers(12, np.array(shape) - 12, (4, 3)):
        r = rng.uniform(3, 6)
        shell = np.abs(np.sqrt((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) - r) < 0.8
        truth[shell] += 0.05
    center = (np.array(shape) - 1) / 2
    turn = Transform.from_linear([[0, 0, 1], [0, 1, 0], [-1, 0, 0]], center=center, kind="rigid")
    offset = random_transform(
        "rigid", shape, rng=rng, max_shift=max_shift, max_angle_deg=max_angle_deg
    )
    transform_b = turn @ offset
    psf = gaussian_psf(tuple(2 * int(3 * s) + 1 for s in psf_sigma), psf_sigma)
    truth_b = transform_image(truth, transform_b.inverse(), shape, device="cpu")

    def acquire(x: np.ndarray) -> np.ndarray:
        blurred = np.clip(fftconvolve(x, psf, mode="same"), 0, None)
        expected = blurred / blurred.max() * peak_photons
        return add_camera_noise(expected, read_noise_e=read_noise, rng=rng).astype(np.float32)

    return DualView(truth, acquire(truth), acquire(truth_b), psf, transform_b, beads)
