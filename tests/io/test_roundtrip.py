"""Write -> read round trips (hypothesis) and lazy reading, on synthetic images."""

from __future__ import annotations

import string
import tempfile
from pathlib import Path

import dask.array as da
import imagecodecs
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cytolens.io import Image, describe, imread, imwrite

FORMATS = (".tif", ".ome.tif", ".ome.zarr")
NAMES = st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=8)


@st.composite
def images(draw: st.DrawFn) -> Image:
    """Random small images: dtype, axes (any order), sizes, pixel sizes, channel names."""
    dtype = np.dtype(draw(st.sampled_from(["uint8", "uint16", "float32"])))
    letters = draw(st.sampled_from(["YX", "ZYX", "CYX", "TYX", "CZYX", "TCYX", "TCZYX"]))
    axes = "".join(draw(st.permutations(letters)))
    shape = tuple(draw(st.integers(2, 3)) if a in "TCZ" else draw(st.integers(2, 24)) for a in axes)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if dtype.kind == "f":
        data = rng.normal(0, 100, shape).astype(dtype)
    else:
        data = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    sizes = {
        a: draw(st.floats(0.01, 20, allow_nan=False))
        for a in "ZYX"
        if a in axes and draw(st.booleans())
    }
    names = None
    if draw(st.booleans()):
        n_c = shape[axes.index("C")] if "C" in axes else 1
        names = tuple(draw(st.lists(NAMES, min_size=n_c, max_size=n_c)))
    return Image(data, axes, sizes, names)


def _assert_same(read: Image, written: Image) -> None:
    assert sorted(read.axes) == sorted(written.axes)
    back = read.transpose(written.axes)
    assert back.dtype == written.dtype
    np.testing.assert_array_equal(np.asarray(back), written.data)
    assert back.pixel_size_um.keys() == written.pixel_size_um.keys()
    for ax, size in written.pixel_size_um.items():
        # ImageJ stores 1/size as a 32-bit rational: ~1e-7 relative error
        assert back.pixel_size_um[ax] == pytest.approx(size, rel=1e-6)
    assert back.channel_names == written.channel_names


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image=images(), suffix=st.sampled_from(FORMATS))
def test_round_trip_preserves_data_axes_sizes_names(image: Image, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = imwrite(Path(folder) / f"img{suffix}", image)
        _assert_same(imread(path), image)


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("dtype", ["bool", "int8", "int16", "uint32", "float64"])
def test_round_trip_other_dtypes(tmp_path: Path, suffix: str, dtype: str) -> None:
    # .tif falls back from ImageJ to a tifffile TIFF for these; numpy and Dask inputs
    data = (np.arange(3 * 20 * 18).reshape(3, 20, 18) % 7).astype(dtype)
    for i, array in enumerate((data, da.from_array(data, chunks=(2, 20, 18)))):
        image = Image(array, "ZYX", {"Z": 3.0, "Y": 0.2, "X": 0.2}, ("dna",))
        read = imread(imwrite(tmp_path / f"a{i}{suffix}", image))
        _assert_same(read, Image(data, "ZYX", image.pixel_size_um, image.channel_names))


def test_rgb_uint8_is_stored_as_rgb_tiff(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 255, (2, 16, 20, 3), dtype=np.uint8)
    for suffix in (".tif", ".ome.tif"):
        read = imread(imwrite(tmp_path / f"rgb{suffix}", data, axes="ZYXC"))
        assert read.axes == "ZYXC"
        assert read.metadata["file_axes"] == "ZYXS"
        np.testing.assert_array_equal(read.data, data)


def test_ome_zarr_is_ngff_05_with_pyramid_and_chunks(tmp_path: Path) -> None:
    import zarr

    data = np.random.default_rng(1).integers(0, 4000, (2, 256, 300), dtype=np.uint16)
    path = imwrite(tmp_path / "cells.ome.zarr", data, axes="CYX", chunks=(1, 64, 128))
    group = zarr.open_group(path, mode="r")
    ome = group.attrs["ome"]
    assert ome["version"] == "0.5"
    levels = [d["path"] for d in ome["multiscales"][0]["datasets"]]
    assert [group[p].shape for p in levels] == [(2, 256, 300), (2, 128, 150), (2, 64, 75)]
    assert group[levels[0]].chunks == (1, 64, 128)
    # level 1 is the 2x2 local mean of level 0
    expected = data.reshape(2, 128, 2, 150, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(group[levels[1]][:], expected, atol=1)


def test_ngff_04_zarr_v2_is_read(tmp_path: Path) -> None:
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_image

    data = np.arange(3 * 40 * 50, dtype=np.float32).reshape(3, 40, 50)
    write_image(
        data,
        str(tmp_path / "v04.zarr"),
        fmt=FormatV04(),
        axes="zyx",
        scale_factors=[],
        scale={"z": 1.5, "y": 0.25, "x": 0.25},
        axes_units={"z": "micrometer", "y": "nanometer", "x": "nanometer"},
    )
    img = imread(tmp_path / "v04.zarr")
    assert img.metadata["ngff_version"] == "0.4"
    assert img.axes == "ZYX"
    assert img.pixel_size_um == pytest.approx({"Z": 1.5, "Y": 0.25e-3, "X": 0.25e-3})
    np.testing.assert_array_equal(img.data, data)


@pytest.mark.parametrize("suffix", [".tif", ".ome.tif", ".ome.zarr", ".png"])
def test_lazy_reading_returns_dask_with_same_values(tmp_path: Path, suffix: str) -> None:
    data = np.random.default_rng(2).integers(0, 60000, (64, 80), dtype=np.uint16)
    path = imwrite(tmp_path / f"a{suffix}", data, axes="YX")
    assert not imread(path).is_lazy  # small: numpy by default
    forced = imread(path, lazy=True)
    by_size = imread(path, lazy_threshold_mb=0.001)  # 10 kB < 64 * 80 * 2 bytes
    for img in (forced, by_size):
        assert img.is_lazy
        assert isinstance(img.data, da.Array)
        np.testing.assert_array_equal(img.data.compute(), data)
    assert not imread(path, lazy=False, lazy_threshold_mb=0.001).is_lazy


def test_dask_array_is_written_chunkwise_and_read_back(tmp_path: Path) -> None:
    data = np.random.default_rng(3).random((5, 3, 48, 40), dtype=np.float32)
    lazy = da.from_array(data, chunks=(2, 3, 48, 40))
    for suffix in FORMATS:
        read = imread(imwrite(tmp_path / f"d{suffix}", lazy, axes="TZYX"), lazy=True)
        np.testing.assert_array_equal(read.transpose("TZYX").data.compute(), data)


def test_sixteen_bit_colour_png_is_not_cut_to_8_bits(tmp_path: Path) -> None:
    data = np.random.default_rng(4).integers(0, 65535, (10, 12, 3), dtype=np.uint16)
    (tmp_path / "rgb16.png").write_bytes(imagecodecs.png_encode(data))
    img = imread(tmp_path / "rgb16.png")
    assert (img.axes, img.dtype) == ("YXC", np.uint16)
    np.testing.assert_array_equal(img.data, data)


def test_axes_override_keeps_matching_metadata(tmp_path: Path) -> None:
    path = imwrite(
        tmp_path / "a.ome.tif", np.zeros((4, 8, 8), np.uint8), axes="ZYX",
        pixel_size_um={"Z": 2.0, "Y": 0.5, "X": 0.5},
    )  # fmt: skip
    img = imread(path, axes="TYX")  # Z was really time
    assert img.axes == "TYX"
    assert img.pixel_size_um == {"Y": 0.5, "X": 0.5}


def test_describe_eager_and_lazy_agree(tmp_path: Path) -> None:
    data = np.random.default_rng(5).normal(10, 3, (3, 30, 40)).astype(np.float32)
    data[0, 0, 0] = np.nan
    path = imwrite(tmp_path / "d.ome.tif", data, axes="ZYX", pixel_size_um=0.5)
    eager, lazy = describe(imread(path)), describe(path)
    assert lazy["lazy"] and not eager["lazy"]
    assert lazy["chunks"] is not None and eager["chunks"] is None
    for key in ("min", "max", "mean"):
        assert lazy[key] == pytest.approx(eager[key], rel=1e-6)
    assert eager["mean"] == pytest.approx(float(np.nanmean(data, dtype=np.float64)))
    assert eager["n_nan"] == 1
    assert eager["format"] == "ome-tiff"
    assert eager["shape"] == [3, 30, 40] and eager["axes"] == "ZYX"
    assert eager["pixel_size_um"] == {"Y": 0.5, "X": 0.5}
    assert eager["size_mb"] == pytest.approx(data.nbytes / 2**20, abs=1e-3)
