"""Checks on input arrays, shared by every capability.

They turn what would be a traceback deep inside numpy or torch into a
one-line :class:`~cytolens.core.errors.InputError` that names the value and
what was expected.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cytolens.core.errors import InputError

__all__ = ["check_array", "is_dask", "is_zarr"]

_SUPPORTED_KINDS = "biuf"  # bool, signed, unsigned, float


def is_dask(array: Any) -> bool:
    """True for a Dask array, without importing Dask."""
    return type(array).__module__.split(".")[0] == "dask"


def is_zarr(array: Any) -> bool:
    """True for a Zarr array (not a group), without importing Zarr."""
    return type(array).__module__.split(".")[0] == "zarr" and hasattr(array, "chunks")


def _lazy_zarr(array: Any) -> Any:
    """A Zarr array as a Dask array on its own chunks (a shard where it is sharded)."""
    import dask.array as da

    chunks = getattr(array, "shards", None) or array.chunks
    return da.from_zarr(array, chunks=tuple(int(c) for c in chunks))


def check_array(
    array: Any,
    *,
    name: str = "image",
    ndim: int | tuple[int, ...] | None = None,
    finite: bool = True,
) -> Any:
    """Validate an image array and return it (numpy or Dask, never copied).

    Parameters
    ----------
    array : array_like
        The image. Lists are converted with :func:`numpy.asarray`. A Zarr array
        is not read: it is returned as a Dask array on its own chunks (its
        shards when sharded), so that callers that handle Dask input stay
        lazy and those that need NumPy still get it with ``numpy.asarray``.
    name : str
        How the value is called in messages (a parameter or file name).
    ndim : int or tuple of int, optional
        Allowed number of dimensions.
    finite : bool
        Reject NaN and infinity (checked eagerly for numpy arrays only; a Dask
        array is checked chunk by chunk where it is computed).

    Returns
    -------
    numpy.ndarray or dask.array.Array

    Raises
    ------
    InputError
        For an empty array, an unsupported dtype (complex, object, strings),
        the wrong number of dimensions, or non-finite values.

    Examples
    --------
    >>> check_array(np.zeros((4, 4), np.uint16)).shape
    (4, 4)
    >>> check_array(np.zeros((4, 4)), ndim=3)
    Traceback (most recent call last):
    ...
    cytolens.core.errors.InputError: image must be 3-D, got 2-D with shape (4, 4)
    >>> import zarr
    >>> z = zarr.zeros((64, 64), chunks=(16, 32), dtype="uint8")
    >>> check_array(z).chunksize
    (16, 32)
    """
    if is_zarr(array):
        array = _lazy_zarr(array)
    elif not (isinstance(array, np.ndarray) or is_dask(array)):
        try:
            array = np.asarray(array)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{name} is not an array: {exc}") from None
    if array.dtype.kind not in _SUPPORTED_KINDS:
        raise InputError(
            f"{name} has unsupported dtype {array.dtype}; expected bool, integer or float"
        )
    if array.size == 0:
        raise InputError(f"{name} is empty (shape {tuple(array.shape)})")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if array.ndim not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            raise InputError(
                f"{name} must be {want}, got {array.ndim}-D with shape {tuple(array.shape)}"
            )
    if finite and array.dtype.kind == "f" and isinstance(array, np.ndarray):
        bad = ~np.isfinite(array)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise InputError(
                f"{name} has {int(bad.sum())} non-finite value(s) (NaN or inf), first at "
                f"index {first}; replace them (e.g. numpy.nan_to_num) before processing"
            )
    return array
