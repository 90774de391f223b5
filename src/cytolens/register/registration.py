"""``register``: translation by phase correlation, rigid and affine by NCC over a pyramid, in torch.

1. Start: the ``initial`` transform (or the identity), then a translation
   found by FFT phase correlation between the fixed image and the moving
   image resampled by the start, on a coarse copy (at most 64 voxels a side).
2. Refine: maximize the normalized cross-correlation (NCC) of the two images
   over an image pyramid (coarse to fine; each level averages blocks of voxels
   so that its spacing in micrometres is about twice the previous one, which
   keeps anisotropic voxels roughly cubic), with L-BFGS-B (scipy; value and
   gradient from torch autograd) on parameters scaled so that one unit moves
   the image border by about one micrometre (or pixel): translation; rotation
   angle (2D) or rotation vector (3D) about the fixed image's centre; or a
   full linear part for affine. A level ends early once an iteration moves
   the image by less than 0.001 of that level's voxel. The NCC is computed at
   up to ``max_samples`` fixed voxels on the finest level and half as many on
   each coarser one (a fixed random subset), in float32 (sums in float64): the
   fixed points map to the sampling grid of
   :func:`torch.nn.functional.grid_sample` through one small affine map per
   evaluation. Dask input is pooled chunk by chunk; only pooled levels are
   held in memory (see ``max_voxels``). During the fit torch (on the CPU, in
   the calling thread) and the BLAS libraries of NumPy/SciPy (L-BFGS-B) run on
   one thread (scoped, restored settings:
   :func:`cytolens.core.devices.torch_threads` and
   :func:`~cytolens.core.devices.blas_threads`): each step is a few small
   operations, which threads only slow down on a busy machine (an L-BFGS-B
   iteration on 3 parameters took 5 ms with 2 OpenBLAS threads on 2 loaded
   cores, 0.1 ms with one; ``addmm`` on 32768 points 40 ms with 2 torch
   threads, under 1 ms with one).
3. Report: NCC before (start = ``initial`` or identity) and after, the
   iterations, and ``converged``. A fit that hits the iteration limit or
   lowers the NCC is flagged ``converged=False`` with a warning, never
   returned as if it were good.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from cytolens.core.errors import InputError
from cytolens.core.validate import check_array, is_dask
from cytolens.register.transform import TRANSFORM_KINDS, Transform, _sizes

if TYPE_CHECKING:
    import torch

__all__ = ["RegistrationWarning", "register"]

logger = logging.getLogger(__name__)

_COARSE_SIDE = 64
#: Early stop: an L-BFGS iteration that moves the image by less than this fraction of a
#: voxel (of the current pyramid level) ends the level.
_XTOL = 0.001


class RegistrationWarning(UserWarning):
    """A registration did not converge or made the images less similar."""


def register(
    fixed: Any,
    moving: Any,
    *,
    transform: str = "rigid",
    pixel_size_um: float | Sequence[float] | None = None,
    initial: Transform | None = None,
    mask: Any = None,
    device: str = "auto",
    levels: int | None = None,
    max_iterations: int = 100,
    max_samples: int = 2**15,
    max_voxels: int = 2**24,
    phase_correlation: bool = True,
    seed: int = 0,
) -> Transform:
    """Find the transform that aligns ``moving`` onto ``fixed``.

    Parameters
    ----------
    fixed, moving : numpy.ndarray or dask.array.Array
        2D ``(Y, X)`` or 3D ``(Z, Y, X)`` images with the same number of
        dimensions (shapes may differ) and the same voxel size. Dask arrays
        stay lazy: each pyramid level is pooled chunk by chunk and the fit
        stops at the finest level that fits ``max_voxels`` (see there).
    transform : {"translation", "rigid", "affine"}
    pixel_size_um : float or sequence of float, optional
        Voxel size, one per axis (anisotropic voxels welcome); the result is
        then in micrometres. Default: pixels.
    initial : Transform, optional
        Starting transform, e.g. the known 90-degree rotation between the two
        views of a diSPIM; the fit refines it.
    mask : array_like of bool, optional
        Fixed-image voxels to compare (``True``); shape of ``fixed``.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    levels : int, optional
        Pyramid levels (default: halve down to about 16 voxels a side, at most 4).
    max_iterations : int
        L-BFGS iterations per level.
    max_samples : int
        Fixed voxels sampled per level for the NCC (half as many on each
        coarser level).
    max_voxels : int
        Dask input only: the finest pyramid level used is the first whose
        pooled fixed and moving images have at most this many voxels each;
        that level costs ``4 * (fixed + moving pooled voxels)`` bytes of
        memory (64 MiB per image by default) plus one chunk per Dask worker
        while it is pooled; coarser levels are smaller. Registering at full
        resolution therefore needs both images in memory once.
    phase_correlation : bool
        Start from the phase-correlation translation (on by default; turn it
        off when ``initial`` is already close and the images are periodic).
    seed : int
        Seed of the voxel subset.

    Returns
    -------
    Transform
        Maps fixed-frame coordinates to moving-image coordinates, with
        ``quality``: ``ncc_before``, ``ncc_after``, ``iterations``,
        ``converged``, ``levels``.

    Raises
    ------
    InputError
        For images of different dimensionality, an unknown transform kind, a
        mask of the wrong shape or images without overlap.

    Warns
    -----
    RegistrationWarning
        When the fit does not converge or ends with a lower NCC than it
        started from (``quality["converged"]`` is then ``False``).

    Examples
    --------
    >>> from scipy import ndimage as ndi
    >>> scene = ndi.gaussian_filter(np.random.default_rng(0).random((96, 96)), 2)
    >>> fixed = scene[16:80, 16:80]
    >>> moving = ndi.shift(scene, (3.0, -2.5), order=1)[16:80, 16:80]
    >>> t = register(fixed, moving, transform="translation")
    >>> np.round(t.translation, 1).tolist(), t.converged
    ([3.0, -2.5], True)
    """

    from cytolens.core.devices import blas_threads, resolve_device, torch_threads

    if transform not in TRANSFORM_KINDS:
        raise InputError(f"transform must be one of {TRANSFORM_KINDS}, got {transform!r}")
    f = _check_image(fixed, "fixed")
    m = _check_image(moving, "moving")
    if f.ndim != m.ndim:
        raise InputError(
            f"fixed is {f.ndim}D (shape {f.shape}) but moving is {m.ndim}D (shape {m.shape}); "
            "give two 2D or two 3D images"
        )
    ndim = f.ndim
    sizes = _sizes(pixel_size_um, ndim)
    units = "px" if pixel_size_um is None else "um"
    if initial is None:
        initial = Transform.identity(ndim, units=units)
    elif not isinstance(initial, Transform) or initial.ndim != ndim:
        raise InputError(f"initial must be a {ndim}D Transform, got {initial!r}")
    elif initial.units != units:
        raise InputError(
            f"initial is in {initial.units} but pixel_size_um={pixel_size_um!r} makes the "
            f"result in {units}"
        )
    if mask is not None:
        mask = mask if is_dask(mask) else np.asarray(mask, dtype=bool)
        if tuple(mask.shape) != tuple(f.shape):
            raise InputError(f"mask has shape {mask.shape}, expected fixed's shape {f.shape}")
        if not bool(mask.any()):
            raise InputError("mask selects no voxel of the fixed image")
    if int(max_iterations) < 1 or int(max_samples) < 64 or int(max_voxels) < 64:
        raise InputError("max_iterations must be >= 1, max_samples and max_voxels >= 64")
    dev = resolve_device(device)
    scoped = torch_threads(1) if dev.type == "cpu" else nullcontext()
    with scoped, blas_threads(1):
        return _register(
            f,
            m,
            mask,
            transform,
            sizes,
            units,
            initial,
            dev,
            levels,
            int(max_iterations),
            int(max_samples),
            int(max_voxels),
            phase_correlation,
            seed,
        )


def _register(
    f: Any,
    m: Any,
    mask: Any,
    transform: str,
    sizes: np.ndarray,
    units: str,
    initial: Transform,
    dev: Any,
    levels: int | None,
    max_iterations: int,
    max_samples: int,
    max_voxels: int,
    phase_correlation: bool,
    seed: int,
) -> Transform:
    ndim = f.ndim
    problem = _Problem(f, m, mask, sizes, initial.matrix, transform, seed, max_samples, dev)
    finest = _finest_level(f, m, sizes, max_voxels)
    n_levels = levels if levels is not None else _auto_levels(f.shape, sizes)
    n_levels = max(n_levels, finest + 1)
    if transform == "translation" and levels is None:
        schedule = [finest]  # phase correlation already covers the capture range
    else:
        schedule = list(range(n_levels - 1, finest - 1, -1))
    params = problem.zero_params()
    if phase_correlation:
        params[:ndim] = problem.phase_correlation_shift(finest)
    ncc_before = problem.ncc_at(problem.zero_params(), level=finest)
    if not math.isfinite(ncc_before):
        raise InputError(
            f"fixed (shape {f.shape}) and moving (shape {m.shape}) do not overlap under the "
            "initial transform; give an initial transform that brings them together"
        )
    iterations, converged = 0, True
    for level in schedule:
        params, n_iter, ok = problem.optimize(params, level, max_iterations)
        iterations += n_iter
        converged = ok if level == finest else converged
    ncc_after = problem.ncc_at(params, level=finest)
    if not math.isfinite(ncc_after):
        converged, ncc_after = False, float("nan")
    elif ncc_after < ncc_before - 1e-4:
        converged = False
    result = Transform(
        problem.matrix(params),
        kind=transform,
        units=units,
        quality={
            "ncc_before": ncc_before,
            "ncc_after": ncc_after,
            "iterations": iterations,
            "converged": bool(converged),
            "levels": len(schedule),
            "finest_level": finest,
        },
    )
    if not converged:
        warnings.warn(
            f"{transform} registration did not converge (NCC {ncc_before:.3f} -> "
            f"{ncc_after:.3f} after {iterations} iterations); check the result, give a closer "
            "initial transform or more max_iterations",
            RegistrationWarning,
            stacklevel=3,
        )
    logger.info("registered: %r", result)
    return result


def _check_image(image: Any, name: str) -> Any:
    """Validated 2D/3D image, left as it is (NumPy or lazy Dask); pooled to float32 later."""
    image = check_array(image, name=name, ndim=(2, 3))
    if min(image.shape) < 4:
        raise InputError(f"{name} has shape {image.shape}; registration needs >= 4 voxels per axis")
    return image


def _auto_levels(shape: tuple[int, ...], sizes: np.ndarray) -> int:
    levels = 1
    while levels < 4 and min(_factors(shape, sizes, levels)[1]) >= 16:
        levels += 1
    return levels


def _finest_level(fixed: Any, moving: Any, sizes: np.ndarray, max_voxels: int) -> int:
    """Level 0 for NumPy input; for Dask input the finest level whose pooled copies fit
    ``max_voxels`` each (the pooled sizes stop shrinking once a factor reaches ``n // 4``)."""
    if not (is_dask(fixed) or is_dask(moving)):
        return 0
    level = 0
    while True:
        pooled = [int(np.prod(_factors(tuple(a.shape), sizes, level)[1])) for a in (fixed, moving)]
        if max(pooled) <= max_voxels:
            return level
        coarser = [
            int(np.prod(_factors(tuple(a.shape), sizes, level + 1)[1])) for a in (fixed, moving)
        ]
        if coarser == pooled:
            raise InputError(
                f"fixed {tuple(fixed.shape)} / moving {tuple(moving.shape)} cannot be pooled "
                f"below max_voxels={max_voxels}; raise max_voxels"
            )
        level += 1


def _factors(
    shape: tuple[int, ...], sizes: np.ndarray, level: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Per-axis pooling factors of pyramid ``level`` and the pooled shape."""
    target = sizes.min() * 2**level
    f = tuple(
        max(1, min(int(target / s + 1e-6), n // 4 or 1)) for s, n in zip(sizes, shape, strict=True)
    )
    return f, tuple(n // k for n, k in zip(shape, f, strict=True))


def _pool(x: torch.Tensor, factors: tuple[int, ...]) -> torch.Tensor:
    import torch.nn.functional as F

    if all(k == 1 for k in factors):
        return x
    pool = F.avg_pool3d if x.ndim == 3 else F.avg_pool2d
    return pool(x[None, None], kernel_size=factors, stride=factors)[0, 0]


class _Pyramid:
    """Block-mean pooled float32 copies of one image, built on first use and kept.

    NumPy input is copied to float32 once and pooled with torch. Dask input
    stays lazy: each level is pooled chunk by chunk (:func:`dask.array.coarsen`
    of the float32 chunks, stored block by block into the level's array), so
    memory holds the pooled levels plus a few chunks in flight, and the
    full-resolution image is never materialised unless level 0 is used.
    """

    def __init__(self, image: Any, dev: Any) -> None:
        self.image, self.dev = image, dev
        self._cache: dict[tuple[int, ...], torch.Tensor] = {}

    def __call__(self, factors: tuple[int, ...]) -> torch.Tensor:
        import torch

        if factors not in self._cache:
            if is_dask(self.image):
                import dask.array as da

                x = self.image.astype(np.float32)
                if any(k > 1 for k in factors):
                    axes = {a: k for a, k in enumerate(factors) if k > 1}
                    x = da.coarsen(np.mean, x, axes, trim_excess=True).astype(np.float32)
                pooled = np.empty(x.shape, np.float32)
                da.store(x, pooled, lock=False)  # block by block: no concatenated copy
                self._cache[factors] = torch.as_tensor(pooled, device=self.dev)
            else:
                ones = (1,) * self.image.ndim
                if ones not in self._cache:
                    full = np.asarray(self.image, dtype=np.float32)
                    self._cache[ones] = torch.as_tensor(full, device=self.dev)
                self._cache[factors] = _pool(self._cache[ones], factors).contiguous()
        return self._cache[factors]


def normalized_cross_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """NCC of two equally long 1D tensors (``nan`` when either is constant)."""
    import torch

    a = a - a.mean()
    b = b - b.mean()
    den = torch.sqrt((a * a).sum() * (b * b).sum())
    return (a * b).sum() / den if float(den.detach()) > 0 else torch.full((), float("nan"))


class _Level(NamedTuple):
    """One pyramid level: sampled fixed values, their centred physical coordinates, the
    pooled moving image and the map from moving-frame coordinates to its sampling grid."""

    values: torch.Tensor  # (N,) float32
    phys: torch.Tensor  # (N, ndim) float32, fixed-frame micrometres minus the centre
    moving: torch.Tensor  # pooled moving image, float32
    scale: torch.Tensor  # (ndim,) float64: grid = scale * y + shift, per axis (Z, Y, X order)
    shift: torch.Tensor
    limit: torch.Tensor  # (ndim,) float32, X, Y(, Z) order: |grid| <= limit is inside


class _Problem:
    """The images, their pyramid and the parametrization of the transform."""

    def __init__(
        self,
        fixed: Any,
        moving: Any,
        mask: Any,
        sizes: np.ndarray,
        initial: np.ndarray,
        kind: str,
        seed: int,
        max_samples: int,
        dev: Any,
    ) -> None:
        import torch

        self.fixed = _Pyramid(fixed, dev)
        self.moving = _Pyramid(moving, dev)
        self.mask = None if mask is None else _Pyramid(mask, dev)
        self.fixed_shape, self.moving_shape = tuple(fixed.shape), tuple(moving.shape)
        self.ndim = fixed.ndim
        self.kind = kind
        self.sizes = sizes
        self.initial = np.array(initial, dtype=np.float64)
        self.seed, self.max_samples = seed, max_samples
        self.dev = dev
        extent = (np.array(fixed.shape) - 1) * sizes
        self.center = extent / 2
        self.radius = max(float(np.linalg.norm(extent)) / 2, 1.0)
        n = self.ndim
        self.n_params = {"translation": n, "rigid": 3 if n == 2 else 6, "affine": n + n * n}[kind]
        self._levels: dict[int, _Level] = {}
        self._torch = torch
        init = torch.as_tensor(self.initial, dtype=torch.float64, device=dev)
        self._init_linear, self._init_shift = init[:n, :n], init[:n, n]
        self._center = torch.as_tensor(self.center, dtype=torch.float64, device=dev)

    def zero_params(self) -> np.ndarray:
        return np.zeros(self.n_params)

    def _delta(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Linear part and translation of the refinement (about the centre) from parameters."""
        torch = self._torch
        n = self.ndim
        t = p[:n]
        eye = torch.eye(n, dtype=p.dtype, device=p.device)
        if self.kind == "translation":
            a = eye
        elif self.kind == "rigid":
            r = p[n:] / self.radius
            if n == 2:
                c, s = torch.cos(r[0]), torch.sin(r[0])
                a = torch.stack([torch.stack([c, -s]), torch.stack([s, c])])
            else:
                zero = 0 * r[0]
                k = torch.stack(
                    [
                        torch.stack([zero, -r[0], r[1]]),
                        torch.stack([r[0], zero, -r[2]]),
                        torch.stack([-r[1], r[2], zero]),
                    ]
                )
                a = torch.linalg.matrix_exp(k)
        else:
            a = eye + p[n:].reshape(n, n) / self.radius
        return a, t

    def matrix(self, params: np.ndarray) -> np.ndarray:
        """Full homogeneous matrix (physical units): ``initial @ delta``."""
        torch = self._torch
        a, t = self._delta(torch.as_tensor(params, dtype=torch.float64))
        a = a.numpy()
        n = self.ndim
        delta = np.eye(n + 1)
        delta[:n, :n] = a
        delta[:n, n] = self.center - a @ self.center + t.numpy()
        return self.initial @ delta

    def _level(self, level: int) -> _Level:
        """Sampled fixed values, their physical coordinates and the pooled moving image."""
        if level in self._levels:
            return self._levels[level]
        torch = self._torch
        dev = self.dev
        factors, _ = _factors(self.fixed_shape, self.sizes, level)
        fixed = self.fixed(factors)
        m_factors, _ = _factors(self.moving_shape, self.sizes, level)
        moving = self.moving(m_factors)
        if self.mask is None:
            index = torch.arange(fixed.numel(), device=dev)
        else:
            index = torch.nonzero(self.mask(factors).reshape(-1) > 0.5).reshape(-1)
        n_samples = max(64, self.max_samples >> level)  # coarse levels: fewer, cheaper samples
        if index.numel() > n_samples:
            g = torch.Generator().manual_seed(self.seed + level)
            pick = torch.randperm(index.numel(), generator=g)[:n_samples]
            index = index[pick.to(dev)]
        coords = torch.stack(torch.unravel_index(index, fixed.shape), dim=1).to(torch.float64)
        # off-grid samples (as ITK's random sampling): on-grid ones give the NCC local maxima
        # at whole-voxel shifts, where the moving image is not interpolated
        g = torch.Generator().manual_seed(self.seed + 1000 + level)
        jitter = torch.rand(coords.shape, generator=g, dtype=torch.float64) - 0.5
        coords = coords + jitter.to(dev)
        from cytolens.register.resample import sample_points

        values = sample_points(fixed, coords, order=1).float()

        def vec(v: Any) -> torch.Tensor:
            return torch.as_tensor(np.asarray(v, dtype=np.float64), device=dev)

        f, s, mf = vec(factors), vec(self.sizes), vec(m_factors)
        phys = ((coords * f + (f - 1) / 2) * s - self._center).float().contiguous()
        # moving-frame micrometres y -> pooled voxel index q = y / (s mf) - (mf - 1) / (2 mf)
        # -> grid_sample's [-1, 1] (align_corners=True): 2 q / (size - 1) - 1
        denom = torch.clamp(vec(moving.shape) - 1, min=1)
        entry = _Level(
            values,
            phys,
            moving,
            2 / (s * mf * denom),
            -(mf - 1) / (mf * denom) - 1,
            (1 + 1 / denom).flip(0).float(),  # within half a voxel of the border
        )
        self._levels[level] = entry
        return entry

    def _ncc(self, p: torch.Tensor, level: int) -> torch.Tensor:
        """NCC (float64 scalar, differentiable in ``p``) of the fixed samples and the moving
        image at their transformed positions; ``nan`` when too few samples fall inside it.

        The whole chain from a fixed point to grid_sample's coordinates is one small affine
        map built from ``p`` (float64), applied to the float32 points with one ``addmm``.
        """
        import torch.nn.functional as F

        torch = self._torch
        lv = self._level(level)
        n = self.ndim
        a, t = self._delta(p)
        linear = self._init_linear @ a
        offset = self._init_linear @ (self._center + t) + self._init_shift
        g_lin = (lv.scale[:, None] * linear).flip(0).float()  # grid_sample wants x, y(, z)
        g_off = (lv.scale * offset + lv.shift).flip(0).float()
        grid = torch.addmm(g_off, lv.phys, g_lin.T)
        with torch.no_grad():
            w = (grid.abs() <= lv.limit).all(dim=1).float()
        count = float(w.sum())
        if count < max(16, lv.values.numel() // 20):
            return torch.full((), float("nan"), dtype=p.dtype, device=p.device)
        sampled = F.grid_sample(
            lv.moving[None, None],
            grid.reshape((1,) * n + (-1, n)),
            mode="bilinear",
            padding_mode="border",
            align_corners=True,
        ).reshape(-1)
        fa = lv.values - (lv.values * w).sum() / count
        fa = fa * w
        sb = sampled - (sampled * w).sum() / count
        num = (fa * sb).sum(dtype=torch.float64)
        den = torch.sqrt(
            (fa * fa).sum(dtype=torch.float64) * (sb * sb * w).sum(dtype=torch.float64)
        )
        if not float(den.detach()) > 0:
            return torch.full((), float("nan"), dtype=p.dtype, device=p.device)
        return num / den

    def ncc_at(self, params: np.ndarray, *, level: int) -> float:
        torch = self._torch
        with torch.no_grad():
            p = torch.as_tensor(params, dtype=torch.float64, device=self.dev)
            return float(self._ncc(p, level))

    def optimize(
        self, params: np.ndarray, level: int, max_iter: int
    ) -> tuple[np.ndarray, int, bool]:
        """L-BFGS-B (scipy) on ``1 - NCC`` with torch gradients; stops early once an
        iteration moves no point of the image by more than ``_XTOL`` of a voxel of the level."""
        from scipy.optimize import minimize

        torch = self._torch
        factors, _ = _factors(self.fixed_shape, self.sizes, level)
        xtol = _XTOL * float(np.min(np.asarray(factors) * self.sizes))

        def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
            p = torch.tensor(x, dtype=torch.float64, device=self.dev, requires_grad=True)
            ncc = self._ncc(p, level)
            if not bool(torch.isfinite(ncc)):
                return 2.0, np.zeros_like(x)
            loss = 1.0 - ncc
            loss.backward()
            return float(loss.detach()), p.grad.detach().cpu().numpy()

        last = [np.array(params, dtype=np.float64)]

        def small_step(intermediate_result: Any) -> None:
            x = intermediate_result.x
            step = float(np.max(np.abs(x - last[0])))
            last[0] = np.array(x)
            if step < xtol:
                raise StopIteration

        res = minimize(
            fun,
            np.asarray(params, dtype=np.float64),
            jac=True,
            method="L-BFGS-B",
            callback=small_step,
            options={"maxiter": max_iter, "maxfun": 4 * max_iter + 20, "maxcor": 20},
        )
        result = np.asarray(res.x, dtype=np.float64)
        n_iter = int(res.nit)
        if not np.all(np.isfinite(result)):
            return params, n_iter, False
        return result, n_iter, res.status != 1

    def phase_correlation_shift(self, finest: int = 0) -> np.ndarray:
        """Translation (physical units) from phase correlation on coarse copies."""
        from cytolens.register.resample import sample_points

        torch = self._torch
        level = finest
        while max(_factors(self.fixed_shape, self.sizes, level)[1]) > _COARSE_SIDE:
            level += 1
        factors, pooled = _factors(self.fixed_shape, self.sizes, level)
        fixed = self.fixed(factors).to(torch.float64)
        # the moving image resampled by the start transform onto the pooled fixed grid
        f = torch.tensor(factors, dtype=torch.float64, device=self.dev)
        s = torch.tensor(self.sizes, dtype=torch.float64, device=self.dev)
        grids = torch.meshgrid(
            *[torch.arange(k, dtype=torch.float64, device=self.dev) for k in pooled], indexing="ij"
        )
        coords = torch.stack([g.reshape(-1) for g in grids], dim=1)
        phys = (coords * f + (f - 1) / 2) * s
        q = (phys @ self._init_linear.T + self._init_shift) / s
        # average the moving image over each pooled cell's footprint before sampling
        moving = self.moving(factors)
        qm = q / f - (f - 1) / (2 * f)
        resampled = sample_points(moving, qm, order=1, cval=float("nan")).reshape(pooled)
        shift_px = phase_correlation(fixed, resampled.to(torch.float64))
        shift = torch.as_tensor(shift_px, dtype=torch.float64) * f.cpu() * s.cpu()
        # shift is in the (un-rotated) fixed frame: exactly the translation of delta
        return shift.numpy()


def phase_correlation(fixed: Any, moving: Any) -> np.ndarray:
    """Shift ``t`` (pixels, subpixel by a parabola fit) such that ``moving(x + t) ~ fixed(x)``.

    NaN voxels (outside the field of view) count as the mean. Both inputs are
    torch tensors or arrays of the same shape.

    Examples
    --------
    >>> from scipy import ndimage as ndi
    >>> a = ndi.gaussian_filter(np.random.default_rng(1).random((48, 48)), 2)
    >>> phase_correlation(a, ndi.shift(a, (4, -3))).round().tolist()
    [4.0, -3.0]
    """
    import torch

    f = torch.as_tensor(np.asarray(fixed) if not isinstance(fixed, torch.Tensor) else fixed)
    m = torch.as_tensor(np.asarray(moving) if not isinstance(moving, torch.Tensor) else moving)
    f, m = f.to(torch.float64), m.to(torch.float64)
    window = _hann(f.shape, f.device)

    def prep(x: torch.Tensor) -> torch.Tensor:
        ok = torch.isfinite(x)
        mean = x[ok].mean() if bool(ok.any()) else torch.zeros((), dtype=x.dtype)
        x = torch.where(ok, x, mean)
        return (x - mean) * window

    ff = torch.fft.fftn(prep(f))
    fm = torch.fft.fftn(prep(m))
    cross = fm * torch.conj(ff)
    cross = cross / (cross.abs() + 1e-3 * cross.abs().max() + 1e-30)
    corr = torch.fft.ifftn(cross).real
    peak = np.unravel_index(int(torch.argmax(corr)), tuple(corr.shape))
    c = corr.cpu().numpy()
    shift = []
    for axis, (i, n) in enumerate(zip(peak, c.shape, strict=True)):
        lo = list(peak)
        hi = list(peak)
        lo[axis] = (i - 1) % n
        hi[axis] = (i + 1) % n
        y0, y1, y2 = c[tuple(lo)], c[peak], c[tuple(hi)]
        den = y0 - 2 * y1 + y2
        frac = 0.5 * (y0 - y2) / den if den < 0 else 0.0
        frac = float(np.clip(frac, -0.5, 0.5))
        signed = i if i <= n // 2 else i - n
        shift.append(signed + frac)
    return np.array(shift)


def _hann(shape: tuple[int, ...], device: Any) -> torch.Tensor:
    import torch

    w = torch.ones(shape, dtype=torch.float64, device=device)
    for axis, n in enumerate(shape):
        h = (
            torch.hann_window(n, periodic=False, dtype=torch.float64, device=device)
            if n > 2
            else (torch.ones(n, dtype=torch.float64, device=device))
        )
        w = w * h.reshape([-1 if a == axis else 1 for a in range(len(shape))])
    return w
