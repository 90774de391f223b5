"""``deconvolve``: Richardson-Lucy with a classic or a Wiener-Butterworth back projector.

The public entry point of :mod:`cytolens.restore`. It validates the inputs,
pads the image against wrap-around, runs the torch iteration of
:mod:`cytolens.restore.richardson_lucy` on the chosen device, and for large or
lazy images goes through the core tiling engine chunk by chunk.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from cytolens.core.errors import InputError
from cytolens.core.progress import progress_reporter
from cytolens.core.validate import check_array, is_dask
from cytolens.restore.wiener_butterworth import BackProjector, back_projector

__all__ = ["DEFAULT_ITERATIONS", "METHODS", "NoSignalError", "deconvolve"]

logger = logging.getLogger(__name__)

#: Deconvolution methods: the back projector used inside Richardson-Lucy.
METHODS = ("wiener-butterworth", "richardson-lucy")
#: Iterations used when ``iterations=None``.
DEFAULT_ITERATIONS = {"wiener-butterworth": 2, "richardson-lucy": 30}
_PADS = ("reflect", "edge", "none")
_INITS = ("observed", "flat")
_ACCELERATIONS = (None, "biggs-andrews")


class NoSignalError(InputError):
    """The image has no positive value left once the background is subtracted.

    Richardson-Lucy on such an image returns zeros everywhere: silent garbage,
    so :func:`deconvolve` refuses it.

    Parameters
    ----------
    maximum : float
        The image's maximum, before subtracting the background.
    background : float
        The background (camera offset) that was to be subtracted.
    """

    def __init__(self, maximum: float, background: float) -> None:
        self.maximum = float(maximum)
        self.background = float(background)
        if background:
            what = f"background={self.background:g} is at or above the image's maximum"
        else:
            what = "the image has no positive value: its maximum is"
        super().__init__(
            f"no positive signal to deconvolve: {what} {self.maximum:g}; Richardson-Lucy "
            "needs non-negative data with some signal above the background"
        )


def deconvolve(
    image: Any,
    psf: Any,
    *,
    method: str = "wiener-butterworth",
    iterations: int | None = None,
    alpha: float | str = 0.05,
    beta: float | str = "auto",
    order: int = 10,
    resolution_px: Sequence[float] | None = None,
    acceleration: str | None = None,
    tv: float = 0.0,
    background: float = 0.0,
    pad: str = "reflect",
    init: str = "observed",
    stop_tol: float | None = None,
    device: str = "auto",
    chunk_shape: Sequence[int] | None = None,
    overlap: int | Sequence[int] | None = None,
    out: Any = None,
    return_history: bool = False,
    progress: bool | Callable[[int, int], None] = False,
    model: Any = None,
) -> Any:
    """Deconvolve a 2D or 3D fluorescence image.

    Richardson-Lucy (RL) maximum-likelihood deconvolution for Poisson noise.
    With ``method="wiener-butterworth"`` (default) the back projection uses the
    unmatched Wiener-Butterworth filter of Guo et al. (2020), which reaches in
    1-3 iterations the quality classic RL (``method="richardson-lucy"``)
    reaches in tens; see :func:`~cytolens.restore.back_projector`.

    Computation is FFT-based in float32 with torch on the CPU or a GPU.
    Boundaries: the image is padded on each side by the PSF's half-size
    (``pad="reflect"``: mirrored, without repeating the edge pixel), rounded up
    to a fast FFT size, and cropped back, so objects near one edge do not
    leak into the opposite one (circular convolution). The estimate is kept
    non-negative; values that are negative once ``background`` is subtracted
    are clipped to 0, with a logged warning. Each array (or chunk) is divided
    by its maximum before the iterations and multiplied back after (RL is
    scale-equivariant), so images near the float32 limits (e.g. values around
    1e37) give the same result as any other scale instead of overflowing; a
    result beyond the float32 range is refused, never returned. The output is
    on the input's intensity scale and never rescaled. Classic RL preserves
    the total intensity (flux) of the data; Wiener-Butterworth, like any unmatched
    back projector, does not: it concentrates intensity into objects and
    their total grows (by 25-75% on the benchmark data). Multiply by
    ``image.sum() / result.sum()`` where totals matter.

    Parameters
    ----------
    image : numpy.ndarray or dask.array.Array
        2D ``(Y, X)`` or 3D ``(Z, Y, X)`` image of any real dtype, with the
        camera offset already subtracted or given as ``background`` (RL
        assumes zero background). Never modified.
    psf : array_like
        PSF with one axis per image axis, no larger than the image, peak at
        index ``n // 2`` (see :func:`~cytolens.restore.load_psf` and
        :func:`~cytolens.restore.theoretical_psf`). Normalised to sum 1 here.
    method : {"wiener-butterworth", "richardson-lucy", "network"}
        ``"network"``: one forward pass of a 3-D network trained to reproduce
        Wiener-Butterworth for one PSF (``model``, default ``"decon-llsm-v1"``);
        see :func:`~cytolens.restore.network_deconvolution.deconvolve_network`.
        Only ``device``, ``chunk_shape`` (tile shape read, halo included),
        ``out`` and ``progress`` apply; ``psf`` is checked against the model's.
    iterations : int, optional
        Maximum number of iterations (>= 1). Default 2 for Wiener-Butterworth
        (Guo et al. use 1-2; on the benchmark data one already beats the best
        scikit-image result, and 3-5 add 0.3-0.4 dB before noise amplification
        sets in) and 30 for classic RL (within 0.15 dB of its PSNR at 60 on
        all three benchmark datasets; see ``benchmarks/results/deconvolution.md``).
    alpha, beta, order, resolution_px
        Wiener-Butterworth parameters, see
        :func:`~cytolens.restore.back_projector` (unused for classic RL).
    acceleration : {None, "biggs-andrews"}
        Biggs & Andrews (1997) vector extrapolation: each iteration starts from
        ``x + a (x - x_prev)`` with ``a`` from the last two updates; typically
        halves the iterations classic RL needs.
    tv : float
        Weight of total-variation regularisation (Dey et al. 2006), 0 (off) to
        below ``1 / (2 ndim)``; 0.001-0.01 suppresses noise amplification.
    background : float
        Camera offset subtracted from the image first (chunk by chunk, so a
        large image is never copied whole). Must leave some positive signal:
        an image whose maximum is at or below it is refused
        (:class:`NoSignalError`).
    pad : {"reflect", "edge", "none"}
        Boundary padding; ``"none"`` treats the image as periodic.
    init : {"observed", "flat"}
        First estimate: the observation (faster), or its mean everywhere (as
        :func:`skimage.restoration.richardson_lucy`).
    stop_tol : float, optional
        Automatic stopping rule: stop after the first iteration whose relative
        change ``||x_k - x_{k-1}||_2 / ||x_{k-1}||_2`` is below ``stop_tol``
        (``iterations`` stays the maximum). None (default) runs all
        iterations. Chunked runs ignore it so every chunk gets the same
        number of iterations (no seams).
    device : {"auto", "cpu", "cuda"}
        Where to compute; ``"auto"`` uses a GPU when torch sees one.
    chunk_shape : sequence of int, optional
        Deconvolve in chunks of (at most) this shape, each read with
        ``overlap`` voxels of context on every side, through
        :func:`cytolens.core.tiling.apply_tiled`. Memory then scales with the
        chunk, not the image: about 12 float32 copies of the padded
        ``chunk + 2 * overlap`` block. Dask input is always processed chunk by
        chunk, with its own chunks by default.
    overlap : int or sequence of int, optional
        Margin around each chunk, default the PSF's full size along each axis
        (twice its half-size), so chunk seams stay below 1e-3 of the
        image's range (tested); must be at least the PSF's half-size.
    out : array_like, optional
        Preallocated output (e.g. a memory-mapped or Zarr array) written chunk
        by chunk. With Dask input, the chunks are then computed and written
        one at a time (memory bounded by one chunk, whatever the number of
        cores) and ``out`` is returned.
    return_history : bool
        Also return the convergence history (not for chunked or Dask runs).
    progress : bool or callable
        True shows a progress bar; a callable is called as
        ``progress(iteration, iterations)`` (chunked numpy input:
        ``progress(chunks_done, chunks)``; Dask input: ignored, use Dask's
        diagnostics).

    model : str, path-like or Restorer, optional
        The network deconvolution model of ``method="network"``.

    Returns
    -------
    result : numpy.ndarray or dask.array.Array
        float32, same shape as ``image``; Dask in, lazy Dask out.
    history : list of dict
        Only with ``return_history=True``: one dict per iteration with
        ``iteration``, ``relative_change``, ``i_divergence`` (Csiszar
        I-divergence between the image and the re-blurred estimate entering
        that iteration, per unit flux) and ``elapsed_s``.

    Raises
    ------
    NoSignalError
        When the image's maximum is at or below ``background`` (nothing
        positive to deconvolve).
    InputError
        For a non-2D/3D image, non-finite image values, a PSF that is NaN,
        all zeros, of other dimensionality or larger than the image, unknown
        options, and a result that is not finite (never returned).

    Examples
    --------
    >>> from cytolens.restore import gaussian_psf
    >>> img = np.zeros((32, 32), np.float32)
    >>> img[16, 16] = 100.0
    >>> psf = gaussian_psf((9, 9), 1.5)
    >>> blurred = deconvolve(img, psf, method="richardson-lucy", iterations=1)
    >>> sharp, history = deconvolve(blurred, psf, iterations=2, return_history=True)
    >>> sharp.dtype, len(history), bool(sharp.max() > blurred.max())
    (dtype('float32'), 2, True)
    """
    from cytolens.core.devices import resolve_device

    if method == "network":
        from cytolens.restore.network_deconvolution import DEFAULT_DECONVOLVER, deconvolve_network

        extra = {"tile_shape": tuple(chunk_shape)} if chunk_shape is not None else {}
        result = deconvolve_network(
            image,
            psf,
            model=model or DEFAULT_DECONVOLVER,
            device=device,
            progress=progress,
            **extra,
        )
        if out is not None:
            out[...] = result
            return out
        return result
    image = check_array(image, name="image", ndim=(2, 3))
    psf = _check_psf(psf, image.shape)
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if iterations is None:
        iterations = DEFAULT_ITERATIONS[method]
    if (
        isinstance(iterations, bool)
        or not isinstance(iterations, (int, np.integer))
        or iterations < 1
    ):
        raise InputError(f"iterations must be an integer >= 1, got {iterations!r}")
    _check_choice("acceleration", acceleration, _ACCELERATIONS)
    _check_choice("pad", pad, _PADS)
    _check_choice("init", init, _INITS)
    if not 0 <= tv < 1 / (2 * image.ndim):
        raise InputError(
            f"tv must be in [0, {1 / (2 * image.ndim):.3g}) for a {image.ndim}-D image, got {tv!r}"
        )
    if stop_tol is not None and not stop_tol >= 0:
        raise InputError(f"stop_tol must be >= 0 or None, got {stop_tol!r}")
    if not np.isfinite(background):
        raise InputError(f"background must be a finite number, got {background!r}")
    dev = resolve_device(device)
    _check_signal(image, float(background))

    bp = back_projector(
        psf,
        kind="traditional" if method == "richardson-lucy" else "wiener-butterworth",
        alpha=alpha,
        beta=beta,
        order=order,
        resolution_px=resolution_px,
    )
    logger.info(
        "deconvolve: %s, %d iteration(s), back projector %s", method, iterations, bp.summary()
    )
    run = _Runner(
        psf,
        bp,
        iterations=int(iterations),
        acceleration=acceleration,
        tv=float(tv),
        background=float(background),
        pad=pad,
        init=init,
        device=dev,
    )

    chunked = is_dask(image) or chunk_shape is not None
    if not chunked:
        with progress_reporter(progress, int(iterations), "deconvolving") as update:
            result, history = run(
                np.asarray(image), stop_tol=stop_tol, callback=update, metrics=return_history
            )
        if out is not None:
            out[...] = result
            result = out
        return (result, history) if return_history else result

    if return_history:
        raise InputError(
            "return_history is not available for chunked or Dask deconvolution: every chunk "
            "runs exactly `iterations` iterations; run a representative crop unchunked to "
            "see the convergence history"
        )
    depth = _overlap(overlap, psf.shape)
    if chunk_shape is None:
        chunk_shape = tuple(int(c) for c in image.chunksize)
    chunk_shape = tuple(int(c) for c in chunk_shape)
    if len(chunk_shape) != image.ndim or min(chunk_shape) < 1:
        raise InputError(
            f"chunk_shape {chunk_shape} must give one positive size per image axis ({image.ndim})"
        )
    from cytolens.core.tiling import apply_tiled

    def func(tile: np.ndarray) -> np.ndarray:
        return run(tile, stop_tol=None, callback=None, metrics=False)[0]

    tiled = dict(
        tile_shape=tuple(c + 2 * d for c, d in zip(chunk_shape, depth, strict=True)),
        overlap=depth,
        blend="crop",
        dtype=np.float32,
        out=out,
        progress=progress if callable(progress) else bool(progress),
    )
    if is_dask(image) and out is not None:
        import dask

        # one chunk at a time: each already uses every core (torch), and several
        # in flight would multiply the memory by the number of cores
        with dask.config.set(scheduler="synchronous"):
            return apply_tiled(func, image, **tiled)
    return apply_tiled(func, image, **tiled)


def _check_signal(image: Any, background: float) -> None:
    """Refuse an image with nothing above ``background``; warn about clipped values.

    One pass over the image (for Dask, one computation of its minimum and
    maximum together); the image is never copied.
    """
    if is_dask(image):
        import dask

        low, high = (float(v) for v in dask.compute(image.min(), image.max()))
        if not (np.isfinite(low) and np.isfinite(high)):
            raise InputError(
                f"image has non-finite values (NaN or inf; minimum {low}, maximum {high}); "
                "replace them (e.g. numpy.nan_to_num) before deconvolving"
            )
    else:
        low, high = float(image.min()), float(image.max())
    if not high - background > 0:
        raise NoSignalError(high, background)
    if low - background < 0:
        logger.warning(
            "deconvolve: the image goes down to %g%s; values below 0 are clipped to 0 "
            "(Richardson-Lucy needs non-negative data)",
            low - background,
            f" after subtracting the background {background:g}" if background else "",
        )


def _check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        raise InputError(
            f"unknown {name} {value!r}; expected one of {', '.join(map(repr, choices))}"
        )


def _check_psf(psf: Any, image_shape: tuple[int, ...]) -> np.ndarray:
    psf = np.asarray(check_array(psf, name="psf"), dtype=np.float64)
    if psf.ndim != len(image_shape):
        raise InputError(
            f"psf has {psf.ndim} dimension(s) (shape {psf.shape}) but the image has "
            f"{len(image_shape)} (shape {tuple(image_shape)}); give one PSF axis per image axis"
        )
    if any(p > n for p, n in zip(psf.shape, image_shape, strict=True)):
        raise InputError(
            f"psf shape {psf.shape} is larger than the image {tuple(image_shape)} along some "
            f"axis; crop it around its peak, e.g. load_psf(psf, crop=...)"
        )
    psf = np.clip(psf, 0, None)
    total = psf.sum()
    if not total > 0:
        raise InputError(
            f"psf has no positive value (max {float(psf.max())!r}, shape {psf.shape}); "
            "it must contain a point source"
        )
    return psf / total


def _overlap(overlap: int | Sequence[int] | None, psf_shape: tuple[int, ...]) -> tuple[int, ...]:
    half = tuple(p // 2 for p in psf_shape)
    if overlap is None:
        return tuple(2 * h for h in half)
    depth = (
        (int(overlap),) * len(psf_shape) if np.isscalar(overlap) else tuple(int(o) for o in overlap)
    )
    if len(depth) != len(psf_shape) or any(d < h for d, h in zip(depth, half, strict=True)):
        raise InputError(
            f"overlap {overlap!r} must be at least the PSF half-size {half} along each axis"
        )
    return depth


class _Runner:
    """Pads one array, runs the iteration on the device, crops; caches OTFs by shape."""

    def __init__(
        self,
        psf: np.ndarray,
        bp: BackProjector,
        *,
        iterations: int,
        acceleration: str | None,
        tv: float,
        background: float,
        pad: str,
        init: str,
        device: Any,
    ) -> None:
        self.psf = psf.astype(np.float32)
        self.background = np.float32(background)
        self.bp = bp
        self.iterations = iterations
        self.acceleration = acceleration
        self.tv = tv
        self.pad = pad
        self.init = init
        self.device = device
        self._otfs: dict[tuple[int, ...], tuple[Any, Any]] = {}

    def _pad_widths(self, shape: tuple[int, ...]) -> list[tuple[int, int]]:
        from scipy.fft import next_fast_len

        if self.pad == "none":
            return [(0, 0)] * len(shape)
        widths = []
        for n, p in zip(shape, self.psf.shape, strict=True):
            h = p // 2
            total = next_fast_len(n + 2 * h, real=True)
            before = h + (total - n - 2 * h) // 2
            widths.append((before, total - n - before))
        return widths

    def _otf_pair(self, shape: tuple[int, ...]) -> tuple[Any, Any]:
        from cytolens.restore.richardson_lucy import kernel_otf

        if shape not in self._otfs:
            otf = kernel_otf(self.psf, shape, self.device)
            self._otfs[shape] = (otf, self.bp.transfer(otf, shape))
        return self._otfs[shape]

    def __call__(
        self,
        array: np.ndarray,
        *,
        stop_tol: float | None,
        callback: Callable[[int, int], None] | None,
        metrics: bool,
    ) -> tuple[np.ndarray, list[dict[str, float]]]:
        import torch

        from cytolens.restore.richardson_lucy import richardson_lucy_iterate

        x = np.array(array, dtype=np.float32)  # a copy: the input is never modified
        if not np.isfinite(x).all():
            raise InputError(
                f"image has {int((~np.isfinite(x)).sum())} non-finite value(s) (NaN or inf, or "
                f"beyond the float32 range) in a block of shape {x.shape}; replace them "
                "before deconvolving"
            )
        if self.background:
            x -= self.background
        np.maximum(x, 0, out=x)
        # RL is scale-equivariant: iterate on [0, 1] so values near the float32
        # limits neither overflow (sums, ratios) nor underflow, then scale back
        scale = float(x.max())
        if scale > 0:
            x /= np.float32(scale)
        widths = self._pad_widths(x.shape)
        if any(w != (0, 0) for w in widths):
            mode = "edge" if self.pad == "edge" else "reflect"
            x = np.pad(x, widths, mode=mode)
        region = tuple(slice(b, b + n) for (b, _), n in zip(widths, array.shape, strict=True))
        otf_fp, otf_bp = self._otf_pair(x.shape)
        with torch.no_grad():
            est, history = richardson_lucy_iterate(
                torch.from_numpy(x).to(self.device),
                otf_fp,
                otf_bp,
                iterations=self.iterations,
                region=region,
                acceleration=self.acceleration,
                tv=self.tv,
                init=self.init,
                stop_tol=stop_tol,
                metrics=metrics,
                callback=callback,
            )
            result = est[region].cpu().numpy()
        result = np.ascontiguousarray(result, dtype=np.float32)
        if scale > 0:
            with np.errstate(over="ignore"):  # refused just below
                result *= np.float32(scale)
        if not np.isfinite(result).all():
            raise InputError(
                f"deconvolution gave non-finite values (NaN or inf) in a block of shape "
                f"{result.shape}: the result exceeds the float32 range (input maximum "
                f"{scale:g}); scale the image down first"
            )
        return result, history
