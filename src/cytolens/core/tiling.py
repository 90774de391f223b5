"""The tiling engine: run a local operation or a model on an image tile by tile.

Every capability that processes big images goes through this module instead of
writing its own loop (see the conventions). Three pieces:

- :func:`iter_tiles` lays out tiles of one read shape with a halo (overlap) of
  context on each side; the tiles' *write* regions partition the image, so
  each output pixel is owned by exactly one tile.
- :func:`apply_tiled` runs a function on every tile and stitches the outputs,
  either by cropping the halo (``blend="crop"``, exact for local operations)
  or by averaging overlapping outputs with linear ramps (``blend="linear"``,
  for learned models whose tile edges are less reliable). NumPy input is
  processed tile by tile into a (possibly memory-mapped or Zarr) output, so
  memory stays bounded by a few tiles; Dask input gives a lazy Dask array
  built with :func:`dask.array.map_overlap`.
- :func:`tile_shape_for_budget` picks a tile shape from a memory budget.

The halo an operation needs is its radius: ``ceil(truncate * sigma)`` for a
Gaussian, ``size // 2`` for a median or uniform filter, the receptive field
for a network.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import reduce
from itertools import pairwise, product
from typing import Any

import numpy as np

from cytolens.core.errors import InputError
from cytolens.core.progress import progress_reporter
from cytolens.core.validate import check_array, is_dask

__all__ = ["BLENDS", "Tile", "apply_tiled", "blend_layout", "iter_tiles", "tile_shape_for_budget"]

logger = logging.getLogger(__name__)

#: Accepted values of ``blend`` in :func:`apply_tiled`.
BLENDS = ("crop", "linear")

# One axis of a tile layout: (read start, read stop, write start, write stop).
_Span = tuple[int, int, int, int]


@dataclass(frozen=True)
class Tile:
    """One tile of a layout made by :func:`iter_tiles`.

    Attributes
    ----------
    read : tuple of slice
        Region of the input to read: the core plus the halo, clipped to the
        image. All tiles of a layout have the same read shape.
    write : tuple of slice
        Region of the output this tile owns (its core). The write regions of a
        layout partition the image.
    crop : tuple of slice
        Where ``write`` sits inside the array read by ``read``, so that
        ``output[tile.write] = func(image[tile.read])[tile.crop]``.
    index : tuple of int
        Position of the tile in the grid of tiles.
    """

    read: tuple[slice, ...]
    write: tuple[slice, ...]
    crop: tuple[slice, ...]
    index: tuple[int, ...]


def _check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    try:
        shape = tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        raise InputError(f"shape must be a sequence of positive integers, got {shape!r}") from None
    if not shape or any(n < 1 for n in shape):
        raise InputError(f"shape must be a non-empty sequence of positive integers, got {shape}")
    return shape


def _per_axis(value: Any, ndim: int, name: str) -> list[Any]:
    """Broadcast an int (or None) to one entry per axis; check a sequence's length."""
    if value is None or isinstance(value, (int, np.integer)):
        return [value] * ndim
    entries = list(value)
    if len(entries) != ndim:
        raise InputError(
            f"{name} has {len(entries)} entries ({tuple(entries)}) but the image has {ndim} "
            f"axes; give one entry per axis or a single int"
        )
    return entries


def _tile_and_overlap(
    shape: tuple[int, ...], tile_shape: Any, overlap: Any
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Validate ``tile_shape`` and ``overlap``; return the read shape and the halos."""
    ndim = len(shape)
    tiles, halos = [], []
    for axis, (n, t, o) in enumerate(
        zip(
            shape,
            _per_axis(tile_shape, ndim, "tile_shape"),
            _per_axis(overlap, ndim, "overlap"),
            strict=True,
        )
    ):
        if isinstance(o, bool) or not isinstance(o, (int, np.integer)) or o < 0:
            raise InputError(f"overlap on axis {axis} must be an integer >= 0, got {o!r}")
        if t is None or (isinstance(t, (int, np.integer)) and t == -1):
            t = n
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 1:
            raise InputError(
                f"tile_shape on axis {axis} must be a positive integer, None or -1 "
                f"(whole axis), got {t!r}"
            )
        t = min(int(t), n)  # a tile larger than the image is clipped to it
        if t < n and t <= 2 * o:
            raise InputError(
                f"tile_shape on axis {axis} is {t}, which leaves no core with overlap {o} on "
                f"each side; use a tile larger than {2 * o} (2 * overlap) or a smaller overlap"
            )
        tiles.append(t)
        halos.append(int(o) if t < n else 0)  # a whole-axis tile needs no halo
    return tuple(tiles), tuple(halos)


def _axis_spans(n: int, t: int, o: int) -> list[_Span]:
    """Tiles of length ``t`` along an axis of length ``n`` with halo ``o``.

    Read windows are spread evenly from ``0`` to ``n - t`` with steps of at
    most ``t - 2 * o``; each boundary between write regions sits in the middle
    of the overlap of two neighbours, so each side keeps at least ``o`` pixels
    of context.
    """
    if t >= n:
        return [(0, n, 0, n)]
    steps = -(-(n - t) // (t - 2 * o))  # ceil: enough tiles to step by at most the core
    starts = [i * (n - t) // steps for i in range(steps + 1)]
    bounds = [0, *((a + b + t) // 2 for a, b in pairwise(starts)), n]
    return [(s, s + t, lo, hi) for s, (lo, hi) in zip(starts, pairwise(bounds), strict=True)]


def _layout(shape: Sequence[int], tile_shape: Any, overlap: Any) -> list[list[_Span]]:
    shape = _check_shape(shape)
    tiles, halos = _tile_and_overlap(shape, tile_shape, overlap)
    return [_axis_spans(n, t, o) for n, t, o in zip(shape, tiles, halos, strict=True)]


def _tiles_from_spans(spans: list[list[_Span]]) -> Iterator[Tile]:
    for index in product(*(range(len(s)) for s in spans)):
        axis_spans = [s[i] for s, i in zip(spans, index, strict=True)]
        yield Tile(
            read=tuple(slice(r0, r1) for r0, r1, _, _ in axis_spans),
            write=tuple(slice(w0, w1) for _, _, w0, w1 in axis_spans),
            crop=tuple(slice(w0 - r0, w1 - r0) for r0, _, w0, w1 in axis_spans),
            index=index,
        )


def iter_tiles(shape: Sequence[int], tile_shape: Any, overlap: Any = 0) -> list[Tile]:
    """Lay out tiles with a halo of context that cover an image of ``shape``.

    Parameters
    ----------
    shape : sequence of int
        Shape of the image.
    tile_shape : int or sequence of (int or None)
        Shape of the region read per tile, halo included. An int applies to
        every axis; ``None`` or ``-1`` takes the whole axis. A tile larger
        than the image is clipped to it.
    overlap : int or sequence of int
        Halo on each side of a tile's core: the context a local operation
        needs (its radius). Axes covered by a single tile need no halo.

    Returns
    -------
    list of Tile
        In C order of ``Tile.index``. All tiles have the same read shape (the
        last tile along an axis is shifted inward rather than shrunk, so tiles
        can be batched), and the ``write`` regions partition the image:
        every pixel is owned by exactly one tile, which has at least
        ``overlap`` pixels of context around it (or the true image border).

    Raises
    ------
    InputError
        For a negative overlap, a tile no larger than ``2 * overlap`` on an
        axis it does not cover whole, or a wrong number of entries.

    Examples
    --------
    >>> tiles = iter_tiles((10,), 6, overlap=1)
    >>> [(t.read[0].start, t.read[0].stop) for t in tiles]
    [(0, 6), (4, 10)]
    >>> [(t.write[0].start, t.write[0].stop) for t in tiles]
    [(0, 5), (5, 10)]
    >>> len(iter_tiles((512, 512), (256, None), overlap=16))
    3
    """
    return list(_tiles_from_spans(_layout(shape, tile_shape, overlap)))


def blend_layout(
    shape: Sequence[int], tile_shape: Any, overlap: Any
) -> tuple[list[list[_Span]], list[list[np.ndarray]]]:
    """The tile grid and linear-blend weights of ``apply_tiled(..., blend="linear")``, per axis.

    For code that must rebuild :func:`apply_tiled`'s result piece by piece
    (:mod:`cytolens.segment.chunked`): tile ``(i, j, ...)`` reads
    ``spans[0][i][0]:spans[0][i][1]`` (and so on per axis) and its output is
    weighted by the outer product of ``weights[0][i]``, ``weights[1][j]``, ...;
    the weights of all tiles sum to 1 at every pixel.

    Returns
    -------
    spans : list of lists of (int, int, int, int)
        Per axis, per tile: read start, read stop, write start, write stop.
    weights : list of lists of numpy.ndarray
        Per axis, per tile: its weight along the read span.

    Examples
    --------
    >>> spans, weights = blend_layout((100,), 64, 8)
    >>> spans
    [[(0, 64, 0, 50), (36, 100, 50, 100)]]
    >>> float(sum(w.sum() for w in weights[0]))
    100.0
    """
    spans = _layout(shape, tile_shape, overlap)
    return spans, [_axis_weights(s, n) for s, n in zip(spans, _check_shape(shape), strict=True)]


def _axis_weights(spans: list[_Span], n: int) -> list[np.ndarray]:
    """Linear-ramp weights of each tile along one axis, normalized to sum to 1.

    A tile's weight ramps from near 0 to 1 across its overlap with each
    neighbour (and stays 1 at the image border). Because the weight of a tile
    is the outer product of its per-axis weights and the layout is a grid,
    normalizing per axis makes the weights of all tiles sum to 1 everywhere.
    """
    weights = []
    for i, (r0, r1, _, _) in enumerate(spans):
        w = np.ones(r1 - r0)
        left = spans[i - 1][1] - r0 if i > 0 else 0  # tiles touch but need not overlap
        right = r1 - spans[i + 1][0] if i < len(spans) - 1 else 0
        if left > 0:
            w[:left] = np.minimum(w[:left], np.arange(1, left + 1) / (left + 1))
        if right > 0:
            w[-right:] = np.minimum(w[-right:], np.arange(right, 0, -1) / (right + 1))
        weights.append(w)
    total = np.zeros(n)
    for (r0, r1, _, _), w in zip(spans, weights, strict=True):
        total[r0:r1] += w
    return [w / total[r0:r1] for (r0, r1, _, _), w in zip(spans, weights, strict=True)]


def _check_output(y: Any, tile_shape: tuple[int, ...], what: str) -> np.ndarray:
    """``func``'s output as an array whose last dims are ``tile_shape``."""
    y = np.asarray(y)
    k = len(tile_shape)
    if y.ndim < k or y.shape[y.ndim - k :] != tile_shape:
        raise InputError(
            f"func returned an array of shape {y.shape} for {what}; expected the tile's shape "
            f"{tile_shape} as its last {k} dimension(s), optionally after leading dimensions "
            f"such as channels"
        )
    return y


def _output_dtype(dtype: Any, out: Any, first: np.dtype, blend: str) -> np.dtype:
    if out is not None:
        if dtype is not None and np.dtype(dtype) != np.dtype(out.dtype):
            raise InputError(f"dtype={dtype!r} differs from the dtype of out ({out.dtype})")
        dtype = out.dtype
    if dtype is None:
        dtype = np.result_type(first, np.float32) if blend == "linear" else first
    dtype = np.dtype(dtype)
    if blend == "linear" and dtype.kind != "f":
        raise InputError(
            f"blend='linear' averages tile outputs and needs a floating output dtype, got "
            f"{dtype}; pass dtype=np.float32 or use blend='crop'"
        )
    return dtype


def _add_into(out: Any, region: tuple[slice, ...], values: np.ndarray) -> None:
    if isinstance(out, np.ndarray):
        out[region] += values
    else:  # Zarr and other array stores: read, add, write back
        out[region] = np.asarray(out[region]) + values


def apply_tiled(
    func: Callable[[np.ndarray], Any],
    image: Any,
    *,
    tile_shape: Any,
    overlap: Any = 0,
    blend: str = "crop",
    batch_size: int = 1,
    dtype: Any = None,
    out: Any = None,
    progress: bool | Callable[[int, int], Any] = False,
) -> Any:
    """Apply ``func`` to ``image`` tile by tile and stitch the results.

    Parameters
    ----------
    func : callable
        Maps a tile (an ndarray of the tile's read shape, a copy that ``func``
        may modify) to an array whose last ``image.ndim`` dimensions equal the
        tile's shape. Extra leading dimensions (e.g. output channels) are kept:
        the result has shape ``extra_leading + image.shape``.
    image : array_like or dask.array.Array
        The input. NumPy arrays and ``numpy.memmap`` are read tile by tile.
    tile_shape : int or sequence of (int or None)
        Shape read per tile, halo included; ``None`` or ``-1`` for a whole
        axis (see :func:`iter_tiles`).
    overlap : int or sequence of int
        Halo on each side of a tile: at least the radius of the operation
        (e.g. ``ceil(4 * sigma)`` for a Gaussian with ``truncate=4``).
    blend : {"crop", "linear"}
        ``"crop"``: each output pixel comes from the one tile that owns it,
        with its halo discarded. For any local operation whose radius is at
        most ``overlap`` the result equals untiled processing exactly.
        ``"linear"``: the outputs of overlapping tiles are averaged with
        weights that ramp linearly across each overlap, normalized to sum to
        1, so seams fade out. Use it for learned models whose predictions are
        less reliable near tile edges; it needs a floating output dtype and
        equals ``"crop"`` wherever a single tile covers a pixel.
    batch_size : int
        With ``batch_size > 1``, ``func`` receives tiles stacked along a new
        leading axis, shape ``(B, *tile)`` with ``B <= batch_size`` (the last
        batch may be smaller), and must return ``(B, ...)``: one output per
        tile, as above. Useful to fill a GPU.
    dtype : data-type, optional
        Output dtype. Default: the dtype of ``func``'s first output
        (promoted to at least float32 with ``blend="linear"``), or the dtype
        of ``out``.
    out : array, optional
        Preallocated output of shape ``extra_leading + image.shape`` (NumPy
        array, ``numpy.memmap``, Zarr array) written tile by tile, so memory
        stays bounded by a few tiles; it is returned.
    progress : bool or callable
        ``True`` shows a rich progress bar; a callable is called as
        ``progress(done, total)`` after each batch of tiles. Ignored for Dask
        input.

    Returns
    -------
    numpy.ndarray, dask.array.Array or ``out``
        For Dask input (and no ``out``), a lazy Dask array computed with
        :func:`dask.array.map_overlap` (``depth=overlap``,
        ``boundary="none"``, halo trimmed) on blocks rechunked so that their
        cores are at most ``tile_shape - 2 * overlap`` (but at least
        ``overlap``, as Dask takes halos from neighbouring blocks only).
        Blocks at the image border have no outer halo, so ``func`` must
        accept varying shapes there. ``func`` is called once eagerly on the first tile to learn the
        output dtype and leading dimensions. ``blend="linear"`` falls back to
        crop semantics on Dask. With ``out``, the Dask result is stored into
        it and ``out`` is returned.

    Raises
    ------
    InputError
        For an invalid image, blend, batch size, tile layout or ``out``, or
        when ``func`` returns an array of the wrong shape (the message names
        the tile and the expected shape).

    Examples
    --------
    >>> from scipy import ndimage as ndi
    >>> image = np.random.default_rng(0).random((100, 80), dtype=np.float32)
    >>> tiled = apply_tiled(
    ...     lambda t: ndi.gaussian_filter(t, 2), image, tile_shape=32, overlap=9
    ... )
    >>> bool(np.allclose(tiled, ndi.gaussian_filter(image, 2), atol=1e-6))
    True
    >>> apply_tiled(lambda t: np.stack([t, -t]), image, tile_shape=32).shape
    (2, 100, 80)
    """
    image = check_array(image, name="image", finite=False)
    if blend not in BLENDS:
        raise InputError(f"blend must be one of {BLENDS}, got {blend!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if batch_size < 1:
        raise InputError(f"batch_size must be an integer >= 1, got {batch_size}")
    read_shape, halos = _tile_and_overlap(image.shape, tile_shape, overlap)
    if is_dask(image):
        return _apply_dask(func, image, read_shape, halos, blend, batch_size, dtype, out)
    spans = [_axis_spans(n, t, o) for n, t, o in zip(image.shape, read_shape, halos, strict=True)]
    return _apply_numpy(func, image, spans, blend, batch_size, dtype, out, progress)


def _call(func: Callable, tiles: list[np.ndarray], batch_size: int) -> list[np.ndarray]:
    """Run ``func`` on copies of tiles (one at a time, or stacked when ``batch_size > 1``).

    ``func`` always gets a fresh array, so it may work in place without
    touching the input.
    """
    if batch_size == 1:
        return [func(np.array(tiles[0]))]
    ys = func(np.stack([np.asarray(t) for t in tiles]))
    if getattr(ys, "shape", (None,))[0] != len(tiles):
        raise InputError(
            f"func returned shape {getattr(ys, 'shape', type(ys).__name__)} for a batch of "
            f"{len(tiles)} tiles; with batch_size > 1 it must return one output per tile "
            f"along the first axis"
        )
    return list(ys)


def _apply_numpy(
    func: Callable,
    image: np.ndarray,
    spans: list[list[_Span]],
    blend: str,
    batch_size: int,
    dtype: Any,
    out: Any,
    progress: Any,
) -> Any:
    tiles = list(_tiles_from_spans(spans))
    read_shape = tuple(s[0][1] - s[0][0] for s in spans)
    weights = (
        [_axis_weights(s, n) for s, n in zip(spans, image.shape, strict=True)]
        if blend == "linear"
        else None
    )
    logger.debug(
        "apply_tiled: %d tile(s) of shape %s over image %s, blend=%s",
        len(tiles),
        read_shape,
        image.shape,
        blend,
    )
    lead: tuple[int, ...] | None = None
    with progress_reporter(progress, len(tiles), "tiles") as update:
        for start in range(0, len(tiles), batch_size):
            batch = tiles[start : start + batch_size]
            outputs = _call(func, [image[t.read] for t in batch], batch_size)
            for tile, y in zip(batch, outputs, strict=True):
                y = _check_output(y, read_shape, f"tile {tile.index} (read region {tile.read})")
                if lead is None:
                    lead = y.shape[: y.ndim - image.ndim]
                    dtype = _output_dtype(dtype, out, y.dtype, blend)
                    out = _prepare_out(out, lead + image.shape, dtype)
                elif y.shape[: y.ndim - image.ndim] != lead:
                    raise InputError(
                        f"func returned shape {y.shape} for tile {tile.index} but "
                        f"{lead + read_shape} for the first tile; the leading dimensions "
                        f"must be the same for every tile"
                    )
                keep = (slice(None),) * len(lead)
                if weights is None:
                    out[keep + tile.write] = y[keep + tile.crop]
                else:
                    _blend_into(out, y, tile, spans, weights, keep, dtype)
            update(start + len(batch))
    return out


def _prepare_out(out: Any, shape: tuple[int, ...], dtype: np.dtype) -> Any:
    if out is None:
        return np.empty(shape, dtype)
    if tuple(out.shape) != shape:
        raise InputError(
            f"out has shape {tuple(out.shape)}; expected {shape} (the leading dimensions of "
            f"func's output followed by the image shape)"
        )
    return out


def _blend_into(
    out: Any,
    y: np.ndarray,
    tile: Tile,
    spans: list[list[_Span]],
    weights: list[list[np.ndarray]],
    keep: tuple[slice, ...],
    dtype: np.dtype,
) -> None:
    """Add a tile's weighted output to ``out`` (tiles must come in C order).

    The part of the tile no earlier tile has touched (a box: along each axis,
    past the previous tile's read window) is zeroed first, so ``out`` needs no
    initialization.
    """
    w = reduce(np.multiply.outer, (weights[a][i] for a, i in enumerate(tile.index)))
    fresh = tuple(
        slice(max(s[i][0], s[i - 1][1]) if i else s[i][0], s[i][1])
        for s, i in zip(spans, tile.index, strict=True)
    )
    out[keep + fresh] = 0
    _add_into(out, keep + tile.read, (y * w.astype(dtype)).astype(dtype, copy=False))


def _dask_chunks(n: int, t: int, o: int) -> tuple[int, ...]:
    """Balanced chunks with cores of at most ``t - 2 * o`` and at least ``o`` (for Dask)."""
    if o == 0:
        return (n,) if t >= n else (t,) * (n // t) + ((n % t,) if n % t else ())
    k = -(-n // (t - 2 * o))
    while k > 1 and n // k < o:  # map_overlap takes halos from the next chunk only
        k -= 1
    return tuple(n // k + (1 if i < n % k else 0) for i in range(k))


def _apply_dask(
    func: Callable,
    image: Any,
    read_shape: tuple[int, ...],
    halos: tuple[int, ...],
    blend: str,
    batch_size: int,
    dtype: Any,
    out: Any,
) -> Any:
    import dask.array as da

    if blend != "crop":
        logger.warning("blend=%r is not implemented for Dask input; using 'crop'", blend)
    ndim = image.ndim
    first = np.array(image[tuple(slice(0, t) for t in read_shape)])
    y0 = _check_output(_call(func, [first], batch_size)[0], read_shape, "the first tile")
    lead = y0.shape[: y0.ndim - ndim]
    dtype = _output_dtype(dtype, out, y0.dtype, "crop")
    keep = (slice(None),) * len(lead)
    x = image.rechunk(
        tuple(_dask_chunks(n, t, o) for n, t, o in zip(image.shape, read_shape, halos, strict=True))
    )

    def process_block(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        where = tuple(block_info[0]["chunk-location"]) if block_info else (0,) * ndim
        y = _check_output(_call(func, [block], batch_size)[0], block.shape, f"Dask block {where}")
        if y.shape[: y.ndim - ndim] != lead:
            raise InputError(
                f"func returned shape {y.shape} for Dask block {where} but {y0.shape} for the "
                f"first tile; the leading dimensions must be the same for every tile"
            )
        num = block_info[0]["num-chunks"] if block_info else (1,) * ndim
        trim = tuple(
            slice(o if i > 0 else 0, size - (o if i < k - 1 else 0))
            for size, o, i, k in zip(block.shape, halos, where, num, strict=True)
        )
        return y[keep + trim].astype(dtype, copy=False)

    extra = {"new_axis": list(range(len(lead)))} if lead else {}
    result = da.map_overlap(
        process_block,
        x,
        depth=dict(enumerate(halos)),
        boundary="none",
        trim=False,  # trimmed in process_block, which also handles the leading dimensions
        allow_rechunk=False,
        dtype=dtype,
        meta=np.empty((0,) * (len(lead) + ndim), dtype),
        chunks=tuple((n,) for n in lead) + x.chunks,
        **extra,
    )
    if out is None:
        return result
    _prepare_out(out, lead + image.shape, dtype)
    da.store(result, out, lock=True)
    return out


def tile_shape_for_budget(
    shape: Sequence[int],
    itemsize: int,
    *,
    max_bytes: int,
    overlap: Any = 0,
    axes_tiled: Sequence[int] | None = None,
) -> tuple[int, ...]:
    """Largest roughly cubic tile whose read region fits in ``max_bytes``.

    Parameters
    ----------
    shape : sequence of int
        Shape of the image.
    itemsize : int
        Bytes per pixel of what is held per tile (e.g. 4 for float32; multiply
        by the number of channels or by a model's memory factor as needed).
    max_bytes : int
        Memory budget for one tile's read region (halo included).
    overlap : int or sequence of int
        Halo per side that will be used with the tiles; each tiled axis keeps
        a core of at least one pixel.
    axes_tiled : sequence of int, optional
        Axes that may be split (e.g. the spatial ones); the others are taken
        whole. Default: all axes.

    Returns
    -------
    tuple of int
        A ``tile_shape`` for :func:`iter_tiles` / :func:`apply_tiled`: the
        same side ``s`` on every tiled axis (clipped to the axis), the whole
        axis elsewhere.

    Raises
    ------
    InputError
        When even the smallest tile with a core does not fit in ``max_bytes``.

    Examples
    --------
    >>> tile_shape_for_budget((2, 4096, 4096), 4, max_bytes=2**22, axes_tiled=(1, 2))
    (2, 724, 724)
    """
    shape = _check_shape(shape)
    ndim = len(shape)
    halos = [int(o) for o in _per_axis(overlap, ndim, "overlap")]
    if any(o < 0 for o in halos):
        raise InputError(f"overlap must be >= 0 on every axis, got {tuple(halos)}")
    if itemsize < 1 or max_bytes < 1:
        raise InputError(
            f"itemsize and max_bytes must be positive, got itemsize={itemsize}, "
            f"max_bytes={max_bytes}"
        )
    if axes_tiled is None:
        tiled = list(range(ndim))
    else:
        tiled = []
        for a in axes_tiled:
            if not -ndim <= a < ndim:
                raise InputError(f"axes_tiled has axis {a}, outside a {ndim}-D shape {shape}")
            tiled.append(a % ndim)

    def tile(side: int) -> tuple[int, ...]:
        # the same side on every tiled axis, but never less than a one-pixel core
        return tuple(
            min(max(side, 2 * halos[a] + 1), n) if a in tiled else n for a, n in enumerate(shape)
        )

    def nbytes(side: int) -> int:
        return itemsize * math.prod(tile(side))

    if nbytes(1) > max_bytes:
        raise InputError(
            f"max_bytes={max_bytes} is too small for tiles of an image of shape {shape} with "
            f"overlap {tuple(halos)}: the smallest tile with a core, {tile(1)}, needs "
            f"{nbytes(1)} bytes"
        )
    lo, hi = 1, max((shape[a] for a in tiled), default=1)
    while lo < hi:  # largest side that fits
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if nbytes(mid) <= max_bytes else (lo, mid - 1)
    return tile(lo)
