"""``fuse``: multiview fusion by averaging, content-based weighting or joint deconvolution.

Every view is first resampled onto the common (reference) grid with its
transform (:func:`~cytolens.register.transform_image`; voxels outside a
view's field of view become NaN and are ignored by that view). Then, chunk by
chunk (:func:`dask.array.map_overlap` with a PSF-sized halo):

- ``"mean"``: the average of the views that see each voxel;
- ``"weighted"``: each view weighted by its local contrast (the Gaussian-
  smoothed squared difference from its local mean), which favours the view
  that is sharp at each place;
- ``"joint-deconvolution"``: Richardson-Lucy over all views at once, as in
  the diSPIM pipeline of Guo et al. (2020): starting from the mean, each
  iteration updates the estimate with every view in turn,
  ``x <- x * BP_v[y_v / (H_v x)]``, with the view's own PSF ``H_v`` (moved
  into the common frame by the view's transform) and its own
  Wiener-Butterworth back projector ``BP_v``
  (:func:`cytolens.restore.back_projector`); convolutions use
  :func:`cytolens.restore.richardson_lucy.kernel_otf`, the same FFT kernels as
  :func:`cytolens.restore.deconvolve`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from cytolens.core.errors import InputError
from cytolens.core.validate import check_array, is_dask
from cytolens.register.resample import transform_image
from cytolens.register.transform import Transform, _sizes

__all__ = ["BYTES_PER_VOXEL", "FUSION_METHODS", "fuse", "psf_in_common_frame"]

logger = logging.getLogger(__name__)

#: Fusion methods of :func:`fuse`.
FUSION_METHODS = ("mean", "weighted", "joint-deconvolution")


def fuse(
    views: Sequence[Any],
    transforms: Sequence[Transform],
    *,
    psfs: Sequence[Any] | None = None,
    method: str = "mean",
    iterations: int = 2,
    reference_shape: Sequence[int] | None = None,
    pixel_size_um: float | Sequence[float] | None = None,
    alpha: float = 0.05,
    background: float = 0.0,
    weight_sigma: float = 4.0,
    chunk_shape: Sequence[int] | None = None,
    memory_mb: float | None = None,
    out: Any = None,
    device: str = "auto",
) -> Any:
    """Fuse registered views of one sample into one image.

    Parameters
    ----------
    views : sequence of numpy.ndarray, dask.array.Array or zarr.Array
        2D or 3D images, all with the same number of dimensions. Zarr arrays
        (e.g. opened from an OME-Zarr) are read lazily, as Dask arrays on
        their own chunks: only the regions each chunk needs are read.
    transforms : sequence of Transform
        One per view, mapping the common frame to the view (as returned by
        ``register(reference, view)``); the first is usually the identity.
    psfs : sequence of array_like, optional
        One PSF per view, in that view's own frame (peak at ``n // 2``);
        needed for ``"joint-deconvolution"``.
    method : {"mean", "weighted", "joint-deconvolution"}
    iterations : int
        Joint-deconvolution iterations (each uses every view once); Guo et
        al. use 1-2 with the Wiener-Butterworth back projector.
    reference_shape : sequence of int, optional
        Shape of the fused image; default the first view's shape.
    pixel_size_um : float or sequence of float, optional
        Voxel size shared by the views (for transforms in micrometres).
    alpha : float
        Wiener parameter of the back projectors.
    background : float
        Camera offset subtracted from every view first.
    weight_sigma : float
        Smoothing (pixels) of the local-contrast weights of ``"weighted"``.
    chunk_shape : sequence of int, optional
        Fuse chunk by chunk, one at a time, into ``out`` (or a NumPy array):
        each chunk resamples only the part of each view it needs (chunk plus
        the method's halo), so memory is one chunk's working set. With Dask
        views and no ``out``, the chunks of a lazy result instead.
    memory_mb : float, optional
        Memory budget instead of ``chunk_shape``: the chunk (halo included)
        is the largest cube whose working set, :data:`BYTES_PER_VOXEL` of the
        method per view and voxel, fits. With Dask/Zarr views and no ``out``,
        the chunks of the lazy result are sized so (the budget then holds per
        task; Dask runs several tasks at once).
    out : array, optional
        Preallocated float32 output (NumPy, memmap, Zarr) of the fused shape;
        with Dask views and no ``chunk_shape``, filled chunk by chunk on the
        first view's chunks. Chunks aligned with a Zarr ``out``'s chunks avoid
        rewriting its chunks.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        float32 fused image (lazy when a view is a Dask or Zarr array and
        ``out`` is not given); 0 where no view sees a voxel.

    Raises
    ------
    InputError
        For views of different dimensionality, a count of transforms or PSFs
        that differs from the count of views, or missing PSFs.

    Examples
    --------
    >>> a = np.zeros((16, 16), np.float32); a[8, 8] = 2
    >>> b = np.roll(a, 1, axis=1)
    >>> t = [Transform.identity(2), Transform.from_translation((0, 1))]
    >>> float(fuse([a, b], t)[8, 8])
    2.0
    """
    if method not in FUSION_METHODS:
        raise InputError(f"method must be one of {FUSION_METHODS}, got {method!r}")
    views = [
        check_array(v, name=f"view {i}", ndim=(2, 3), finite=False) for i, v in enumerate(views)
    ]
    if not views:
        raise InputError("fuse needs at least one view")
    ndims = {v.ndim for v in views}
    if len(ndims) > 1:
        raise InputError(
            "views have different dimensionality: "
            + ", ".join(f"view {i} is {v.ndim}D {v.shape}" for i, v in enumerate(views))
        )
    ndim = views[0].ndim
    transforms = list(transforms)
    if len(transforms) != len(views):
        raise InputError(f"{len(transforms)} transform(s) for {len(views)} view(s)")
    for i, t in enumerate(transforms):
        if not isinstance(t, Transform) or t.ndim != ndim:
            raise InputError(f"transform {i} must be a {ndim}D Transform, got {t!r}")
    if int(iterations) < 1:
        raise InputError(f"iterations must be >= 1, got {iterations!r}")
    shape = tuple(int(n) for n in (reference_shape or views[0].shape))
    common_psfs: list[np.ndarray] = []
    if method == "joint-deconvolution":
        if psfs is None or len(psfs) != len(views):
            raise InputError(
                f"joint-deconvolution needs one PSF per view: {len(views)} view(s), "
                f"{0 if psfs is None else len(psfs)} PSF(s)"
            )
        common_psfs = [
            psf_in_common_frame(p, t, pixel_size_um=pixel_size_um)
            for p, t in zip(psfs, transforms, strict=True)
        ]
        side = max(max(p.shape) for p in common_psfs)
        common_psfs = [_pad_to(p, (side,) * ndim) for p in common_psfs]
        if side > min(shape):
            raise InputError(f"PSFs ({side} px a side) larger than the fused image {shape}")
    kernel = _Fuser(method, common_psfs, int(iterations), alpha, background, weight_sigma, device)
    depth = kernel.depth(ndim)
    dask_input = any(is_dask(v) for v in views)
    read_shape = None
    if memory_mb is not None and chunk_shape is None:
        if not memory_mb > 0:
            raise InputError(f"memory_mb must be positive, got {memory_mb!r}")
        from cytolens.core.tiling import tile_shape_for_budget

        read_shape = tile_shape_for_budget(
            shape,
            BYTES_PER_VOXEL[method] * len(views),
            max_bytes=int(memory_mb * 2**20),
            overlap=depth,
        )
        read_shape = _align_to_chunks(read_shape, depth, shape, getattr(out, "chunks", None))
    elif chunk_shape is None and dask_input and out is not None:
        first = next(v for v in views if is_dask(v))
        chunk_shape = tuple(int(c) for c in first.chunksize)
    if chunk_shape is not None:
        chunk_shape = tuple(int(c) for c in chunk_shape)
        if len(chunk_shape) != ndim or min(chunk_shape) < 1:
            raise InputError(f"chunk_shape {chunk_shape!r} must give {ndim} positive sizes")
        read_shape = tuple(
            min(c + 2 * d, n) for c, d, n in zip(chunk_shape, depth, shape, strict=True)
        )
    if read_shape is not None and (out is not None or not dask_input):
        return _fuse_tiles(views, transforms, kernel, shape, read_shape, pixel_size_um, out, device)
    if not dask_input:
        resampled = [
            transform_image(v, t, shape, pixel_size_um=pixel_size_um, cval=np.nan, device=device)
            for v, t in zip(views, transforms, strict=True)
        ]
        result = kernel(*resampled)
        if out is not None:
            out[...] = result
            return out
        return result
    # Dask views, no out: a lazy result, one task per chunk (map_overlap with the halo)
    import dask.array as da

    if chunk_shape is not None:
        chunks = chunk_shape
    elif read_shape is not None:  # memory_mb: each task's read window (core + halo) fits it
        chunks = tuple(
            n if r >= n else max(1, r - 2 * d)
            for r, d, n in zip(read_shape, depth, shape, strict=True)
        )
    else:
        chunks = tuple(int(c) for c in next(v for v in views if is_dask(v)).chunksize)
    views = [v if is_dask(v) else da.from_array(v, chunks=chunks) for v in views]
    resampled = [
        transform_image(
            v, t, shape, pixel_size_um=pixel_size_um, cval=np.nan, device=device, chunk_shape=chunks
        )
        for v, t in zip(views, transforms, strict=True)
    ]
    depth = tuple(min(d, c - 1) if c > 1 else 0 for d, c in zip(depth, chunks, strict=True))
    return da.map_overlap(
        kernel,
        *resampled,
        depth=depth,
        boundary="none",
        trim=True,
        dtype=np.float32,
        meta=np.empty((0,) * ndim, np.float32),
    )


def _align_to_chunks(
    read_shape: tuple[int, ...], depth: tuple[int, ...], shape: tuple[int, ...], chunks: Any
) -> tuple[int, ...]:
    """Shrink each tile core to a multiple of ``out``'s chunks (where it holds one), so that
    tiles write whole chunks of a Zarr output instead of rewriting shared ones."""
    if chunks is None or len(chunks) != len(shape):
        return read_shape
    aligned = []
    for r, d, n, c in zip(read_shape, depth, shape, chunks, strict=True):
        core = r - 2 * d
        if r < n and core >= int(c):
            r = core // int(c) * int(c) + 2 * d
        aligned.append(r)
    return tuple(aligned)


def _fuse_tiles(
    views: list[Any],
    transforms: list[Transform],
    kernel: _Fuser,
    shape: tuple[int, ...],
    read_shape: tuple[int, ...],
    pixel_size_um: Any,
    out: Any,
    device: str,
) -> Any:
    """Fuse tile by tile into ``out``: each tile resamples, per view, only the input
    region its read window (core + halo) maps to, fuses it and writes its core. One tile
    at a time and nothing kept between tiles, so memory is one tile's working set
    whatever the volume (Dask views are computed one region at a time)."""
    from cytolens.core.devices import resolve_device
    from cytolens.core.tiling import iter_tiles
    from cytolens.register.resample import _resample_block

    ndim = len(shape)
    if out is None:
        out = np.empty(shape, np.float32)
    elif tuple(out.shape) != shape:
        raise InputError(f"out has shape {tuple(out.shape)}, expected {shape}")
    dev = resolve_device(device)
    matrices = [t.in_pixels(_sizes(pixel_size_um, ndim)) for t in transforms]
    for tile in iter_tiles(shape, read_shape, overlap=kernel.depth(ndim)):
        blocks = [
            _resample_block(v, m, tile.read, 1, np.nan, dev)
            for v, m in zip(views, matrices, strict=True)
        ]
        out[tile.write] = kernel(*blocks)[tile.crop]
        del blocks
    return out


#: Bytes held per tile voxel and per view while fusing, used by ``memory_mb``: the view's
#: input region, its resampled block and the method's temporaries. "mean" is measured
#: (Python/NumPy peak in ``benchmarks/registration.py``'s scale part); the others are
#: estimates from their temporaries (a stack of the views and Gaussian filters; padded
#: float32 copies and complex64 spectra of each view's PSF and back projector).
BYTES_PER_VOXEL = {"mean": 24, "weighted": 48, "joint-deconvolution": 96}


def psf_in_common_frame(
    psf: Any, transform: Transform, *, pixel_size_um: float | Sequence[float] | None = None
) -> np.ndarray:
    """A view's PSF (in the view's frame) rotated/scaled into the common frame.

    Only the linear part of ``transform`` matters (a PSF has no position);
    the PSF is first padded to a cube so that a 90-degree turn does not clip
    it. Returns a non-negative float32 PSF summing to 1, peak near ``n // 2``.

    Examples
    --------
    >>> from cytolens.restore import gaussian_psf
    >>> p = gaussian_psf((9, 5, 5), (2.0, 0.7, 0.7))
    >>> turn = Transform.from_linear([[0, 0, 1], [0, 1, 0], [-1, 0, 0]], kind="rigid")
    >>> q = psf_in_common_frame(p, turn)
    >>> q.shape, bool(q[4, 4].sum() > q[:, 4, 4].sum())
    ((9, 9, 9), True)
    """
    psf = np.asarray(psf, dtype=np.float32)
    if psf.ndim != transform.ndim:
        raise InputError(f"a {psf.ndim}D PSF for a {transform.ndim}D transform")
    side = max(psf.shape) | 1
    cube = _pad_to(psf, (side,) * psf.ndim)
    sizes = _sizes(pixel_size_um, psf.ndim) if transform.units == "um" else np.ones(psf.ndim)
    center = (np.array(cube.shape) // 2) * sizes
    linear = Transform.from_linear(transform.linear, center=center, units=transform.units)
    turned = transform_image(cube, linear, cube.shape, pixel_size_um=pixel_size_um, device="cpu")
    turned = np.clip(np.nan_to_num(turned), 0, None)
    total = float(turned.sum())
    if not total > 0:
        raise InputError("the PSF is empty after moving it into the common frame")
    return (turned / total).astype(np.float32)


def _pad_to(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Zero-pad ``a`` to ``shape`` keeping the element at ``n // 2`` at the new ``n // 2``."""
    widths = []
    for n, m in zip(a.shape, shape, strict=True):
        before = m // 2 - n // 2
        widths.append((before, m - n - before))
    return np.pad(a, widths)


class _Fuser:
    """The per-chunk fusion: called with one resampled block per view (NaN outside a view)."""

    def __init__(
        self,
        method: str,
        psfs: list[np.ndarray],
        iterations: int,
        alpha: float,
        background: float,
        weight_sigma: float,
        device: str,
    ) -> None:
        self.method = method
        self.psfs = psfs
        self.iterations = iterations
        self.background = np.float32(background)
        self.weight_sigma = float(weight_sigma)
        self.device = device
        self.bps = []
        if method == "joint-deconvolution":
            from cytolens.restore import back_projector

            self.bps = [back_projector(p, alpha=alpha) for p in psfs]

    def depth(self, ndim: int) -> tuple[int, ...]:
        if self.method == "mean":
            return (0,) * ndim
        if self.method == "weighted":
            return (int(np.ceil(4 * self.weight_sigma)) * 2,) * ndim
        return tuple(2 * (s // 2) * self.iterations for s in self.psfs[0].shape)

    def __call__(self, *blocks: np.ndarray) -> np.ndarray:
        if self.method == "mean":  # view by view: two block-sized accumulators, no stack
            total = np.zeros(blocks[0].shape, np.float32)
            count = np.zeros(blocks[0].shape, np.float32)
            for b in blocks:
                y = np.asarray(b, dtype=np.float32)
                valid = np.isfinite(y)
                total += np.where(valid, np.maximum(y - self.background, 0), 0)
                count += valid
            return np.divide(total, count, out=np.zeros_like(total), where=count > 0)
        ys = np.stack([np.asarray(b, dtype=np.float32) for b in blocks])
        valid = np.isfinite(ys)
        ys = np.where(valid, np.maximum(ys - self.background, 0), 0).astype(np.float32)
        count = valid.sum(axis=0)
        mean = np.divide(
            ys.sum(axis=0), count, out=np.zeros(ys.shape[1:], np.float32), where=count > 0
        )
        if self.method == "weighted":
            from scipy import ndimage as ndi

            s = self.weight_sigma
            w = np.stack(
                [ndi.gaussian_filter((y - ndi.gaussian_filter(y, s)) ** 2, 2 * s) for y in ys]
            )
            w = np.where(valid, w + 1e-12, 0)
            total = w.sum(axis=0)
            fused = np.divide((w * ys).sum(axis=0), total, out=mean.copy(), where=total > 0)
            return fused.astype(np.float32)
        return self._joint(ys, valid, mean, count)

    def _joint(
        self, ys: np.ndarray, valid: np.ndarray, mean: np.ndarray, count: np.ndarray
    ) -> np.ndarray:
        import torch
        from scipy.fft import next_fast_len

        from cytolens.core.devices import resolve_device
        from cytolens.restore.richardson_lucy import kernel_otf

        dev = resolve_device(self.device)
        scale = float(ys.max())
        if not scale > 0:
            return np.zeros(ys.shape[1:], np.float32)
        shape = ys.shape[1:]
        widths = []
        for n, p in zip(shape, self.psfs[0].shape, strict=True):
            h = p // 2
            total = next_fast_len(n + 2 * h, real=True)
            before = h + (total - n - 2 * h) // 2
            widths.append((before, total - n - before))
        region = tuple(slice(b, b + n) for (b, _), n in zip(widths, shape, strict=True))
        mode = "reflect" if min(shape) > 1 else "edge"
        padded = [
            np.pad(np.where(v, y, mean) / scale, widths, mode=mode)
            for y, v in zip(ys, valid, strict=True)
        ]
        masks = [np.pad(v.astype(np.float32), widths, mode="edge") for v in valid]
        pshape = padded[0].shape
        dims = tuple(range(len(pshape)))
        with torch.no_grad():
            x = torch.from_numpy(np.pad(mean / scale, widths, mode=mode)).to(dev).clamp_min_(1e-6)
            terms = []
            for y, m, psf, bp in zip(padded, masks, self.psfs, self.bps, strict=True):
                otf = kernel_otf(psf, pshape, dev)
                terms.append(
                    (
                        torch.from_numpy(y).to(dev),
                        torch.from_numpy(m).to(dev),
                        otf,
                        bp.transfer(otf, pshape),
                    )
                )

            def conv(a: Any, otf: Any) -> Any:
                return torch.fft.irfftn(torch.fft.rfftn(a, dim=dims) * otf, s=pshape, dim=dims)

            for _ in range(self.iterations):
                for y, m, otf_fp, otf_bp in terms:
                    blurred = conv(x, otf_fp).clamp_min_(1e-6)
                    ratio = torch.where(m > 0.5, y / blurred, torch.ones_like(y))
                    x = (x * conv(ratio, otf_bp)).clamp_min_(0)
            result = x[region].cpu().numpy() * np.float32(scale)
        return np.where(count > 0, result, 0).astype(np.float32)
