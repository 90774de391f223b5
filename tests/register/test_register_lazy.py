"""``register`` on Dask input (lazy, bounded memory) and its scoped torch thread setting."""

from __future__ import annotations

import threading
import tracemalloc

import numpy as np
import pytest

from cytolens.register import register
from cytolens.register.synthetic import random_transform, textured_scene, warped_pair

SIZES = (0.4, 0.2, 0.2)
CHUNKS = (16, 32, 32)


class _CountingArray:
    """Array-like for ``dask.array.from_array`` that fails on any read larger than one chunk."""

    def __init__(self, a: np.ndarray) -> None:
        self.a, self.shape, self.dtype, self.ndim = a, a.shape, a.dtype, a.ndim
        self.largest = 0

    def __getitem__(self, key):
        block = self.a[key]
        assert block.size <= int(np.prod(CHUNKS)), f"read {block.shape}: more than one chunk"
        self.largest = max(self.largest, block.size)
        return block


def _pair(shape=(32, 128, 128)):
    scene = textured_scene((48, 160, 160), sigma=3.0, seed=3)
    true = random_transform(
        "rigid", shape, rng=1, max_shift=3, max_angle_deg=3, pixel_size_um=SIZES
    )
    fixed, moving = warped_pair(scene, shape, true, pixel_size_um=SIZES)
    return fixed, moving, true


def test_register_dask_pools_chunk_by_chunk_in_bounded_memory() -> None:
    da = pytest.importorskip("dask.array")
    fixed, moving, true = _pair()
    wrapped = [_CountingArray(a) for a in (fixed, moving)]
    lazy = [da.from_array(w, chunks=CHUNKS) for w in wrapped]
    budget = fixed.size // 4  # level 1 (voxels pooled 1x2x2) fits, level 0 does not
    small = da.from_array(fixed[:16, :32, :32], chunks=8)
    register(small, small, pixel_size_um=SIZES, device="cpu")  # imports: outside the trace
    tracemalloc.start()
    try:
        found = register(
            *lazy,
            transform="rigid",
            pixel_size_um=SIZES,
            max_voxels=budget,
            device="cpu",
            seed=0,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert found.quality["finest_level"] == 1 and found.converged
    assert all(0 < w.largest <= np.prod(CHUNKS) for w in wrapped)
    # both pooled level-1 copies together are half the float32 size of one image (plus
    # the coarser levels and a few chunks); computing one image whole takes fixed.nbytes
    assert peak < fixed.nbytes, f"peak {peak / 2**20:.2f} MiB"
    # the coarser finest level still gives a sub-voxel fit (at full resolution)
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in fixed.shape], indexing="ij"))
    pts = corners.reshape(3, -1).T * np.array(SIZES)
    err = np.linalg.norm((found.apply_points(pts) - true.apply_points(pts)) / SIZES, axis=1)
    assert err.max() < 0.5


def test_register_dask_within_budget_equals_numpy() -> None:
    da = pytest.importorskip("dask.array")
    fixed, moving, _ = _pair((24, 64, 64))
    a = register(fixed, moving, transform="rigid", pixel_size_um=SIZES, device="cpu")
    b = register(
        da.from_array(fixed, chunks=CHUNKS),
        da.from_array(moving, chunks=CHUNKS),
        transform="rigid",
        pixel_size_um=SIZES,
        device="cpu",
    )
    assert b.quality["finest_level"] == 0
    # same levels and samples; pooling by dask.coarsen vs torch avg_pool differs by rounding
    np.testing.assert_allclose(a.matrix, b.matrix, atol=1e-3)


def test_thread_setting_is_restored_after_concurrent_calls() -> None:
    torch = pytest.importorskip("torch")
    scene = textured_scene((96, 96), seed=4)
    fixed, moving = warped_pair(scene, (64, 64), random_transform("rigid", (64, 64), rng=2))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        results: list = []
        after: list[int] = []

        def work() -> None:
            # each thread has its own torch (OpenMP) setting; a thread's first get_num_threads
            # initializes it from the process default (which other threads' scopes change), so
            # initialize before setting, as a thread that has used torch already is
            torch.get_num_threads()
            torch.set_num_threads(2)
            results.append(register(fixed, moving, transform="rigid", device="cpu"))
            after.append(torch.get_num_threads())

        threads = [threading.Thread(target=work, daemon=True) for _ in range(3)]
        for t in threads:
            t.start()
        results.append(register(fixed, moving, transform="rigid", device="cpu"))
        for t in threads:
            t.join(timeout=120)
        assert len(results) == 4 and all(r.converged for r in results)
        assert after == [2, 2, 2] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def _zarr_pair(tmp_path, monkeypatch, shape=(32, 64, 64)):
    """Two on-disk Zarr views, chunks ``CHUNKS``, and the sizes of every block read from them."""
    zarr = pytest.importorskip("zarr")
    rng = np.random.default_rng(0)
    arrays = [rng.random(shape, dtype=np.float32) for _ in range(2)]
    views = []
    for i, a in enumerate(arrays):
        z = zarr.create_array(tmp_path / f"v{i}.zarr", shape=shape, chunks=CHUNKS, dtype="f4")
        z[:] = a
        views.append(z)
    reads: list[int] = []
    original = type(views[0]).__getitem__

    def counted(self, key):
        block = original(self, key)
        reads.append(int(np.size(block)))
        return block

    monkeypatch.setattr(type(views[0]), "__getitem__", counted)
    return arrays, views, reads


def test_zarr_views_stay_lazy_in_transform_image_and_fuse(tmp_path, monkeypatch) -> None:
    from cytolens.core.validate import is_dask
    from cytolens.register import Transform, transform_image
    from cytolens.register.fusion import fuse

    arrays, views, reads = _zarr_pair(tmp_path, monkeypatch)
    ts = [Transform.identity(3), Transform.from_translation((0.5, 1.5, -2.0))]
    moved = transform_image(views[1], ts[1], device="cpu")
    fused = fuse(views, ts, device="cpu")
    assert is_dask(moved) and is_dask(fused) and not any(reads)  # nothing read yet
    np.testing.assert_allclose(
        np.asarray(moved), transform_image(arrays[1], ts[1], device="cpu"), atol=1e-5
    )
    np.testing.assert_allclose(np.asarray(fused), fuse(arrays, ts, device="cpu"), atol=1e-5)
    # read chunk by chunk (a whole view is 4x a chunk)
    assert 0 < max(reads) <= np.prod(CHUNKS)


def test_zarr_views_fuse_tile_by_tile_into_out_within_memory_mb(tmp_path, monkeypatch) -> None:
    from cytolens.register import Transform
    from cytolens.register.fusion import fuse

    arrays, views, reads = _zarr_pair(tmp_path, monkeypatch)
    ts = [Transform.identity(3), Transform.from_translation((0.5, 1.5, -2.0))]
    out = np.empty(arrays[0].shape, np.float32)
    fuse(views, ts, memory_mb=0.5, out=out, device="cpu")
    np.testing.assert_allclose(out, fuse(arrays, ts, device="cpu"), atol=1e-5)
    assert 0 < max(reads) <= np.prod(CHUNKS)
    # without out, memory_mb sizes the chunks of the lazy result (it was ignored before)
    lazy = fuse(views, ts, memory_mb=0.5, device="cpu")
    # 0.5 MiB / (2 views x 24 bytes) = 10922 voxels: 22**3 at most (mean: no halo), tiles
    # evened out by iter_tiles; the views' chunks are 16x32x32
    assert max(lazy.chunksize) <= 22
    np.testing.assert_allclose(np.asarray(lazy), out, atol=1e-5)


@pytest.mark.slow  # ~20 s on a loaded 2-core machine (tracemalloc slows Dask's graph code)
def test_fuse_tile_by_tile_reads_regions_and_stays_within_budget() -> None:
    da = pytest.importorskip("dask.array")
    from cytolens.register import Transform
    from cytolens.register.fusion import fuse

    shape = (64, 128, 128)
    rng = np.random.default_rng(0)
    arrays = [rng.random(shape, dtype=np.float32) for _ in range(2)]
    wrapped = [_CountingArray(a) for a in arrays]
    views = [da.from_array(w, chunks=CHUNKS) for w in wrapped]
    ts = [Transform.identity(3), Transform.from_translation((0.5, 1.5, -2.0))]
    whole = fuse(arrays, ts)
    out = np.empty(shape, np.float32)
    fuse([v[:8, :32, :32] for v in views], ts, memory_mb=0.25, out=np.empty((8, 32, 32)))
    tracemalloc.start()
    try:
        fuse(views, ts, memory_mb=1, out=out)  # the output is 4 MiB, 4x the budget
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # float32 sampling coordinates relative to each tile's input region: ~1e-6 apart
    np.testing.assert_allclose(out, whole, atol=1e-5)
    # the tiles' arrays plus Dask's per-region graph objects (~1 MiB whatever the size)
    assert peak < 0.5 * out.nbytes, f"peak {peak / 2**20:.2f} MiB"


def test_half_voxel_border_is_the_same_in_every_chunk() -> None:
    from cytolens.register import Transform, transform_image

    image = np.random.default_rng(2).random((48, 40, 40), dtype=np.float32)
    t = Transform.from_translation((0.5, 1.5, -2.0))  # the last plane maps to 47.5: inside
    whole = transform_image(image, t, cval=np.nan, device="cpu")
    chunked = transform_image(image, t, cval=np.nan, chunk_shape=(20, 16, 16), device="cpu")
    np.testing.assert_array_equal(np.isnan(chunked), np.isnan(whole))
    assert not np.isnan(whole[47, 10, 10])
    np.testing.assert_allclose(chunked, whole, atol=1e-5)
