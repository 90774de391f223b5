"""Scoped torch and BLAS thread settings (``cytolens.core.devices``), also across threads."""

from __future__ import annotations

import threading

import pytest

from cytolens.core.devices import blas_threads, torch_threads
from cytolens.core.errors import InputError

torch = pytest.importorskip("torch")


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_torch_threads_sets_and_restores_also_after_an_error(two_threads):
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError), torch_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == 2


def test_nested_scopes_override_and_restore_in_turn(two_threads):
    with torch_threads(1):
        with torch_threads(3):
            assert torch.get_num_threads() == 3
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("main_leaves_first", [True, False])
def test_overlapping_scopes_in_two_threads_restore_each_callers_value(
    two_threads, main_leaves_first
):
    """The caller's value comes back whichever scope exits last (a shared save/restore
    would leave the thread that left first on the lowered setting)."""
    inside, main_left, worker_left = threading.Barrier(2, timeout=30), threading.Event(), []
    seen: dict[str, int] = {}

    def worker() -> None:
        torch.get_num_threads()  # a long-lived thread (torch initialized) with its own setting
        torch.set_num_threads(2)
        with torch_threads(1):
            inside.wait()
            if main_leaves_first:
                main_left.wait(timeout=30)
            seen["worker inside"] = torch.get_num_threads()
        seen["worker after"] = torch.get_num_threads()
        worker_left.append(True)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        with torch_threads(1):
            inside.wait()
            if not main_leaves_first:
                thread.join(timeout=30)
            seen["main inside"] = torch.get_num_threads()
    finally:
        main_left.set()
        thread.join(timeout=30)
    assert worker_left
    assert seen == {"main inside": 1, "worker inside": 1, "worker after": 2}
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_thread_counts_are_refused(bad):
    with pytest.raises(InputError, match="thread count must be an integer >= 1"):
        with torch_threads(bad):
            pass
    with pytest.raises(InputError, match="thread count must be an integer >= 1"):
        with blas_threads(bad):
            pass


def _blas() -> list[int]:
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import scipy.linalg  # noqa: F401  (SciPy's own BLAS, limited too)

    return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]


def test_blas_threads_is_shared_by_overlapping_scopes_and_restored_by_the_last():
    before = _blas()
    if not before:
        pytest.skip("no BLAS library found by threadpoolctl")
    first, second = blas_threads(1), blas_threads(2)
    first.__enter__()
    try:
        assert set(_blas()) == {1}
        second.__enter__()  # overlapping scope (as from another thread): the smallest holds
        assert set(_blas()) == {1}
        first.__exit__(None, None, None)  # the first one leaves: the second's 2 applies now
        assert set(_blas()) == {2}
    finally:
        second.__exit__(None, None, None)
    assert _blas() == before
