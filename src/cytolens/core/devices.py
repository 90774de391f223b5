"""Devices: one place that turns ``device="auto"|"cpu"|"cuda"|"mps"`` into a torch device,
and scoped, thread-safe limits on the CPU threads of torch and of the BLAS libraries."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any

from cytolens.core.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["DEVICES", "blas_threads", "resolve_device", "torch_threads"]

logger = logging.getLogger(__name__)

#: Accepted device names.
DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return the torch device to run on.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda", "mps"} or torch.device
        ``"auto"`` picks CUDA when available, then Apple MPS, else the CPU.
        ``"cuda:1"`` style names select a GPU by index.

    Raises
    ------
    InputError
        For an unknown name, or a device that is not available here.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    import torch

    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    return _resolve(name)


@cache
def _resolve(name: str) -> torch.device:
    import torch

    kind = name.split(":")[0]
    if kind not in DEVICES:
        raise InputError(f"unknown device {name!r}; expected one of {', '.join(DEVICES)}")
    if kind == "auto":
        if torch.cuda.is_available():
            dev = torch.device("cuda")
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            dev = torch.device("mps")
        else:
            dev = torch.device("cpu")
        logger.info("device 'auto' resolved to %s", dev)
        return dev
    if kind == "cuda" and not torch.cuda.is_available():
        raise InputError(
            f"device {name!r} requested but CUDA is not available in this torch build "
            f"({torch.__version__}); use device='cpu' or 'auto'"
        )
    if kind == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise InputError(f"device {name!r} requested but Apple MPS is not available here")
    return torch.device(name)


class _SharedLimit:
    """A process-wide thread count that concurrent scopes lower together and restore once.

    A process-wide setting (such as OpenBLAS's thread count) that each scope saved,
    set and restored itself would end with the value of whichever scope exits last.
    Here the first scope in saves the caller's value; while scopes are active the
    setting is the smallest number any of them asked for; the last one out restores
    the saved value. ``get``/``set`` are only called under the lock.
    """

    def __init__(self, get: Callable[[], Any], set_: Callable[[Any], None]) -> None:
        self._get, self._set = get, set_
        self._lock = threading.Lock()
        self._active: list[int] = []
        self._saved: Any = None

    @contextmanager
    def __call__(self, n: int) -> Iterator[None]:
        with self._lock:
            if not self._active:
                self._saved = self._get()
            self._active.append(n)
            self._set(min(self._active))
        try:
            yield
        finally:
            with self._lock:
                self._active.remove(n)
                self._set(min(self._active) if self._active else self._saved)


def _check_threads(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"thread count must be an integer >= 1, got {n!r}")
    return n


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch's CPU operators on ``n`` threads inside the ``with`` block, then restore.

    torch's setting is per calling thread (it is OpenMP's, and MKL's thread-local
    one): the block changes it for the thread that enters it (and, as
    ``torch.set_num_threads`` does, for threads that start using torch during the
    block), and restores that thread's previous value at its end, also after an
    error. Concurrent callers in other threads keep their own settings, so scopes
    may overlap and exit in any order; nested scopes override and restore in turn.

    Parameters
    ----------
    n : int
        Threads (>= 1). One thread is fastest for many small operations on a busy
        machine, where every multi-threaded operator waits for a descheduled thread.

    Raises
    ------
    InputError
        For ``n`` that is not an integer >= 1.

    Examples
    --------
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    n = _check_threads(n)
    import torch

    before = torch.get_num_threads()
    if before != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


@cache
def _blas_controllers() -> tuple[Any, ...]:
    """threadpoolctl controllers of the BLAS libraries that NumPy and SciPy load (found once)."""
    import numpy  # noqa: F401  (load both BLAS libraries before looking for them)
    import scipy.linalg  # noqa: F401
    from threadpoolctl import ThreadpoolController

    return tuple(ThreadpoolController().select(user_api="blas").lib_controllers)


def _blas_get() -> tuple[int, ...]:
    return tuple(c.num_threads for c in _blas_controllers())


def _blas_set(n: int | tuple[int, ...]) -> None:
    controllers = _blas_controllers()
    wanted = n if isinstance(n, tuple) else (n,) * len(controllers)
    for c, k in zip(controllers, wanted, strict=True):
        if c.num_threads != k:
            c.set_num_threads(k)


_BLAS_LIMIT = _SharedLimit(_blas_get, _blas_set)


@contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Run the BLAS/LAPACK libraries of NumPy and SciPy on at most ``n`` threads in the block.

    Unlike torch's, this setting is process-wide (OpenBLAS). Safe for concurrent
    callers: the first scope in saves the current setting, while scopes overlap
    the smallest ``n`` asked for applies, and the last one out restores the saved
    value (also after an error). BLAS work of other threads during the block runs
    with the lowered setting too. Libraries are those loaded once NumPy and
    :mod:`scipy.linalg` are imported, found at the first call. Tiny BLAS calls,
    such as those of :func:`scipy.optimize.minimize` (L-BFGS-B) on a few
    parameters, are much slower with threads on a busy machine: 5 ms instead of
    0.1 ms per iteration were measured with 2 OpenBLAS threads on 2 loaded cores.

    Parameters
    ----------
    n : int
        Threads (>= 1).

    Examples
    --------
    >>> from threadpoolctl import threadpool_info
    >>> with blas_threads(1):
    ...     sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
    [1]
    """
    with _BLAS_LIMIT(_check_threads(n)):
        yield
