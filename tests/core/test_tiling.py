"""Tests of the tiling engine: tiled == untiled, exact partitions, blending, Dask, memory."""

from __future__ import annotations

import math
import tracemalloc

import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi

from cytolens.core.errors import InputError
from cytolens.core.tiling import apply_tiled, iter_tiles, tile_shape_for_budget

MAX_SIDE = {1: 120, 2: 32, 3: 12}  # plus 4 * overlap: at most a few hundred small tiles


@st.composite
def layouts(draw, radius=None):
    """(shape, tile_shape, overlap): odd sizes, whole-axis tiles and tiles larger than the image."""
    ndim = draw(st.integers(1, 3))
    overlap = draw(st.integers(0, 4) if radius is None else radius)
    shape, tile = [], []
    for _ in range(ndim):
        n = draw(st.integers(1, MAX_SIDE[ndim] + 4 * overlap))
        kind = draw(st.sampled_from(["core"] * 4 + ["whole", "larger"]))
        core = draw(st.integers(max(1, n // 6), max(1, n // 2)))
        shape.append(n)
        tile.append({"core": core + 2 * overlap, "whole": None, "larger": n + 7}[kind])
    return tuple(shape), tuple(tile), overlap


def _image(shape, seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "u":
        return rng.integers(0, 1000, size=shape).astype(dtype)
    return rng.random(shape, dtype=np.float32).astype(dtype)


@settings(max_examples=60, deadline=None)
@given(layouts())
def test_iter_tiles_write_regions_partition_the_image(layout):
    shape, tile_shape, overlap = layout
    tiles = iter_tiles(shape, tile_shape, overlap)
    coverage = np.zeros(shape, np.int32)
    for t in tiles:
        coverage[t.write] += 1
        for r, w, c, n in zip(t.read, t.write, t.crop, shape, strict=True):
            assert 0 <= r.start <= w.start < w.stop <= r.stop <= n
            assert (c.start, c.stop) == (w.start - r.start, w.stop - r.start)
            # each owned pixel has `overlap` pixels of context, or the true border
            assert w.start - r.start >= overlap or w.start == 0
            assert r.stop - w.stop >= overlap or w.stop == n
    np.testing.assert_array_equal(coverage, 1)
    expected = tuple(n if t is None else min(t, n) for t, n in zip(tile_shape, shape, strict=True))
    assert {tuple(s.stop - s.start for s in t.read) for t in tiles} == {expected}
    assert [t.index for t in tiles] == sorted(t.index for t in tiles)


@settings(max_examples=40, deadline=None)
@given(
    layouts(radius=st.integers(3, 9)),
    st.sampled_from(["reflect", "nearest", "mirror", "constant"]),  # not "wrap"
    st.integers(0, 2**16),
)
def test_gaussian_tiled_equals_untiled(layout, mode, seed):
    shape, tile_shape, overlap = layout
    sigma = (overlap - 1) / 4  # overlap = ceil(4 * sigma) + 1 >= the radius at truncate=4
    image = _image(shape, seed)
    tiled = apply_tiled(
        lambda t: ndi.gaussian_filter(t, sigma, mode=mode),
        image,
        tile_shape=tile_shape,
        overlap=overlap,
    )
    assert tiled.dtype == np.float32
    # same operations per pixel; float32 tolerance in case summation order differs
    np.testing.assert_allclose(tiled, ndi.gaussian_filter(image, sigma, mode=mode), atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(layouts(radius=st.integers(1, 3)), st.integers(0, 2**16))
def test_median_and_uniform_filters_are_exact(layout, seed):
    shape, tile_shape, overlap = layout
    size = 2 * overlap + 1
    image = _image(shape, seed, np.uint16)  # integers: uniform_filter's running sum is exact
    for filt in (ndi.median_filter, ndi.uniform_filter):
        tiled = apply_tiled(
            lambda t, f=filt: f(t, size), image, tile_shape=tile_shape, overlap=overlap
        )
        np.testing.assert_array_equal(tiled, filt(image, size))


@settings(max_examples=40, deadline=None)
@given(layouts(), st.integers(0, 2**16))
def test_linear_blend_of_identity_returns_the_input(layout, seed):
    shape, tile_shape, overlap = layout
    image = _image(shape, seed)
    result = apply_tiled(lambda t: t, image, tile_shape=tile_shape, overlap=overlap, blend="linear")
    assert result.dtype == np.float32
    # the weights of all tiles sum to 1 at every pixel (up to float rounding)
    np.testing.assert_allclose(result, image, rtol=1e-6)


def test_linear_blend_promotes_integers_and_writes_into_zarr():
    zarr = pytest.importorskip("zarr")
    image = _image((30, 31), 2, np.uint16)
    result = apply_tiled(lambda t: t, image, tile_shape=12, overlap=2, blend="linear")
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, image, rtol=1e-6)
    # Zarr output (chunks unrelated to the tiles), filled tile by tile without initialisation
    out = zarr.create_array(store={}, shape=(2, 30, 31), chunks=(1, 8, 8), dtype="float32")
    out[...] = np.nan
    stored = apply_tiled(
        lambda t: np.stack([t, 2.0 * t]), image, tile_shape=12, overlap=2, blend="linear", out=out
    )
    assert stored is out
    np.testing.assert_allclose(out[...], np.stack([image, 2.0 * image]), rtol=1e-6)


def test_linear_blend_differs_from_crop_only_where_tiles_overlap():
    image = _image((50, 45), 3)
    tile_shape, overlap = (20, 17), 3

    def make_func():
        calls = iter(range(1000))
        return lambda t: t + 10.0 * next(calls)  # a different offset on every tile

    crop = apply_tiled(make_func(), image, tile_shape=tile_shape, overlap=overlap)
    linear = apply_tiled(make_func(), image, tile_shape=tile_shape, overlap=overlap, blend="linear")
    coverage = np.zeros(image.shape, np.int32)
    for t in iter_tiles(image.shape, tile_shape, overlap):
        coverage[t.read] += 1
    single = coverage == 1
    assert single.any() and (~single).any()
    np.testing.assert_array_equal(linear[single], crop[single])
    differs = ~np.isclose(linear, crop)
    assert not differs[single].any()
    assert differs[~single].mean() > 0.9
    # blended values are convex combinations: between the smallest and largest offset
    assert (linear >= image - 1e-4).all() and (linear <= image + 10.0 * 1000).all()


@pytest.mark.parametrize("blend", ["crop", "linear"])
def test_batches_match_single_tiles(blend):
    image = _image((41, 29), 4)

    def func(t):
        return np.stack([ndi.uniform_filter(t, 3, axes=(-2, -1)), t**2], axis=-3)

    seen = []
    batched = apply_tiled(
        lambda b: seen.append(b.shape) or func(b),
        image,
        tile_shape=15,
        overlap=2,
        blend=blend,
        batch_size=4,
    )
    single = apply_tiled(func, image, tile_shape=15, overlap=2, blend=blend)
    np.testing.assert_array_equal(batched, single)
    assert batched.shape == (2, 41, 29)
    assert seen[0] == (4, 15, 15) and all(1 <= s[0] <= 4 for s in seen)


def test_extra_leading_dims_are_kept():
    image = _image((33, 27), 5)

    def func(t):
        return np.stack([ndi.gaussian_filter(t, 1), -t])

    expected = np.stack([ndi.gaussian_filter(image, 1), -image])
    result = apply_tiled(func, image, tile_shape=(12, 11), overlap=5)
    assert result.shape == (2, 33, 27)
    np.testing.assert_allclose(result, expected, atol=1e-6)
    lazy = apply_tiled(func, da.from_array(image, chunks=(5, 7)), tile_shape=(12, 11), overlap=5)
    assert lazy.shape == (2, 33, 27)
    np.testing.assert_allclose(lazy.compute(), expected, atol=1e-6)


@pytest.mark.parametrize("blend", ["crop", "linear"])
def test_dask_input_is_lazy_and_matches_numpy_and_scipy(blend):
    image = _image((61, 47), 6)
    sigma, overlap = 1.5, 7
    calls = []

    def func(t):
        calls.append(t.shape)
        return ndi.gaussian_filter(t, sigma)

    lazy = apply_tiled(
        func, da.from_array(image, chunks=(5, 7)), tile_shape=(24, 22), overlap=overlap, blend=blend
    )
    assert isinstance(lazy, da.Array)
    assert lazy.dtype == np.float32 and lazy.shape == image.shape
    assert len(calls) == 1  # only the probe that learns the output dtype and shape
    eager = apply_tiled(func, image, tile_shape=(24, 22), overlap=overlap)
    computed = lazy.compute()
    np.testing.assert_allclose(computed, eager, atol=1e-6)
    np.testing.assert_allclose(computed, ndi.gaussian_filter(image, sigma), atol=1e-6)
    assert max(s[0] for s in calls) <= 24 and max(s[1] for s in calls) <= 22


def test_dask_input_with_batches_and_out():
    image = _image((30, 22), 7)
    out = np.zeros(image.shape, np.float64)
    result = apply_tiled(
        lambda b: ndi.median_filter(b, size=(1, 3, 3)),
        da.from_array(image, chunks=(7, 5)),
        tile_shape=10,
        overlap=1,
        batch_size=8,
        out=out,
    )
    assert result is out
    np.testing.assert_array_equal(out, ndi.median_filter(image, 3).astype(np.float64))


def test_out_dtype_progress_and_input_not_mutated():
    image = _image((25, 25), 8)
    original = image.copy()
    progress = []

    def func(t):
        t *= 2  # func may modify its tile: it gets a copy
        return t

    out = np.full(image.shape, -1, np.float64)
    result = apply_tiled(
        func,
        image,
        tile_shape=10,
        overlap=1,
        out=out,
        progress=lambda d, n: progress.append((d, n)),
    )
    assert result is out
    np.testing.assert_array_equal(image, original)
    np.testing.assert_allclose(out, 2 * image.astype(np.float64))
    n = len(iter_tiles(image.shape, 10, 1))
    assert progress == [(i, n) for i in range(1, n + 1)]
    assert apply_tiled(func, image, tile_shape=10, dtype=np.uint8, progress=True).dtype == np.uint8


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tile_shape": 8, "overlap": 4}, r"axis 0 is 8.*overlap 4"),
        ({"tile_shape": 8, "overlap": (1, -1)}, r"axis 1 .*-1"),
        ({"tile_shape": (8, 8, 8)}, r"tile_shape has 3 entries.*2 axes"),
        ({"tile_shape": (8, 0)}, r"axis 1 .*got 0"),
        ({"tile_shape": 8, "blend": "cosine"}, r"'cosine'"),
        ({"tile_shape": 8, "batch_size": 0}, r"batch_size.*got 0"),
        ({"tile_shape": 8, "blend": "linear", "dtype": np.uint8}, r"floating.*uint8"),
        ({"tile_shape": 8, "out": np.zeros((20, 21))}, r"out has shape \(20, 21\).*\(20, 20\)"),
        ({"tile_shape": 8, "progress": "yes"}, r"'yes'"),
    ],
)
def test_invalid_options_raise_input_error(kwargs, match):
    with pytest.raises(InputError, match=match):
        apply_tiled(lambda t: t, np.zeros((20, 20), np.float32), **kwargs)


def test_func_returning_wrong_shape_names_the_tile():
    image = np.zeros((20, 20), np.float32)
    with pytest.raises(InputError, match=r"shape \(8, 7\) for tile \(0, 0\).*\(8, 8\)"):
        apply_tiled(lambda t: t[:, :-1], image, tile_shape=8, overlap=1)
    with pytest.raises(InputError, match=r"batch of 2 tiles"):
        apply_tiled(lambda b: b[0], image, tile_shape=8, overlap=1, batch_size=2)
    shapes = iter([(2, 8, 8), (3, 8, 8)])
    with pytest.raises(InputError, match=r"tile \(0, 1\).*leading dimensions"):
        apply_tiled(lambda t: np.zeros(next(shapes)), image, tile_shape=8, overlap=1)
    with pytest.raises(InputError, match=r"image is empty"):
        apply_tiled(lambda t: t, np.zeros((0, 4)), tile_shape=8)


def test_tile_shape_for_budget():
    tile = tile_shape_for_budget((3, 5000, 3000), 4, max_bytes=2**24, overlap=(0, 8, 8))
    assert tile[0] == 3 and tile[1] == tile[2]  # whole small axis; square in y, x
    assert 4 * math.prod(tile) <= 2**24 < 4 * 3 * (tile[1] + 1) ** 2
    assert len(iter_tiles((3, 5000, 3000), tile, (0, 8, 8))) > 1
    # clipped to a thin axis, the other axis takes the rest of the budget
    assert tile_shape_for_budget((10, 100_000), 1, max_bytes=10_000, axes_tiled=(1,)) == (10, 1000)
    assert tile_shape_for_budget((64, 64), 8, max_bytes=2**30) == (64, 64)
    with pytest.raises(InputError, match=r"max_bytes=100 is too small"):
        tile_shape_for_budget((512, 512), 4, max_bytes=100, overlap=8)


def test_memory_stays_bounded_with_memmap_output(tmp_path):
    shape, tile, overlap = (8192, 8192), 1024, 2  # 256 MiB of float32 in, 256 MiB out
    image = np.lib.format.open_memmap(tmp_path / "in.npy", "w+", np.float32, shape)
    for i in range(0, shape[0], 1024):  # fill a band at a time
        image[i : i + 1024] = np.arange(i, i + 1024, dtype=np.float32)[:, None] % 251
    image.flush()
    out = np.lib.format.open_memmap(tmp_path / "out.npy", "w+", np.float32, shape)
    tile_bytes = tile * tile * 4

    tracemalloc.start()
    try:
        result = apply_tiled(
            lambda t: ndi.uniform_filter(t, 5), image, tile_shape=tile, overlap=overlap, out=out
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result is out
    assert peak < 8 * tile_bytes, f"peak {peak / 2**20:.0f} MiB for {tile_bytes / 2**20} MiB tiles"
    assert peak < image.nbytes / 16
    sample = (slice(1000, 1100), slice(4000, 4200))
    np.testing.assert_allclose(
        out[sample], ndi.uniform_filter(np.asarray(image[900:1200, 3900:4300]), 5)[100:200, 100:300]
    )
