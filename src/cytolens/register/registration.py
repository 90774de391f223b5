"""``register``: translation by phase correlation, rigid and affine by NCC over a pyramid, in torch.

1. Start: the ``initial`` transform (or the identity), then a translation
   found by FFT phase correlation between the fixed image and the moving
   image resampled by the start, on a coarse copy (at most 64 voxels a side).
2. Refine: maximize the normalized cross-correlation (NCC) of the two images
   over an image pyramid (coarse to fine; each level averages blocks of voxels
   so that its spacing in micrometres is about twice the previous one, which
   keeps anisotropic voxels roughly cubic), with L-BFGS on parameters scaled
   so that one unit moves the image border by about one micrometre (or
   pixel): translation; rotation angle (2D) or rotation vector (3D) about
   the fixed image's centre; or a full linear part for affine. The NCC is
   computed at up to ``max_samples`` fixed voxels per level (a fixed random
   subset), sampling the moving image with :func:`torch.nn.functional.grid_sample`.
3. Report: NCC before (start = ``initial`` or identity) and after, the
   iterations, and ``converged``. A fit that hits the iteration limit or
   lowers the NCC is flagged ``converged=False`` with a warning, never
   returned as if it were good.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from cytolens.core.errors import InputError
from cytolens.core.validate import check_array, is_dask
from cytolens.register.transform import TRANSFORM_KINDS, Transform, _sizes

if TYPE_CHECKING:
    import torch

__all__ = ["RegistrationWarning", "register"]

logger = logging.getLogger(__name__)

_COARSE_SIDE = 64


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
    phase_correlation: bool = True,
    seed: int = 0,
) -> Transform:
    """Find the transform that aligns ``moving`` onto ``fixed``.

    Parameters
    ----------
    fixed, moving : numpy.ndarray or dask.array.Array
        2D ``(Y, X)`` or 3D ``(Z, Y, X)`` images with the same number of
        dimensions (shapes may differ) and the same voxel size. Dask arrays
        are computed: register a downsampled copy of images larger than memory.
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
        Fixed voxels sampled per level for the NCC.
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

    from cytolens.core.devices import resolve_device

    if transform not in TRANSFORM_KINDS:
        raise InputError(f"transform must be one of {TRANSFORM_KINDS}, got {transform!r}")
    f = _as_float(fixed, "fixed")
    m = _as_float(moving, "moving")
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
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != f.shape:
            raise InputError(f"mask has shape {mask.shape}, expected fixed's shape {f.shape}")
        if not mask.any():
            raise InputError("mask selects no voxel of the fixed image")
    if int(max_iterations) < 1 or int(max_samples) < 64:
        raise InputError("max_iterations must be >= 1 and max_samples >= 64")
    dev = resolve_device(device)
    with _single_thread_on_cpu(dev):
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
            phase_correlation,
            seed,
        )


@contextmanager
def _single_thread_on_cpu(dev: Any) -> Iterator[None]:
    """Run on one CPU thread: the NCC works on at most ``max_samples`` points per call,
    where thread start-up costs more than it saves (small tensor ops measured 40x slower
    with 2 threads than with 1 on a loaded 2-core machine)."""
    import torch

    if dev.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _register(
    f: np.ndarray,
    m: np.ndarray,
    mask: np.ndarray | None,
    transform: str,
    sizes: np.ndarray,
    units: str,
    initial: Transform,
    dev: Any,
    levels: int | None,
    max_iterations: int,
    max_samples: int,
    phase_correlation: bool,
    seed: int,
) -> Transform:
    import torch

    ndim = f.ndim
    ft = torch.as_tensor(f, device=dev)
    mt = torch.as_tensor(m, device=dev)
    mk = None if mask is None else torch.as_tensor(mask, device=dev)
    problem = _Problem(ft, mt, mk, sizes, initial.matrix, transform, seed, max_samples)

    n_levels = levels if levels is not None else _auto_levels(f.shape, sizes)
    if transform == "translation":  # phase correlation already covers the capture range
        schedule = [0] if levels is None else list(range(n_levels - 1, -1, -1))
    else:
        schedule = list(range(n_levels - 1, -1, -1))
    params = problem.zero_params()
    if phase_correlation:
        params[:ndim] = problem.phase_correlation_shift()
    ncc_before = problem.ncc_at(problem.zero_params(), level=0)
    if not math.isfinite(ncc_before):
        raise InputError(
            f"fixed (shape {f.shape}) and moving (shape {m.shape}) do not overlap under the "
            "initial transform; give an initial transform that brings them together"
        )
    iterations, converged = 0, True
    for level in schedule:
        params, n_iter, ok = problem.optimize(params, level, max_iterations)
        iterations += n_iter
        converged = ok if level == 0 else converged
    ncc_after = problem.ncc_at(params, level=0)
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
        },
    )
    if not converged:
        warnings.warn(
            f"{transform} registration did not converge (NCC {ncc_before:.3f} -> "
            f"{ncc_after:.3f} after {iterations} iterations); check the result, give a closer "
            "initial transform or more max_iterations",
            RegistrationWarning,
            stacklevel=4,
        )
    logger.info("registered: %r", result)
    return result


def _as_float(image: Any, name: str) -> np.ndarray:
    image = check_array(image, name=name, ndim=(2, 3))
    if is_dask(image):
        image = image.compute()
    image = np.asarray(image, dtype=np.float32)
    if min(image.shape) < 4:
        raise InputError(f"{name} has shape {image.shape}; registration needs >= 4 voxels per axis")
    return image


def _auto_levels(shape: tuple[int, ...], sizes: np.ndarray) -> int:
    levels = 1
    while levels < 4 and min(_factors(shape, sizes, levels)[1]) >= 16:
        levels += 1
    return levels


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


def normalized_cross_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """NCC of two equally long 1D tensors (``nan`` when either is constant)."""
    import torch

    a = a - a.mean()
    b = b - b.mean()
    den = torch.sqrt((a * a).sum() * (b * b).sum())
    return (a * b).sum() / den if float(den.detach()) > 0 else torch.full((), float("nan"))


class _Problem:
    """The images, their pyramid and the parametrization of the transform."""

    def __init__(
        self,
        fixed: torch.Tensor,
        moving: torch.Tensor,
        mask: torch.Tensor | None,
        sizes: np.ndarray,
        initial: np.ndarray,
        kind: str,
        seed: int,
        max_samples: int,
    ) -> None:
        import torch

        self.fixed, self.moving, self.mask = fixed, moving, mask
        self.ndim = fixed.ndim
        self.kind = kind
        self.sizes = sizes
        self.initial = np.array(initial, dtype=np.float64)
        self.seed, self.max_samples = seed, max_samples
        self.dev = fixed.device
        extent = (np.array(fixed.shape) - 1) * sizes
        self.center = extent / 2
        self.radius = max(float(np.linalg.norm(extent)) / 2, 1.0)
        n = self.ndim
        self.n_params = {"translation": n, "rigid": 3 if n == 2 else 6, "affine": n + n * n}[kind]
        self._levels: dict[int, tuple[torch.Tensor, torch.Tensor, Any]] = {}
        self._torch = torch

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
                k = torch.zeros(3, 3, dtype=p.dtype, device=p.device)
                k = k + torch.stack(
                    [
                        torch.stack([0 * r[0], -r[0], r[1]]),
                        torch.stack([r[0], 0 * r[0], -r[2]]),
                        torch.stack([-r[1], r[2], 0 * r[0]]),
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

    def _level(self, level: int) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Sampled fixed values, their physical coordinates and the pooled moving image."""
        if level in self._levels:
            return self._levels[level]
        torch = self._torch
        factors, _ = _factors(tuple(self.fixed.shape), self.sizes, level)
        fixed = _pool(self.fixed, factors)
        m_factors, _ = _factors(tuple(self.moving.shape), self.sizes, level)
        moving = _pool(self.moving, m_factors)
        keep = torch.ones(fixed.numel(), dtype=torch.bool, device=self.dev)
        if self.mask is not None:
            keep = _pool(self.mask.float(), factors).reshape(-1) > 0.5
        index = torch.nonzero(keep).reshape(-1)
        if index.numel() > self.max_samples:
            g = torch.Generator().manual_seed(self.seed + level)
            pick = torch.randperm(index.numel(), generator=g)[: self.max_samples]
            index = index[pick.to(self.dev)]
        coords = torch.stack(torch.unravel_index(index, fixed.shape), dim=1).to(torch.float64)
        # off-grid samples (as ITK's random sampling): on-grid ones give the NCC local maxima
        # at whole-voxel shifts, where the moving image is not interpolated
        g = torch.Generator().manual_seed(self.seed + 1000 + level)
        jitter = torch.rand(coords.shape, generator=g, dtype=torch.float64) - 0.5
        coords = coords + jitter.to(self.dev)
        from cytolens.register.resample import sample_points

        values = sample_points(fixed, coords, order=1)
        f = torch.tensor(factors, dtype=torch.float64, device=self.dev)
        s = torch.tensor(self.sizes, dtype=torch.float64, device=self.dev)
        phys = (coords * f + (f - 1) / 2) * s
        mf = torch.tensor(m_factors, dtype=torch.float64, device=self.dev)
        entry = (values, phys, (moving, mf, s))
        self._levels[level] = entry
        return entry

    def _ncc(self, p: torch.Tensor, level: int) -> torch.Tensor:
        from cytolens.register.resample import sample_points

        torch = self._torch
        values, phys, (moving, mf, s) = self._level(level)
        a, t = self._delta(p)
        n = self.ndim
        c = torch.as_tensor(self.center, dtype=p.dtype, device=p.device)
        init = torch.as_tensor(self.initial, dtype=p.dtype, device=p.device)
        x = (phys - c) @ a.T + c + t
        y = x @ init[:n, :n].T + init[:n, n]
        q = y / s / mf - (mf - 1) / (2 * mf)  # pooled moving voxel index
        sampled = sample_points(moving, q, order=1, cval=float("nan"))
        ok = torch.isfinite(sampled)
        if int(ok.sum()) < max(16, values.numel() // 20):
            return torch.full((), float("nan"), dtype=p.dtype, device=p.device)
        return normalized_cross_correlation(values[ok].to(p.dtype), sampled[ok].to(p.dtype))

    def ncc_at(self, params: np.ndarray, *, level: int) -> float:
        torch = self._torch
        with torch.no_grad():
            p = torch.as_tensor(params, dtype=torch.float64, device=self.dev)
            return float(self._ncc(p, level))

    def optimize(
        self, params: np.ndarray, level: int, max_iter: int
    ) -> tuple[np.ndarray, int, bool]:
        torch = self._torch
        p = torch.tensor(params, dtype=torch.float64, device=self.dev, requires_grad=True)
        opt = torch.optim.LBFGS(
            [p],
            lr=1.0,
            max_iter=max_iter,
            tolerance_grad=1e-7,
            tolerance_change=1e-10,
            history_size=20,
            line_search_fn="strong_wolfe",
        )

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = 1.0 - self._ncc(p, level)
            if not torch.isfinite(loss):
                loss = torch.full((), 2.0, dtype=p.dtype, device=p.device, requires_grad=True)
            loss.backward()
            return loss

        opt.step(closure)
        state = opt.state[opt._params[0]]
        n_iter = int(state.get("n_iter", 0))
        result = p.detach().cpu().numpy()
        if not np.all(np.isfinite(result)):
            return params, n_iter, False
        return result, n_iter, n_iter < max_iter

    def phase_correlation_shift(self) -> np.ndarray:
        """Translation (physical units) from phase correlation on coarse copies."""
        from cytolens.register.resample import sample_points

        torch = self._torch
        n = self.ndim
        level = 0
        while max(_factors(tuple(self.fixed.shape), self.sizes, level)[1]) > _COARSE_SIDE:
            level += 1
        factors, pooled = _factors(tuple(self.fixed.shape), self.sizes, level)
        fixed = _pool(self.fixed, factors).to(torch.float64)
        # the moving image resampled by the start transform onto the pooled fixed grid
        f = torch.tensor(factors, dtype=torch.float64, device=self.dev)
        s = torch.tensor(self.sizes, dtype=torch.float64, device=self.dev)
        grids = torch.meshgrid(
            *[torch.arange(k, dtype=torch.float64, device=self.dev) for k in pooled], indexing="ij"
        )
        coords = torch.stack([g.reshape(-1) for g in grids], dim=1)
        phys = (coords * f + (f - 1) / 2) * s
        init = torch.as_tensor(self.initial, dtype=torch.float64, device=self.dev)
        q = (phys @ init[:n, :n].T + init[:n, n]) / s
        # average the moving image over each pooled cell's footprint before sampling
        moving = _pool(self.moving, factors)
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
