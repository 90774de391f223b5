"""``check_array`` leaves Zarr arrays unread: a Dask array on the array's own chunks."""

from __future__ import annotations

import numpy as np
import pytest

from cytolens.core.errors import InputError
from cytolens.core.validate import check_array, is_dask, is_zarr

zarr = pytest.importorskip("zarr")
da = pytest.importorskip("dask.array")


def test_zarr_array_becomes_dask_on_its_own_chunks_without_a_read(tmp_path, monkeypatch):
    z = zarr.create_array(tmp_path / "a.zarr", shape=(40, 64), chunks=(16, 32), dtype="f4")
    z[:] = np.arange(40 * 64, dtype=np.float32).reshape(40, 64)
    reads: list[int] = []  # sizes of the blocks read (Dask reads an empty one for its meta)
    original = type(z).__getitem__

    def counted(self, key):
        block = original(self, key)
        reads.append(int(np.size(block)))
        return block

    monkeypatch.setattr(type(z), "__getitem__", counted)
    checked = check_array(z, ndim=2)
    assert is_dask(checked) and not any(reads)
    assert checked.chunksize == (16, 32) and checked.dtype == np.float32
    part = np.asarray(checked[18:20, 30:34])  # two chunks' worth, read chunk by chunk
    assert sorted(n for n in reads if n) == [4, 4]
    np.testing.assert_array_equal(part, np.arange(40 * 64).reshape(40, 64)[18:20, 30:34])


def test_sharded_zarr_is_chunked_by_shard(tmp_path):
    z = zarr.create_array(
        tmp_path / "s.zarr", shape=(64, 64), chunks=(8, 8), shards=(32, 64), dtype="u2"
    )
    assert check_array(z).chunksize == (32, 64)


def test_zarr_checks_still_apply_and_other_inputs_are_unchanged():
    z = zarr.zeros((4, 4), dtype="f4")
    with pytest.raises(InputError, match="must be 3-D, got 2-D"):
        check_array(z, ndim=3)
    with pytest.raises(InputError, match="unsupported dtype complex64"):
        check_array(zarr.zeros((4, 4), dtype="c8"))
    assert not is_zarr(zarr.group()) and not is_zarr(np.zeros(3))
    a = np.zeros((4, 4), np.float32)
    lazy = da.zeros((4, 4), chunks=2)
    assert check_array(a) is a and check_array(lazy) is lazy
