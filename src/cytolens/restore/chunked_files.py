"""Deconvolving files chunk by chunk with bounded memory, from reading to writing.

What ``cytolens restore deconvolve --chunk-shape`` needs besides
:func:`~cytolens.restore.deconvolve`, so that no step holds more than a few
chunks of a large image:

- :func:`scratch_array`: a temporary on-disk Zarr array next to the output,
  which the chunked deconvolution writes chunk by chunk (instead of a
  float32 copy of the whole image in memory); removed on success, error,
  Ctrl-C or SIGTERM, and by the next run if the process was killed.
- :func:`write_from_scratch`: the final file written from the scratch array
  by :func:`write_output` (atomically): OME-Zarr and 3D TIFFs stream from it
  chunk by chunk or plane by plane.
- :func:`write_output`: :func:`cytolens.io.imwrite` made safe to stop:
  Ctrl-C or SIGTERM leaves no thread writing into a temporary once it is
  removed, so no hidden partial ``.tmp.ome.zarr`` remains.
- :func:`preview`: a small maximum projection of an image of any size, for
  the before/after PNG, read strip by strip (or block by block for Dask).
- :func:`bound_heap` and :func:`release_memory`: make memory freed after
  each chunk go back to the system, so the resident size follows what is
  in use instead of the C heap's high-water mark.
"""

from __future__ import annotations

import ctypes
import logging
import math
import shutil
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from cytolens.core.files import remove_stale_temps, settle_zarr_io
from cytolens.core.validate import is_dask

__all__ = [
    "bound_heap",
    "preview",
    "release_memory",
    "scratch_array",
    "write_from_scratch",
    "write_output",
]

logger = logging.getLogger(__name__)

#: Longest side of a preview, in pixels (the PNG panels are ~400 pixels wide).
PREVIEW_SIDE = 1024
#: Bytes read at a time when a preview or an output is assembled strip by strip.
_STRIP_BYTES = 32 * 2**20
#: Chunk length along Y and X of the scratch array.
_SCRATCH_CHUNK = 512
#: glibc's ``mallopt`` parameter number for the mmap threshold.
_M_MMAP_THRESHOLD = -3


def _pool(block: np.ndarray, step: int) -> np.ndarray:
    """Max-pool the last two axes of ``block`` by ``step`` (edge blocks may be smaller)."""
    if step == 1:
        return block
    for axis in (-2, -1):
        block = np.maximum.reduceat(block, np.arange(0, block.shape[axis], step), axis=axis)
    return block


def _strip_rows(shape: tuple[int, ...], itemsize: int, step: int) -> int:
    """Rows per strip: a multiple of ``step`` whose strip holds about ``_STRIP_BYTES``."""
    per_row = itemsize * math.prod(shape) // shape[-2]
    rows = max(_STRIP_BYTES // max(per_row, 1), 1)
    return max(rows // step, 1) * step


def preview(image: Any, *, max_side: int = PREVIEW_SIDE) -> np.ndarray:
    """A maximum projection of ``image`` small enough to show, read in bounded memory.

    Parameters
    ----------
    image : array_like
        ``(Y, X)`` or ``(Z, Y, X)``: a numpy array (or memmap), a Zarr array
        or anything sliceable with ``shape`` and ``dtype`` (read strip by
        strip along Y), or a Dask array (reduced block by block).
    max_side : int
        Longest side of the result, in pixels.

    Returns
    -------
    numpy.ndarray
        2D, the image's dtype: the maximum over Z (for 3D) of each
        ``step x step`` block, ``step = ceil(max(Y, X) / max_side)``, so small
        bright objects stay visible. For Dask input the blocks restart at
        each chunk boundary (a preview, not a measurement).

    Examples
    --------
    >>> image = np.zeros((3, 100, 60), np.uint16)
    >>> image[1, 50, 30] = 7
    >>> small = preview(image, max_side=25)
    >>> small.shape, int(small.max())
    ((25, 15), 7)
    """
    shape = tuple(int(n) for n in image.shape)
    step = max(1, math.ceil(max(shape[-2:]) / max_side))
    if is_dask(image):
        mip = image.max(axis=0) if image.ndim == 3 else image
        chunks = tuple(tuple(-(-c // step) for c in axis) for axis in mip.chunks)
        return np.asarray(mip.map_blocks(_pool, step, chunks=chunks, dtype=mip.dtype).compute())
    rows = _strip_rows(shape, np.dtype(image.dtype).itemsize, step)
    pieces = []
    for start in range(0, shape[-2], rows):
        strip = np.asarray(image[..., start : start + rows, :])
        pieces.append(_pool(strip.max(axis=0) if strip.ndim == 3 else strip, step))
    return np.concatenate(pieces, axis=0)


def _remove_tree(folder: Path) -> None:
    settle_zarr_io()
    shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def scratch_array(next_to: str | Path, shape: tuple[int, ...]) -> Iterator[Any]:
    """A float32 Zarr array in a temporary folder beside ``next_to``, removed at the end.

    Parameters
    ----------
    next_to : path-like
        The final output; the folder is its hidden sibling
        ``.<stem>.<8 hex>.tmp.zarr``, the name pattern of
        :func:`cytolens.core.files.atomic_path`, so
        :func:`~cytolens.core.files.check_output_file` (through
        :func:`~cytolens.core.files.remove_stale_temps`) removes one left by
        a killed run.
    shape : tuple of int
        ``(Y, X)`` or ``(Z, Y, X)``.

    Yields
    ------
    zarr.Array
        Uncompressed, chunks of one plane by 512 x 512 pixels, zeros where
        nothing was written. Removed on exit, whether the block ended
        normally or by an exception (Ctrl-C and SIGTERM included).

    Examples
    --------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "result.ome.tif"
    >>> with scratch_array(out, (8, 8)) as scratch:
    ...     scratch[2:4, 2:4] = 1.0
    ...     float(scratch[:].sum())
    4.0
    >>> list(out.parent.iterdir())
    []
    """
    import zarr

    next_to = Path(next_to)
    folder = next_to.with_name(f".{next_to.name.split('.')[0]}.{uuid.uuid4().hex[:8]}.tmp.zarr")
    chunks = tuple(min(n, _SCRATCH_CHUNK) for n in shape[-2:])
    if len(shape) == 3:
        chunks = (1, *chunks)
    try:
        yield zarr.create_array(
            store=str(folder),
            shape=shape,
            chunks=chunks,
            dtype="float32",
            compressors=None,
            fill_value=0.0,
        )
    finally:
        _remove_tree(folder)


def write_output(
    path: str | Path,
    data: Any,
    *,
    axes: str,
    pixel_size_um: Mapping[str, float] | None,
    compression: str | None = "default",
) -> Path:
    """:func:`cytolens.io.imwrite` that leaves nothing behind when it is stopped.

    OME-Zarr is written through Dask (by ome-zarr) and Zarr, and neither
    waits for the work it runs in other threads when the main thread is
    interrupted: on SIGTERM or Ctrl-C the temporary store was removed while
    Dask workers or Zarr's I/O thread still wrote chunks into it, which
    recreated it, so hidden partial ``.tmp.ome.zarr`` folders were left. Here
    Dask computes in the calling thread only (synchronous scheduler), and
    after an interruption or error the Zarr writes in flight are waited for
    (:func:`~cytolens.core.files.settle_zarr_io`) and the output's temporaries removed again.

    Parameters
    ----------
    path : path-like
        The output file or OME-Zarr folder.
    data : numpy.ndarray or dask.array.Array
        The image.
    axes : str
        Its axes, e.g. ``"ZYX"``.
    pixel_size_um : mapping, optional
        Pixel sizes to record.
    compression : str or None
        As for :func:`~cytolens.io.imwrite`.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import dask

    from cytolens.io import imwrite

    path = Path(path)
    try:
        with dask.config.set(scheduler="synchronous"):
            return imwrite(
                path, data, axes=axes, pixel_size_um=pixel_size_um or None, compression=compression
            )
    except BaseException:
        settle_zarr_io()
        remove_stale_temps(path.parent, path.name)
        raise


def write_from_scratch(
    path: str | Path,
    scratch: Any,
    *,
    axes: str,
    pixel_size_um: Mapping[str, float] | None,
) -> Path:
    """Write a scratch array to its final file with :func:`write_output`.

    OME-Zarr and 3D TIFF outputs are written from a Dask view of the scratch
    array, chunk by chunk or plane by plane. A 2D TIFF is stored by the
    writer as one page, so it is read into one float32 array first (strip by
    strip, without the second copy a Dask computation would make) and
    written uncompressed (zlib gains little on float32 noise and holds more
    buffers): the only step whose memory grows with the image, as 4 bytes
    per pixel.

    Parameters
    ----------
    path : path-like
        The output file (``.tif``, ``.ome.tif``, ``.ome.zarr``...).
    scratch : zarr.Array
        From :func:`scratch_array`.
    axes : str
        ``"YX"`` or ``"ZYX"``.
    pixel_size_um : mapping, optional
        Pixel sizes to record.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    if scratch.ndim == 2 and not path.name.lower().endswith(".zarr"):
        data = np.empty(scratch.shape, np.float32)
        rows = _strip_rows(scratch.shape, 4, _SCRATCH_CHUNK)
        for start in range(0, scratch.shape[0], rows):
            data[start : start + rows] = scratch[start : start + rows]
        return write_output(path, data, axes=axes, pixel_size_um=pixel_size_um, compression=None)
    import dask.array as da

    return write_output(path, da.from_zarr(scratch), axes=axes, pixel_size_um=pixel_size_um)


def _glibc() -> Any:
    """glibc through ctypes, or None (another platform or C library)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018  (musl has neither)
    except (OSError, AttributeError):
        return None
    return libc


def bound_heap(threshold: int = 2**20) -> None:
    """Serve every allocation of ``threshold`` bytes or more with its own mapping (glibc).

    glibc raises its mmap threshold as buffers are freed (up to 32 MiB), after
    which buffers such as a chunk's float32 copies (tens of MB) come from its
    heap and, once freed, mostly stay resident. A fixed threshold makes each
    large buffer go back to the system when freed: on 2D chunked
    deconvolution it lowers the peak resident size by about a third, at the
    same speed. It applies to the whole process, for its remaining life, so
    only commands call it. A no-op on other platforms and C libraries.

    Parameters
    ----------
    threshold : int
        Size in bytes from which allocations are mapped (glibc's
        ``M_MMAP_THRESHOLD``).
    """
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, int(threshold))


def release_memory() -> None:
    """Return memory freed to the C heap to the operating system (glibc only).

    The chunks' float32 work buffers (a few tens of MB each) are freed after
    every chunk, but glibc keeps much of such freed memory in its heap, where
    it still counts as resident; ``malloc_trim`` hands it back, so the next
    step (e.g. assembling a 2D output) does not add its memory on top. A
    no-op on other platforms and C libraries.
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
