"""Nucleus segmentation of images of any size in bounded memory, chunk by chunk.

:meth:`NucleusSegmenter.segment <cytolens.segment.model.NucleusSegmenter.segment>`
holds the whole plane, its rescaled copy, both network maps and the watershed
in memory (a 6000 x 6000 image peaks near 2.4 GB). :func:`segment_chunked`
gives the same nuclei while holding one chunk at a time:

1. **One pass of statistics** over the plane, read in blocks: the
   normalization percentiles of the *whole* image (exact, from a histogram,
   when the plane holds integers up to 65535 such as uint8/uint16 images;
   otherwise :func:`~cytolens.core.normalize.sample_percentiles` on a strided
   sample, exact below 16 Mi pixels), the median for the polarity rule of
   :func:`~cytolens.segment.preprocess.normalized_plane`, and a coarse map of
   brightness.
2. **The diameter**: given, or estimated once by the network's probes
   (:meth:`~cytolens.segment.model.NucleusSegmenter.estimate_diameter`) on the
   brightest window of at most :data:`ESTIMATE_WINDOW` px (the whole image
   when it is smaller, which is then exactly the whole-plane estimate).
3. **Chunks** (:func:`~cytolens.core.tiling.iter_tiles`) of a read shape
   chosen from a memory budget (:func:`~cytolens.core.tiling.tile_shape_for_budget`)
   or given, with a halo of :data:`HALO_DIAMETERS` nucleus diameters. Each
   chunk's maps are computed on the *global* pixel grids: the rescaled
   plane is sampled as :func:`~cytolens.segment.model.rescale_plane` samples
   the whole plane (same anti-aliasing, same coordinates), the network runs
   on the very tiles (and blending weights) of the whole-plane tile layout
   that touch the chunk, and the maps are resized back the same way. So the
   maps of a chunk equal the whole-plane maps up to float rounding, and the
   watershed sees the same values.
4. **Ownership**: the watershed runs on the chunk with its halo; an object
   belongs to the chunk whose core (the ``write`` region of its tile, a
   partition of the image) holds its centroid, decided in exact integer
   arithmetic so that two chunks that see the same object never both keep
   it. Kept objects are numbered after those of earlier chunks (unique
   labels) and pasted, whole, into the output where it is still background.
5. **Streaming**: the output can be a NumPy array, a ``numpy.memmap`` or a
   Zarr array (e.g. level 0 of an OME-Zarr from :func:`write_labels_ngff`);
   measurements (:func:`cytolens.segment.measure`) are taken per chunk on the
   objects it owns; Dask, Zarr- and TIFF-backed inputs are read one chunk
   region at a time, never whole.

On images that fit in memory the labels equal the whole-plane labels up to
their numbering (same diameter given, same normalization): up to float
rounding in the resampling (which scipy computes with other coordinates
arithmetic), and objects larger than the halo, which are cut.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from cytolens.core.errors import InputError
from cytolens.core.validate import is_dask

__all__ = [
    "AUTO_CHUNK_PIXELS",
    "DEFAULT_CHUNK_MB",
    "HALO_DIAMETERS",
    "ChunkedSegmentation",
    "chunk_read_shape",
    "chunked_output",
    "downsampled",
    "segment_chunked",
    "segment_to_files",
    "use_chunked",
    "write_labels_ngff",
]

logger = logging.getLogger(__name__)

#: Planes with more pixels than this are segmented chunk by chunk by default (4096 x 4096).
AUTO_CHUNK_PIXELS = 4096 * 4096
#: Default memory budget of one chunk (MiB), all its working arrays included.
DEFAULT_CHUNK_MB = 512
#: Halo of a chunk on each side, in nucleus diameters.
HALO_DIAMETERS = 3.0
#: Smallest halo in pixels.
MIN_HALO_PX = 16
#: Side (input px) of the window the diameter is estimated on.
ESTIMATE_WINDOW = 2048
#: Memory (MiB) for network outputs kept for the next chunk.
TILE_CACHE_MB = 160
#: Side of the blocks read by the statistics pass and of the brightness cells.
STATS_BLOCK = 2048
_CELL = 128
#: Bytes held per input pixel of a chunk (raw, normalized, maps, watershed), plus per
#: pixel at the network's scale (rescaled plane, blended maps, tile outputs).
_BYTES_INPUT_PX = 72
_BYTES_NETWORK_PX = 28
_MODE = "mirror"  # what skimage's resize(mode="reflect") hands to scipy.ndimage


@dataclass
class ChunkedSegmentation:
    """What :func:`segment_chunked` returns.

    Attributes
    ----------
    labels : numpy.ndarray or zarr.Array
        0 = background, 1..N nuclei (``out`` when one was given).
    n_objects : int
        N, the number of nuclei.
    diameter : float
        Nucleus diameter used (px), given or estimated.
    inverted : bool
        Whether intensities were inverted (dark nuclei).
    limits : (float, float)
        The normalization percentiles of the whole image.
    n_chunks : int
        Number of chunks.
    read_shape : (int, int)
        Chunk shape read (halo included).
    halo : int
        Halo (px) on each side of a chunk.
    table : pandas.DataFrame or None
        One row per nucleus (:func:`cytolens.segment.measure`) when asked.
    preview : numpy.ndarray or None
        The plane downsampled by ``preview_step`` (every n-th pixel), when asked.
    preview_step : int
        The downsampling step of ``preview``.
    cut : int
        Objects larger than the halo (kept, but possibly cut at the chunk edge).
    """

    labels: Any
    n_objects: int
    diameter: float
    inverted: bool
    limits: tuple[float, float]
    n_chunks: int
    read_shape: tuple[int, int]
    halo: int
    table: Any = None
    preview: np.ndarray | None = None
    preview_step: int = 1
    cut: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def use_chunked(image: Any, *, axes: str | None = None, chunk_shape: Any = None) -> bool:
    """Whether :func:`cytolens.segment.nuclei` takes the chunked path for ``image``.

    Yes for a ``chunk_shape``, a lazy (Dask or Zarr) input, or a plane of more
    than :data:`AUTO_CHUNK_PIXELS` pixels.

    Examples
    --------
    >>> use_chunked(np.zeros((64, 64))), use_chunked(np.zeros((64, 64)), chunk_shape=32)
    (False, True)
    """
    from cytolens.core.image import Image

    if chunk_shape is not None:
        return True
    data = image.data if isinstance(image, Image) else image
    if isinstance(image, Image) and axes is None:
        axes = image.axes
    if not isinstance(data, np.ndarray) and (is_dask(data) or hasattr(data, "chunks")):
        return True
    shape = tuple(getattr(data, "shape", ()))
    if axes is None and (len(shape) == 2 or (len(shape) == 3 and shape[-1] in (3, 4))):
        axes = "YX" if len(shape) == 2 else "YXC"
    if axes is None or len(axes) != len(shape) or not {"Y", "X"} <= set(axes):
        return False  # the whole-plane path names the problem
    return shape[axes.index("Y")] * shape[axes.index("X")] > AUTO_CHUNK_PIXELS


# ----------------------------------------------------------------------------- the plane
class _PlaneReader:
    """Regions of one 2-D float32 plane of any (lazy) image, read on demand."""

    def __init__(self, image: Any, axes: str | None, channel: int | None) -> None:
        from cytolens.core.image import Image
        from cytolens.core.plane import single_plane
        from cytolens.segment.preprocess import SEGMENT_HINT, image_name

        self.name = image_name(image)
        data = image.data if isinstance(image, Image) else image
        if isinstance(image, Image) and axes is None:
            axes = image.axes
        if not (isinstance(data, np.ndarray) or is_dask(data) or hasattr(data, "__getitem__")):
            data = np.asarray(data)
        import dask.array as da

        lazy = data if is_dask(data) else da.from_array(data, chunks=data.shape)
        # validates axes / planes / channels with the messages of the whole-plane path
        plane, _ = single_plane(
            lazy, axes=axes, channel=channel, name=self.name, hint=SEGMENT_HINT, lazy=True
        )
        if axes is None:
            axes = "YX" if data.ndim == 2 else "YXC"
        self.data, self.axes, self.channel = data, axes, channel
        self.shape: tuple[int, int] = tuple(int(n) for n in plane.shape)  # type: ignore[assignment]

    def read(self, rows: slice, cols: slice) -> np.ndarray:
        """The float32 plane over ``rows`` x ``cols`` (as single_plane makes it)."""
        from cytolens.core.plane import single_plane

        where = tuple(rows if a == "Y" else cols if a == "X" else slice(None) for a in self.axes)
        region = np.asarray(self.data[where])
        return single_plane(region, axes=self.axes, channel=self.channel, name=self.name)[0]


def _blocks(shape: tuple[int, int], side: int) -> Iterator[tuple[slice, slice]]:
    for r in range(0, shape[0], side):
        for c in range(0, shape[1], side):
            yield slice(r, min(r + side, shape[0])), slice(c, min(c + side, shape[1]))


def _order_statistic(cum: np.ndarray, k: int) -> float:
    return float(np.searchsorted(cum, k, side="right"))


def _hist_percentile(hist: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` (linear) of integer values 0..65535 from their histogram."""
    cum = np.cumsum(hist)
    n = int(cum[-1])
    index = q / 100 * (n - 1)
    below = math.floor(index)
    a = _order_statistic(cum, below)
    b = _order_statistic(cum, min(below + 1, n - 1))
    # numpy's own interpolation in float32, as on the whole float32 plane
    return float(np.percentile(np.array([a, b], np.float32), 100 * (index - below)))


def _statistics(reader: _PlaneReader, pmin: float, pmax: float) -> dict[str, Any]:
    """One pass over the plane: percentiles, median and a coarse brightness map."""
    from cytolens.core.normalize import sample_percentiles

    h, w = reader.shape
    hist = np.zeros(1 << 16, np.int64)
    exact = True
    cells = np.zeros((-(-h // _CELL), -(-w // _CELL)))
    for rows, cols in _blocks(reader.shape, STATS_BLOCK):
        block = reader.read(rows, cols)
        if not np.isfinite(block).all():
            raise InputError(
                f"{reader.name}: intensities beyond the float32 range (about 3.4e38) cannot be "
                "segmented; rescale the image (e.g. divide it by a constant)"
            )
        if exact:
            lo, hi = float(block.min()), float(block.max())
            ints = lo >= 0 and hi < (1 << 16) and bool((block == np.floor(block)).all())
            if ints:
                hist += np.bincount(block.astype(np.int64).ravel(), minlength=1 << 16)
            else:
                exact = False
        bh, bw = block.shape
        padded = np.zeros((-(-bh // _CELL) * _CELL, -(-bw // _CELL) * _CELL), np.float64)
        padded[:bh, :bw] = block
        sums = padded.reshape(padded.shape[0] // _CELL, _CELL, -1, _CELL).sum(axis=(1, 3))
        cells[
            rows.start // _CELL : rows.start // _CELL + sums.shape[0],
            cols.start // _CELL : cols.start // _CELL + sums.shape[1],
        ] = sums
    if exact:
        lo, hi, median = (_hist_percentile(hist, q) for q in (pmin, pmax, 50.0))
    else:
        import dask.array as da

        lazy = da.from_array(_LazyPlane(reader), chunks=(STATS_BLOCK, STATS_BLOCK))
        lo, hi = sample_percentiles(lazy, pmin, pmax)
        median = sample_percentiles(lazy, 50.0, 100.0)[0]
    return {"limits": (lo, hi), "median": median, "cells": cells, "exact": exact}


class _LazyPlane:
    """The plane as an array-like for Dask (``dask.array.from_array``)."""

    def __init__(self, reader: _PlaneReader) -> None:
        self.reader, self.shape, self.dtype, self.ndim = reader, reader.shape, np.dtype("f4"), 2

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        rows, cols = (slice(*k.indices(n)[:2]) for k, n in zip(key, self.shape, strict=True))
        steps = tuple(k.step or 1 for k in key)
        return self.reader.read(rows, cols)[:: steps[0], :: steps[1]]


def _brightest(cells: np.ndarray, shape: tuple[int, int], side: int) -> tuple[slice, slice]:
    """The ``side`` x ``side`` window (cell-aligned) with the largest sum."""
    k = max(1, side // _CELL)
    kh, kw = min(k, cells.shape[0]), min(k, cells.shape[1])
    integral = np.pad(cells.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = integral[kh:, kw:] - integral[:-kh, kw:] - integral[kh:, :-kw] + integral[:-kh, :-kw]
    iy, ix = np.unravel_index(int(np.argmax(sums)), sums.shape)
    y0 = min(iy * _CELL, max(0, shape[0] - side))
    x0 = min(ix * _CELL, max(0, shape[1] - side))
    return slice(y0, min(y0 + side, shape[0])), slice(x0, min(x0 + side, shape[1]))


# ------------------------------------------------------------------------ global grids
@dataclass(frozen=True)
class _Resampler:
    """Regions of :func:`skimage.transform.resize` (order 1) of a whole plane ``n -> m``."""

    n: tuple[int, int]
    m: tuple[int, int]

    @property
    def identity(self) -> bool:
        return self.n == self.m

    @property
    def factors(self) -> np.ndarray:
        return np.divide(self.n, self.m)

    @property
    def sigma(self) -> np.ndarray | None:
        """Anti-aliasing sigma (skimage: when any axis shrinks)."""
        if not any(b < a for a, b in zip(self.n, self.m, strict=True)):
            return None
        return np.maximum(0, (self.factors - 1) / 2)

    def source(self, out: tuple[slice, slice]) -> tuple[slice, slice]:
        """The input region needed to compute the output region ``out``."""
        if self.identity:
            return out
        sigma = self.sigma
        spans = []
        for axis, s in enumerate(out):
            f = self.factors[axis]
            rad = int(4.0 * sigma[axis] + 0.5) if sigma is not None else 0
            first = math.floor((s.start + 0.5) * f - 0.5) - 1 - rad
            last = math.floor((s.stop - 1 + 0.5) * f - 0.5) + 2 + rad
            spans.append(slice(max(0, first), min(self.n[axis], last + 1)))
        return spans[0], spans[1]

    def __call__(
        self, x: np.ndarray, at: tuple[slice, slice], out: tuple[slice, slice]
    ) -> np.ndarray:
        """The region ``out`` of the resized plane from ``x``, its region ``at`` (float32)."""
        if self.identity:
            return np.asarray(
                x[
                    tuple(
                        slice(o.start - a.start, o.stop - a.start)
                        for o, a in zip(out, at, strict=True)
                    )
                ],
                np.float32,
            )
        x = np.asarray(x, np.float32)
        sigma = self.sigma
        if sigma is not None:
            x = ndi.gaussian_filter(x, sigma, mode=_MODE)
        f = self.factors
        offset = [
            (o.start + 0.5) * f[i] - 0.5 - a.start
            for i, (o, a) in enumerate(zip(out, at, strict=True))
        ]
        shape = tuple(o.stop - o.start for o in out)
        return ndi.affine_transform(
            x, f, offset=offset, output_shape=shape, order=1, mode=_MODE, output=np.float32
        )


class _GlobalTiles:
    """The whole-plane tile layout and blending weights of ``predict_maps`` (``apply_tiled``)."""

    def __init__(self, shape: tuple[int, int], tile_shape: Any, overlap: int) -> None:
        from cytolens.core.tiling import blend_layout

        self.spans, self.weights = blend_layout(shape, tile_shape, overlap)
        # outputs of recent tiles, reused by the next chunk (neighbours share border tiles)
        self.cache: dict[tuple[int, int], np.ndarray] = {}
        self.cache_bytes = TILE_CACHE_MB * 2**20

    def predict(self, segmenter: Any, key: tuple[int, int], tile: np.ndarray) -> np.ndarray:
        """The network's output for tile ``key`` (cached, oldest entries dropped first)."""
        y = self.cache.pop(key, None)
        if y is None:
            y = segmenter._predict_tile(tile)
        self.cache[key] = y
        while len(self.cache) > 1 and sum(v.nbytes for v in self.cache.values()) > self.cache_bytes:
            del self.cache[next(iter(self.cache))]
        return y

    def covering(self, region: tuple[slice, slice]) -> tuple[list[list[int]], tuple[slice, slice]]:
        """Indices (per axis) of the tiles whose read region meets ``region``, and their union."""
        picks, union = [], []
        for spans, s in zip(self.spans, region, strict=True):
            idx = [i for i, (r0, r1, _, _) in enumerate(spans) if r0 < s.stop and r1 > s.start]
            picks.append(idx)
            union.append(slice(spans[idx[0]][0], spans[idx[-1]][1]))
        return picks, (union[0], union[1])


def _chunk_maps(
    segmenter: Any,
    reader: _PlaneReader,
    norm: Any,
    region: tuple[slice, slice],
    fwd: _Resampler,
    back: _Resampler,
    tiles: _GlobalTiles,
) -> tuple[np.ndarray, tuple[np.ndarray, tuple[slice, slice]]]:
    """Maps ``(2, ...)`` on ``region`` (input grid), equal to the whole-plane maps there."""
    need = back.source(region)  # at the network's scale
    picks, union = tiles.covering(need)
    source = fwd.source(union)  # input pixels
    raw = reader.read(*source)
    xs = fwd(norm(raw), source, union)
    maps = np.zeros((2, union[0].stop - union[0].start, union[1].stop - union[1].start), np.float32)
    for i in picks[0]:  # C order, as apply_tiled accumulates
        for j in picks[1]:
            r0, r1 = tiles.spans[0][i][:2]
            c0, c1 = tiles.spans[1][j][:2]
            local = (slice(r0 - union[0].start, r1 - union[0].start),
                     slice(c0 - union[1].start, c1 - union[1].start))  # fmt: skip
            y = tiles.predict(segmenter, (i, j), np.ascontiguousarray(xs[local]))
            w = np.multiply.outer(tiles.weights[0][i], tiles.weights[1][j]).astype(np.float32)
            maps[(slice(None), *local)] += (y * w).astype(np.float32, copy=False)
    out = np.stack([back(m, union, region) for m in maps])
    return out, (raw, source)


# ----------------------------------------------------------------------------- chunking
def _halo(diameter: float) -> int:
    return max(MIN_HALO_PX, math.ceil(HALO_DIAMETERS * diameter))


def _bytes_per_px(scale: float) -> int:
    return math.ceil(_BYTES_INPUT_PX + _BYTES_NETWORK_PX * scale**2)


def chunk_read_shape(
    shape: tuple[int, int],
    diameter: float,
    *,
    scale: float = 1.0,
    chunk_shape: Any = None,
    max_chunk_mb: float = DEFAULT_CHUNK_MB,
) -> tuple[tuple[int, int], int]:
    """The chunk read shape (halo included) and halo for nuclei of ``diameter`` px.

    Parameters
    ----------
    shape : (int, int)
        The plane's shape.
    diameter : float
        Nucleus diameter (px); the halo is :data:`HALO_DIAMETERS` of them.
    scale : float
        Zoom to the network's scale (more memory per pixel when > 1).
    chunk_shape : int or (int, int), optional
        Read shape per chunk; default: the largest square within ``max_chunk_mb``.
    max_chunk_mb : float
        Memory budget of one chunk in MiB.

    Raises
    ------
    InputError
        When the chunk (given, or allowed by the budget) cannot hold a halo of
        :data:`HALO_DIAMETERS` diameters on each side around a core of one
        diameter; the message names the smallest chunk shape and budget that work.

    Examples
    --------
    >>> chunk_read_shape((10000, 10000), 20.0, chunk_shape=1024)
    ((1024, 1024), 60)
    >>> chunk_read_shape((10000, 10000), 20.0, chunk_shape=100)
    Traceback (most recent call last):
    ...
    cytolens.core.errors.InputError: chunk_shape (100, 100) is too small for nuclei of ...
    """
    from cytolens.core.tiling import tile_shape_for_budget

    halo = _halo(diameter)
    need = 2 * halo + max(1, math.ceil(diameter))  # halo on both sides + one nucleus
    per_px = _bytes_per_px(scale)
    min_mb = per_px * need**2 / 2**20
    if chunk_shape is not None:
        sides = chunk_shape if isinstance(chunk_shape, (tuple, list)) else (chunk_shape,) * 2
        if len(sides) != 2 or not all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in sides
        ):
            raise InputError(
                f"chunk_shape must be one or two positive integers, got {chunk_shape!r}"
            )
        read = tuple(min(int(s), n) for s, n in zip(sides, shape, strict=True))
        if any(r < need and r < n for r, n in zip(read, shape, strict=True)):
            raise InputError(
                f"chunk_shape {tuple(int(s) for s in sides)} is too small for nuclei of "
                f"{diameter:.1f} px: each chunk needs a halo of {halo} px ({HALO_DIAMETERS:g} "
                f"diameters) on each side around a core of one nucleus; give at least {need} "
                f"(about {min_mb:.0f} MiB per chunk)"
            )
        return (read[0], read[1]), halo
    if not (isinstance(max_chunk_mb, (int, float)) and max_chunk_mb > 0):
        raise InputError(f"max_chunk_mb must be a positive number, got {max_chunk_mb!r}")
    budget = int(max_chunk_mb * 2**20)
    if budget < per_px * min(need, shape[0]) * min(need, shape[1]):
        raise InputError(
            f"a chunk budget of {max_chunk_mb:g} MiB is too small for nuclei of {diameter:.1f} px "
            f"at this zoom: a chunk of {need} x {need} px (a core of one nucleus and a halo of "
            f"{halo} px = {HALO_DIAMETERS:g} diameters on each side) needs about {min_mb:.0f} MiB; "
            f"give at least {math.ceil(min_mb)} MiB"
        )
    read = tile_shape_for_budget(shape, per_px, max_bytes=budget, overlap=halo)
    return (int(read[0]), int(read[1])), halo


def _owned(
    labels: np.ndarray, region: tuple[slice, slice], core: tuple[slice, slice], shape: tuple
) -> tuple[np.ndarray, int]:
    """Lookup table keeping the objects whose centroid lies in ``core`` (exact), and cut count."""
    n = int(labels.max())
    if n == 0:
        return np.zeros(1, np.int64), 0
    flat = labels.ravel()
    count = np.bincount(flat, minlength=n + 1).astype(np.int64)
    h, w = labels.shape
    rows = np.bincount(flat, weights=np.repeat(np.arange(h, dtype=np.float64), w), minlength=n + 1)
    cols = np.bincount(flat, weights=np.tile(np.arange(w, dtype=np.float64), h), minlength=n + 1)
    sum_y = rows.astype(np.int64) + count * region[0].start  # sums of global coordinates
    sum_x = cols.astype(np.int64) + count * region[1].start
    keep = (
        (sum_y >= count * core[0].start)
        & (sum_y < count * core[0].stop)
        & (sum_x >= count * core[1].start)
        & (sum_x < count * core[1].stop)
        & (count > 0)
    )
    keep[0] = False
    edges = []  # objects reaching an edge of the chunk that is not the image's: possibly cut
    if region[0].start > 0:
        edges.append(labels[0])
    if region[0].stop < shape[0]:
        edges.append(labels[-1])
    if region[1].start > 0:
        edges.append(labels[:, 0])
    if region[1].stop < shape[1]:
        edges.append(labels[:, -1])
    cut = 0
    if edges:
        touching = np.unique(np.concatenate(edges))
        cut = int(keep[touching[touching > 0]].sum())
    return keep, cut


def _write(out: Any, region: tuple[slice, slice], new: np.ndarray) -> None:
    """Paste ``new`` (0 = nothing) into ``out[region]`` where it is still background."""
    if isinstance(out, np.ndarray):
        view = out[region]
        mask = (new > 0) & (view == 0)
        view[mask] = new[mask]
        return
    current = np.asarray(out[region])
    mask = (new > 0) & (current == 0)
    if mask.any():
        current[mask] = new[mask]
        out[region] = current


def segment_chunked(
    segmenter: Any,
    image: Any,
    *,
    diameter: float | None = None,
    pixel_size_um: Any = None,
    axes: str | None = None,
    channel: int | None = None,
    invert: bool | None = None,
    tile_shape: Any = 512,
    stain: str | None = None,
    chunk_shape: Any = None,
    max_chunk_mb: float = DEFAULT_CHUNK_MB,
    out: Any = None,
    measure: bool = False,
    measure_pixel_size_um: Any = None,
    preview_side: int | None = None,
    keep_sample: bool = False,
    progress: Any = False,
) -> ChunkedSegmentation:
    """Segment nuclei chunk by chunk in bounded memory (module notes).

    Parameters
    ----------
    segmenter : NucleusSegmenter
        A loaded model (:meth:`~cytolens.segment.model.NucleusSegmenter.from_pretrained`).
    image : array_like, dask.array.Array, zarr.Array or cytolens.io.Image
        One 2-D plane (as for :func:`cytolens.segment.nuclei`); lazy inputs
        are read one chunk region at a time.
    diameter, pixel_size_um, axes, channel, invert, tile_shape
        As for :func:`cytolens.segment.nuclei` (``tile_shape`` must be an int
        or a pair of ints: the network's tiles inside each chunk).
    stain : {"auto", "fluorescence", "brightfield", "mean"}, optional
        Default: the model's. Chunks see one grey plane (RGB averaged):
        ``"fluorescence"`` keeps it, ``"brightfield"`` inverts it, ``"mean"``
        and ``"auto"`` invert when the whole image's normalized median is
        above 0.4 (``"he"``, colour deconvolution, is not done chunk by chunk).
    chunk_shape : int or (int, int), optional
        Region read per chunk, halo included; default from ``max_chunk_mb``.
    max_chunk_mb : float
        Memory budget of one chunk (MiB) when ``chunk_shape`` is not given.
    out : array, optional
        Output label array of shape (Y, X), integer dtype, all zero (a fresh
        Zarr array, ``numpy.memmap`` or NumPy array), written chunk by chunk.
        Default: a new uint32 NumPy array.
    measure : bool
        Also measure every nucleus in the chunk that owns it
        (:func:`cytolens.segment.measure` columns, centroids in image
        coordinates, rows in label order).
    measure_pixel_size_um : float, (float, float) or dict, optional
        Pixel size for the measurements' um columns.
    preview_side : int, optional
        Also keep the plane downsampled (every n-th pixel) to at most this side.
    keep_sample : bool
        Keep the raw plane of the brightest window of at most
        :data:`ESTIMATE_WINDOW` px (``extra["sample"]``), e.g. to score applicability.
    progress : bool or callable
        Progress over chunks (:func:`cytolens.core.progress.progress_reporter`).

    Returns
    -------
    ChunkedSegmentation

    Raises
    ------
    InputError
        As :func:`cytolens.segment.nuclei`, and for a chunk (or budget) too
        small for the nucleus diameter, naming the smallest that works.

    Examples
    --------
    >>> from cytolens.segment.model import NucleusSegmenter
    >>> seg = NucleusSegmenter.from_pretrained("nuclei-v1", device="cpu")
    >>> yy, xx = np.mgrid[:160, :160]
    >>> img = sum(((yy - cy) ** 2 + (xx - cx) ** 2 < 8**2) for cy, cx in [(40, 40), (80, 120)])
    >>> res = segment_chunked(seg, 100 + 500 * img, diameter=16, chunk_shape=120)
    >>> res.n_objects, res.n_chunks
    (2, 9)
    """
    from cytolens.core.progress import progress_reporter
    from cytolens.segment.classical import checked_diameter_px
    from cytolens.segment.model import network_shape
    from cytolens.segment.preprocess import INVERT_MEDIAN, MIN_SIDE_PX, check_diameter

    reader = _PlaneReader(image, axes, channel)
    name, shape = reader.name, reader.shape
    if min(shape) < MIN_SIDE_PX:
        raise InputError(
            f"{name} has shape {shape}: too small to segment nuclei; each side must be at "
            f"least {MIN_SIDE_PX} px to hold a nucleus with background around it"
        )
    d = checked_diameter_px(diameter, pixel_size_um, shape, name, zoom_to=segmenter.diameter)
    segmenter.check_tile_shape(tile_shape)
    if tile_shape is None or (isinstance(tile_shape, int) and tile_shape == -1):
        raise InputError("chunked segmentation needs network tiles: give tile_shape as pixels")
    normalization = segmenter.normalization
    stats = _statistics(reader, normalization.pmin, normalization.pmax)
    lo, hi = stats["limits"]
    lo32, hi32 = float(np.float32(lo)), float(np.float32(hi))
    stain = getattr(segmenter, "stain", "mean") if stain is None else stain
    if stain not in ("auto", "fluorescence", "brightfield", "mean"):
        raise InputError(
            f"{name}: stain {stain!r} is not available chunk by chunk; use 'auto', "
            "'fluorescence', 'brightfield' or 'mean', or segment a smaller image whole"
        )
    if invert is None and stain in ("fluorescence", "brightfield"):
        invert = stain == "brightfield"
    elif invert is None:
        med = float(normalization.scale(np.float32(stats["median"]), lo32, hi32))
        invert = med > INVERT_MEDIAN

    def norm(raw: np.ndarray) -> np.ndarray:
        x = (raw - np.float32(lo32)) / (np.float32(hi32) - np.float32(lo32) + np.float32(1e-20))
        if normalization.clip:
            np.clip(x, 0, 1, out=x)
        return np.float32(1) - x if invert else x

    sample = None
    if d is None or keep_sample:
        sample = reader.read(*_brightest(stats["cells"], shape, ESTIMATE_WINDOW))
    if d is None:
        estimate, _ = segmenter.estimate_diameter(norm(sample), stain=stain)
        d = check_diameter(estimate, shape, name, estimated=True)
    scale = segmenter.diameter / d
    read_shape, halo = chunk_read_shape(
        shape, d, scale=scale, chunk_shape=chunk_shape, max_chunk_mb=max_chunk_mb
    )
    from cytolens.core.tiling import iter_tiles

    chunks = iter_tiles(shape, read_shape, halo)
    m = network_shape(shape, scale)
    fwd, back = _Resampler(shape, m), _Resampler(m, shape)
    tiles = _GlobalTiles(m, tile_shape, segmenter.overlap)
    if out is None:
        out = np.zeros(shape, np.uint32)
    elif tuple(out.shape) != shape or np.dtype(out.dtype).kind not in "ui":
        raise InputError(
            f"out has shape {tuple(out.shape)} and dtype {out.dtype}; expected {shape} and an "
            "integer dtype"
        )
    step = 1
    if preview_side:
        step = max(1, math.ceil(max(shape) / preview_side))
    preview = (
        np.zeros((-(-shape[0] // step), -(-shape[1] // step)), np.float32) if preview_side else None
    )
    tables, next_id, cut = [], 0, 0
    top = np.iinfo(np.dtype(out.dtype)).max
    logger.info(
        "%s: %d chunk(s) of %s px (halo %d px), nucleus diameter %.1f px",
        name, len(chunks), read_shape, halo, d,
    )  # fmt: skip
    with progress_reporter(progress, len(chunks), "chunks") as update:
        for done, chunk in enumerate(chunks, start=1):
            region = chunk.read
            maps, (raw, source) = _chunk_maps(segmenter, reader, norm, region, fwd, back, tiles)
            labels = segmenter.instances(maps, scale=scale)
            del maps
            keep, n_cut = _owned(labels, region, chunk.write, shape)
            cut += n_cut
            n_keep = int(keep.sum())
            if next_id + n_keep > top:
                raise InputError(
                    f"{name}: more than {top} nuclei do not fit the output dtype {out.dtype}"
                )
            lut = np.zeros(keep.size, np.uint64)
            lut[keep] = np.arange(next_id + 1, next_id + n_keep + 1, dtype=np.uint64)
            new = lut[labels].astype(out.dtype, copy=False)
            _write(out, region, new)
            if measure and n_keep:
                tables.append(
                    _measure_chunk(new, reader, raw, source, region, measure_pixel_size_um)
                )
            if preview is not None:
                core = chunk.write
                rows = slice(-(-core[0].start // step) * step, core[0].stop, step)
                cols = slice(-(-core[1].start // step) * step, core[1].stop, step)
                inner = tuple(
                    slice(s.start - a.start, s.stop - a.start, step)
                    for s, a in zip((rows, cols), source, strict=True)
                )
                sub = (
                    raw[inner]
                    if _inside((rows, cols), source)
                    else reader.read(rows, cols)[::step, ::step]
                )
                preview[rows.start // step : rows.start // step + sub.shape[0],
                        cols.start // step : cols.start // step + sub.shape[1]] = sub  # fmt: skip
            next_id += n_keep
            del labels, new, raw
            update(done)
    if cut:
        logger.warning(
            "%s: %d nuclei reach the edge of their chunk (larger than the %d px halo) and may "
            "be cut; give a larger diameter or chunk_shape",
            name, cut, halo,
        )  # fmt: skip
    table = None
    if measure:
        import pandas as pd

        from cytolens.segment.measure import measure as measure_labels

        table = (
            pd.concat(tables, ignore_index=True)
            if tables
            else measure_labels(np.zeros((1, 1), np.uint8), None, measure_pixel_size_um).iloc[:0]
        )
    return ChunkedSegmentation(
        labels=out,
        n_objects=next_id,
        diameter=float(d),
        inverted=bool(invert),
        limits=(lo32, hi32),
        n_chunks=len(chunks),
        read_shape=read_shape,
        halo=halo,
        table=table,
        preview=preview,
        preview_step=step,
        cut=cut,
        extra={"exact_percentiles": stats["exact"], "sample": sample if keep_sample else None},
    )


def _inside(inner: tuple[slice, slice], outer: tuple[slice, slice]) -> bool:
    return all(i.start >= o.start and i.stop <= o.stop for i, o in zip(inner, outer, strict=True))


def _measure_chunk(
    labels: np.ndarray,
    reader: _PlaneReader,
    raw: np.ndarray,
    source: tuple[slice, slice],
    region: tuple[slice, slice],
    pixel_size_um: Any,
) -> Any:
    """Measure the objects a chunk owns (``labels``: its kept objects, global numbers)."""
    from cytolens.segment.measure import _pixel_size_yx
    from cytolens.segment.measure import measure as measure_labels

    if _inside(region, source):
        values = raw[
            tuple(
                slice(r.start - s.start, r.stop - s.start)
                for r, s in zip(region, source, strict=True)
            )
        ]
    else:
        values = reader.read(*region)
    table = measure_labels(labels, values, pixel_size_um)
    table["centroid_y_px"] += region[0].start
    table["centroid_x_px"] += region[1].start
    size = _pixel_size_yx(pixel_size_um)
    if size is not None:
        table["centroid_y_um"] = table["centroid_y_px"] * size[0]
        table["centroid_x_um"] = table["centroid_x_px"] * size[1]
    return table


# ------------------------------------------------------------------------------ outputs
def downsampled(array: Any, step: int, *, band: int = 2048) -> np.ndarray:
    """Every ``step``-th pixel of a (possibly Zarr) 2-D array, read in bands of rows.

    Examples
    --------
    >>> downsampled(np.arange(36).reshape(6, 6), 4).tolist()
    [[0, 4], [24, 28]]
    """
    h = array.shape[0]
    band = max(step, band // step * step)
    parts = [np.asarray(array[r : min(r + band, h) : step, ::step]) for r in range(0, h, band)]
    return np.concatenate(parts, axis=0)


@contextmanager
def write_labels_ngff(
    path: str | Path,
    shape: tuple[int, int],
    *,
    dtype: Any = np.uint32,
    pixel_size_um: float | None = None,
    chunks: int = 1024,
) -> Iterator[Any]:
    """An OME-Zarr (NGFF 0.5) label image written chunk by chunk, atomically.

    Yields level 0 as a Zarr array (all zero) to fill; on exit the coarser
    levels are made by taking every 2nd, 4th, ... pixel (labels are never
    averaged), the multiscales metadata is written, and the folder is renamed
    to ``path`` (:func:`cytolens.core.files.atomic_path`: nothing is left under
    ``path`` if anything fails).

    Examples
    --------
    >>> import tempfile
    >>> from cytolens.io import imread
    >>> target = Path(tempfile.mkdtemp()) / "labels.ome.zarr"
    >>> with write_labels_ngff(target, (64, 64), pixel_size_um=0.5) as z:
    ...     z[10:20, 10:20] = 7
    >>> img = imread(target)
    >>> img.axes, int(np.asarray(img.data).max()), img.pixel_size_um
    ('YX', 7, {'Y': 0.5, 'X': 0.5})
    """
    import zarr
    from zarr.codecs import ZstdCodec

    from cytolens.core.files import atomic_path, is_zarr_store
    from cytolens.io.ngff import pyramid_factors

    path = Path(path)
    size = float(pixel_size_um) if pixel_size_um else None
    with atomic_path(path, replace_folder=is_zarr_store(path)) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        side = (min(chunks, shape[0]), min(chunks, shape[1]))
        level0 = group.create_array(
            "s0", shape=shape, chunks=side, dtype=dtype, fill_value=0,
            compressors=ZstdCodec(level=3),
        )  # fmt: skip
        yield level0
        factors = [1, *pyramid_factors(*shape)]
        datasets = []
        for i, f in enumerate(factors):
            if i:
                small = (-(-shape[0] // f), -(-shape[1] // f))
                level = group.create_array(
                    f"s{i}", shape=small,
                    chunks=(min(chunks, small[0]), min(chunks, small[1])),
                    dtype=dtype, fill_value=0, compressors=ZstdCodec(level=3),
                )  # fmt: skip
                band = max(f, 4 * chunks // f * f)
                for r in range(0, shape[0], band):
                    part = np.asarray(level0[r : min(r + band, shape[0]) : f, ::f])
                    level[r // f : r // f + part.shape[0]] = part
            unit = size if size is not None else 1.0
            datasets.append(
                {
                    "path": f"s{i}",
                    "coordinateTransformations": [{"type": "scale", "scale": [unit * f] * 2}],
                }
            )
        axes = [{"name": a, "type": "space"} for a in "yx"]
        if size is not None:
            for a in axes:
                a["unit"] = "micrometer"
        group.attrs["ome"] = {
            "version": "0.5",
            "multiscales": [{"axes": axes, "datasets": datasets, "name": path.name.split(".")[0]}],
        }


def chunked_output(image: Any, label_format: str = "auto", *, axes: str | None = None) -> bool:
    """Whether ``cytolens segment nuclei`` segments ``image`` chunk by chunk (``--format``).

    ``"zarr"`` always; ``"auto"`` for the images :func:`use_chunked` picks; ``"tif"`` too
    for those (the labels are then held whole to write the TIFF).

    Examples
    --------
    >>> chunked_output(np.zeros((64, 64)), "zarr"), chunked_output(np.zeros((64, 64)))
    (True, False)
    """
    return label_format == "zarr" or use_chunked(image, axes=axes)


def segment_to_files(
    segmenter: Any,
    image: Any,
    *,
    out: Path,
    stem: str,
    name: str,
    options: dict[str, Any],
    pixel_size_um: float | None,
    tile_shape: Any = 512,
    zarr: bool = True,
    preview_side: int = 2048,
) -> tuple[dict[str, Any], Any, Path]:
    """The segment CLI's outputs of one image, in bounded memory.

    ``STEM_labels.ome.zarr`` (written chunk by chunk; ``STEM_labels.tif`` with
    ``zarr=False``), ``STEM_nuclei.csv`` (measured per chunk) and
    ``STEM_overlay.png`` (outlines on a copy downsampled to at most
    ``preview_side`` px). On any failure the files written are removed.

    Returns
    -------
    row : dict
        The CLI's summary row (nuclei, median area, file names, applicability
        scored on the window the diameter was estimated on).
    table : pandas.DataFrame
        Measurements, with an ``image`` column.
    overlay : pathlib.Path
    """
    import shutil

    from cytolens.core.files import atomic_path
    from cytolens.io import imwrite
    from cytolens.models.applicability import score_input
    from cytolens.report import overlay_outlines
    from cytolens.segment.whole_cells import whole_cell_stain_score

    shape = _PlaneReader(image, None, options.get("channel")).shape
    suffix = "ome.zarr" if zarr else "tif"
    targets = {
        "labels": out / f"{stem}_labels.{suffix}",
        "csv": out / f"{stem}_nuclei.csv",
        "overlay": out / f"{stem}_overlay.png",
    }
    kwargs = dict(
        options, tile_shape=tile_shape, measure=True, measure_pixel_size_um=pixel_size_um,
        preview_side=preview_side, keep_sample=True,
    )  # fmt: skip
    written: list[Path] = []
    try:
        if zarr:
            with write_labels_ngff(targets["labels"], shape, pixel_size_um=pixel_size_um) as z:
                res = segment_chunked(segmenter, image, out=z, **kwargs)
            written.append(targets["labels"])
            labels = imread_labels(targets["labels"])
        else:
            res = segment_chunked(segmenter, image, **kwargs)
            labels = res.labels
            stored = labels.astype(np.uint16) if res.n_objects < 2**16 else labels
            imwrite(targets["labels"], stored, axes="YX", pixel_size_um=pixel_size_um)
            written.append(targets["labels"])
        table = res.table
        table.insert(0, "image", name)
        with atomic_path(targets["csv"]) as tmp:
            table.to_csv(tmp, index=False)
        written.append(targets["csv"])
        overlay = overlay_outlines(res.preview, downsampled(labels, res.preview_step))
        imwrite(targets["overlay"], overlay, axes="YXC")
        written.append(targets["overlay"])
    except BaseException:
        for path in written:
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        raise
    trust = score_input(segmenter, res.extra["sample"], name, warn=False, diameter=res.diameter)
    trust["whole_cell_score"] = round(whole_cell_stain_score(res.preview), 4)
    area = "area_um2" if "area_um2" in table else "area_px"
    row = {
        "image": name,
        "nuclei": res.n_objects,
        f"median_{area}": float(table[area].median()) if len(table) else float("nan"),
        "labels": targets["labels"].name,
        "csv": targets["csv"].name,
        "chunks": res.n_chunks,
        **trust,
    }
    return row, table, targets["overlay"]


def imread_labels(path: Path) -> Any:
    """Level 0 of a label OME-Zarr as a Zarr array (nothing read yet)."""
    import zarr

    return zarr.open_group(str(path), mode="r")["s0"]
