"""``transform_image``: resample an image through a :class:`Transform`, chunk by chunk, in torch.

Each output chunk (laid out by :func:`cytolens.core.tiling.iter_tiles`) maps
its corners through the transform, reads only the bounding box of the input
it needs (plus one voxel for interpolation) and samples it with
:func:`torch.nn.functional.grid_sample`, a slab of at most 2**16 voxels at a
time. Memory is bounded by one chunk (float32), its input region and about
5 MiB of sampling coordinates; Dask input gives a lazy Dask array with one
task per chunk.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cytolens.core.errors import InputError
from cytolens.core.validate import check_array, is_dask
from cytolens.register.transform import Transform, _sizes

if TYPE_CHECKING:
    import torch

__all__ = ["ORDERS", "transform_image"]

#: Interpolation orders: 0 nearest, 1 (bi/tri)linear, 3 bicubic (2D only).
ORDERS = (0, 1, 3)
_MODES = {0: "nearest", 1: "bilinear", 3: "bicubic"}
#: Default chunk: 2**24 output voxels (64 MiB of float32).
_CHUNK_VOXELS = 2**24
#: Output voxels resampled at once within a chunk (bounds the coordinate temporaries).
_SLAB_VOXELS = 2**16


def transform_image(
    image: Any,
    transform: Transform,
    reference_shape: Sequence[int] | None = None,
    *,
    pixel_size_um: float | Sequence[float] | None = None,
    order: int = 1,
    cval: float = 0.0,
    chunk_shape: Sequence[int] | None = None,
    out: Any = None,
    device: str = "auto",
) -> Any:
    """Resample ``image`` (the moving image) onto the grid of the fixed (reference) image.

    The output at fixed-grid voxel ``x`` is ``image(T(x))``, with ``T`` the
    transform (fixed to moving, see :class:`Transform`).

    Parameters
    ----------
    image : numpy.ndarray, dask.array.Array or zarr.Array
        2D ``(Y, X)`` or 3D ``(Z, Y, X)`` moving image. Never modified. A
        Zarr array is read lazily (as a Dask array on its own chunks).
    transform : Transform
        From :func:`~cytolens.register.register` or built by hand, with the
        image's number of dimensions.
    reference_shape : sequence of int, optional
        Shape of the output (the fixed image's shape); default ``image.shape``.
    pixel_size_um : float or sequence of float, optional
        Voxel size (shared by both grids) when the transform is in
        micrometres; ignored for a transform in pixels.
    order : {0, 1, 3}
        Nearest, (tri)linear or bicubic (2D only) interpolation.
    cval : float
        Value of output voxels that map outside the image (use ``numpy.nan``
        to tell them apart).
    chunk_shape : sequence of int, optional
        Output chunk shape; default about 2**24 voxels per chunk (the input's
        chunks for Dask).
    out : array, optional
        Preallocated float32 output of ``reference_shape`` (NumPy, memmap,
        Zarr), written chunk by chunk and returned.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        float32, shape ``reference_shape``; lazy for Dask or Zarr input
        (unless ``out`` is given).

    Examples
    --------
    >>> image = np.zeros((8, 8), np.float32); image[2, 3] = 1
    >>> shifted = transform_image(image, Transform.from_translation((1, 2)))
    >>> np.argwhere(shifted > 0.5).tolist()
    [[1, 1]]
    """
    image = check_array(image, name="image", ndim=(2, 3), finite=False)
    if not isinstance(transform, Transform):
        raise InputError(f"transform must be a Transform, got {type(transform).__name__}")
    if transform.ndim != image.ndim:
        raise InputError(
            f"a {transform.ndim}D transform cannot resample a {image.ndim}D image "
            f"(shape {image.shape})"
        )
    if order not in ORDERS or (order == 3 and image.ndim == 3):
        raise InputError(f"order must be 0, 1 or 3 (3 in 2D only), got {order!r} ({image.ndim}D)")
    shape = tuple(int(n) for n in (reference_shape or image.shape))
    if len(shape) != image.ndim or min(shape) < 1:
        raise InputError(
            f"reference_shape {tuple(reference_shape or ())} must give {image.ndim} positive sizes"
        )
    matrix = transform.in_pixels(_sizes(pixel_size_um, image.ndim))
    chunks = _chunk_shape(shape, chunk_shape, image)
    from cytolens.core.devices import resolve_device
    from cytolens.core.tiling import iter_tiles

    dev = resolve_device(device)
    tiles = iter_tiles(shape, chunks)
    if is_dask(image) and out is None:
        return _lazy(image, matrix, shape, tiles, order, cval, dev)
    if out is None:
        out = np.empty(shape, np.float32)
    elif tuple(out.shape) != shape:
        raise InputError(f"out has shape {tuple(out.shape)}, expected {shape}")
    for tile in tiles:
        out[tile.write] = _resample_block(image, matrix, tile.write, order, cval, dev)
    return out


def _chunk_shape(shape: tuple[int, ...], chunk_shape: Any, image: Any) -> tuple[int, ...]:
    if chunk_shape is not None:
        chunks = tuple(int(c) for c in chunk_shape)
        if len(chunks) != len(shape) or min(chunks) < 1:
            raise InputError(f"chunk_shape {chunk_shape!r} must give {len(shape)} positive sizes")
        return chunks
    if is_dask(image) and image.ndim == len(shape):
        return tuple(max(int(c), 16) for c in image.chunksize)
    side = max(16, int(_CHUNK_VOXELS ** (1 / len(shape))))
    return tuple(min(n, side) for n in shape)


def _lazy(
    image: Any,
    matrix: np.ndarray,
    shape: tuple[int, ...],
    tiles: list,
    order: int,
    cval: float,
    dev: Any,
) -> Any:
    import dask
    import dask.array as da

    grid = tuple(max(t.index[d] for t in tiles) + 1 for d in range(len(shape)))
    blocks = np.empty(grid, dtype=object)
    for tile in tiles:
        region = _input_region(matrix, tile.write, image.shape)
        source = image[region] if region is not None else None
        block_shape = tuple(s.stop - s.start for s in tile.write)
        task = dask.delayed(_sample_region)(source, region, matrix, tile.write, order, cval, dev)
        blocks[tile.index] = da.from_delayed(task, block_shape, dtype=np.float32)
    return da.block(blocks.tolist())


def _corners(write: tuple[slice, ...]) -> np.ndarray:
    return np.array(
        list(itertools.product(*[(s.start, s.stop - 1) for s in write])), dtype=np.float64
    )


def _input_region(
    matrix: np.ndarray, write: tuple[slice, ...], in_shape: tuple[int, ...]
) -> tuple[slice, ...] | None:
    """Bounding box of the input voxels that the output region ``write`` reads (None: none)."""
    n = len(write)
    pts = _corners(write) @ matrix[:n, :n].T + matrix[:n, n]
    lo = np.floor(pts.min(axis=0)) - 2
    hi = np.ceil(pts.max(axis=0)) + 3
    region = []
    for a, b, size in zip(lo, hi, in_shape, strict=True):
        a, b = int(max(a, 0)), int(min(b, size))
        if b <= a:
            return None
        region.append(slice(a, b))
    return tuple(region)


def _resample_block(
    image: Any, matrix: np.ndarray, write: tuple[slice, ...], order: int, cval: float, dev: Any
) -> np.ndarray:
    region = _input_region(matrix, write, image.shape)
    source = None if region is None else np.asarray(image[region])
    return _sample_region(source, region, matrix, write, order, cval, dev)


def _sample_region(
    source: Any,
    region: tuple[slice, ...] | None,
    matrix: np.ndarray,
    write: tuple[slice, ...],
    order: int,
    cval: float,
    dev: Any,
) -> np.ndarray:
    """Sample ``source`` (the input cropped to ``region``) at the output voxels of ``write``.

    The output block is filled slab by slab (at most :data:`_SLAB_VOXELS` voxels along
    its first axis at a time), each slab's ``grid_sample`` coordinates built from one
    small affine map and per-axis index vectors (float64, so that the inside/outside
    test at the border does not depend on the chunking; float32 for ``grid_sample``):
    the temporaries are about 40 bytes per slab voxel, whatever the block size.
    """
    import torch
    import torch.nn.functional as F

    out_shape = tuple(s.stop - s.start for s in write)
    out = np.full(out_shape, cval, np.float32)
    if source is None:
        return out
    n = len(write)
    vol = torch.as_tensor(np.asarray(source, dtype=np.float32), device=dev)[None, None]
    size = np.array(vol.shape[2:], dtype=np.float64)
    denom = np.maximum(size - 1, 1)
    offset = np.array([s.start for s in region], dtype=np.float64)
    # input index q = M o + b - offset for output index o; grid_sample's coordinate
    # (align_corners=True) g = 2 q / denom - 1, listed x, y(, z): reversed axes
    lin = (2 / denom)[:, None] * matrix[:n, :n]
    shift = 2 * (matrix[:n, n] - offset) / denom - 1
    # inside: within half a voxel of the border, + 1e-6 voxel so that a point exactly half
    # a voxel out (a half-voxel shift) is inside whatever the rounding of its chunk's sums
    lo = (-1 - 2 * (0.5 + 1e-6) / denom)[::-1].copy()
    hi = (2 * (size - 0.5 + 1e-6) / denom - 1)[::-1].copy()
    lin, shift = lin[::-1], shift[::-1]
    rows = max(1, _SLAB_VOXELS // max(1, int(np.prod(out_shape[1:]))))
    for r0 in range(0, out_shape[0], rows):
        r1 = min(out_shape[0], r0 + rows)
        ranges = [np.arange(write[0].start + r0, write[0].start + r1, dtype=np.float64)]
        ranges += [np.arange(s.start, s.stop, dtype=np.float64) for s in write[1:]]
        inside = None
        components = []
        for k in range(n):
            component = None
            for j, a in enumerate(ranges):
                view = [1] * n
                view[j] = -1
                term = torch.as_tensor(lin[k, j] * a, dtype=torch.float64, device=dev)
                term = term.reshape(view)
                component = term + float(shift[k]) if component is None else component + term
            ok = (component >= float(lo[k])) & (component <= float(hi[k]))
            inside = ok if inside is None else inside & ok
            components.append(component.float())
        grid = torch.stack(components, dim=-1)
        del components
        values = F.grid_sample(
            vol, grid[None], mode=_MODES[order], padding_mode="border", align_corners=True
        )[0, 0]
        del grid
        values.masked_fill_(~inside, cval)
        out[r0:r1] = values.cpu().numpy()
    return out


def sample_points(
    volume: torch.Tensor, points: torch.Tensor, *, order: int = 1, cval: float = 0.0
) -> torch.Tensor:
    """Interpolate ``volume`` (2D/3D tensor) at continuous voxel indices ``points`` ``(N, ndim)``.

    Points within half a voxel of the border take the border value
    (clamped); points farther out get ``cval``. Differentiable in ``points``
    for ``order=1``.
    """
    import torch
    import torch.nn.functional as F

    n = volume.ndim
    size = torch.tensor(volume.shape, dtype=points.dtype, device=points.device)
    inside = ((points >= -0.5) & (points <= size - 0.5)).all(dim=1)
    denom = torch.clamp(size - 1, min=1)
    norm = (2 * points / denom - 1).flip(-1).to(volume.dtype)  # grid_sample wants x, y(, z)
    grid = norm.reshape((1,) * n + (-1, n))
    values = F.grid_sample(
        volume[None, None],
        grid,
        mode=_MODES[order],
        padding_mode="border",
        align_corners=True,
    ).reshape(-1)
    return torch.where(inside, values, torch.full_like(values, cval))
