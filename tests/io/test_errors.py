"""One test per bad input: each fails with a one-line cytolens error naming the file."""

from __future__ import annotations

import os
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import tifffile

import cytolens.io.tiff
from cytolens.core.errors import AxesError, FileFormatError, InputError, MissingFileError
from cytolens.io import Image, imread, imwrite


def _one_line(exc: pytest.ExceptionInfo[BaseException], name: str) -> None:
    message = str(exc.value)
    assert name in message
    assert "\n" not in message
    assert exc.value.__cause__ is None  # raised "from None": no chained library traceback


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError) as exc:
        imread(tmp_path / "nope.tif")
    _one_line(exc, "nope.tif")
    assert isinstance(exc.value, FileNotFoundError)


def test_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(FileFormatError) as exc:
        imread(path)
    _one_line(exc, "notes.txt")
    with pytest.raises(FileFormatError, match="read_ctc"):  # a plain folder is no image
        imread(tmp_path)


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_truncated_tiff(tmp_path: Path, compression: str | None) -> None:
    path = tmp_path / "cut.tif"
    imwrite(path, np.arange(4 * 64 * 64, dtype=np.uint16).reshape(4, 64, 64), axes="ZYX",
            compression=compression)  # fmt: skip
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(FileFormatError) as exc:
        imread(path)
    _one_line(exc, "cut.tif")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("garbage.tif", os.urandom(2000)),
        ("garbage.png", os.urandom(2000)),
        ("garbage.jpg", b""),
        ("corrupt.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100),
    ],
)
def test_garbage_bytes(tmp_path: Path, name: str, content: bytes) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(FileFormatError) as exc:
        imread(tmp_path / name)
    _one_line(exc, name)


def test_unsupported_dtype_on_write_and_read(tmp_path: Path) -> None:
    data = np.ones((8, 8), np.complex64)
    with pytest.raises(InputError, match="complex64") as exc:
        imwrite(tmp_path / "c.tif", data)
    _one_line(exc, "c.tif")
    assert list(tmp_path.iterdir()) == []
    tifffile.imwrite(tmp_path / "complex.tif", data)  # tifffile can store it; we do not read it
    with pytest.raises(InputError, match="complex64") as exc:
        imread(tmp_path / "complex.tif")
    _one_line(exc, "complex.tif")


def test_axes_not_matching_shape(tmp_path: Path) -> None:
    path = imwrite(tmp_path / "plane.tif", np.zeros((8, 8), np.uint8))
    with pytest.raises(AxesError) as exc:
        imread(path, axes="ZYX")
    _one_line(exc, "plane.tif")
    with pytest.raises(AxesError) as exc:
        imwrite(tmp_path / "out.ome.zarr", np.zeros((2, 8, 8), np.uint8), axes="TZYX")
    _one_line(exc, "out.ome.zarr")
    with pytest.raises(AxesError, match="axes="):  # 4D arrays need explicit axes
        imwrite(tmp_path / "out.tif", np.zeros((2, 2, 8, 8), np.uint8))


def test_unwritable_suffix_and_png_limits(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError) as exc:
        imwrite(tmp_path / "a.jpg", np.zeros((8, 8), np.uint8))
    _one_line(exc, "a.jpg")
    with pytest.raises(InputError) as exc:
        imwrite(tmp_path / "a.png", np.zeros((3, 8, 8), np.float32), axes="ZYX")
    _one_line(exc, "a.png")
    assert list(tmp_path.iterdir()) == []


def _fail() -> np.ndarray:
    raise RuntimeError("disk full")


@pytest.mark.parametrize("suffix", [".tif", ".ome.tif", ".ome.zarr"])
def test_failed_write_leaves_nothing_and_keeps_old_file(tmp_path: Path, suffix: str) -> None:
    good = da.zeros((64, 64), np.uint16)
    bad = da.from_delayed(dask.delayed(_fail)(), (64, 64), np.uint16)
    stack = da.stack([good, good, bad])  # fails on the last plane, mid-write
    fresh = tmp_path / f"fresh{suffix}"
    with pytest.raises(RuntimeError, match="disk full"):
        imwrite(fresh, stack, axes="ZYX")
    assert list(tmp_path.iterdir()) == []  # neither the output nor a temporary

    old = imwrite(tmp_path / f"old{suffix}", np.full((8, 8), 7, np.uint8))
    with pytest.raises(RuntimeError, match="disk full"):
        imwrite(old, stack, axes="ZYX")
    assert sorted(p.name for p in tmp_path.iterdir()) == [old.name]
    np.testing.assert_array_equal(imread(old).data, 7)


def test_writer_crash_after_partial_output_is_cleaned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def partial_then_crash(path: Path, *args: object, **kwargs: object) -> None:
        Path(path).write_bytes(b"II*\x00partial")
        raise OSError("no space left on device")

    monkeypatch.setattr(cytolens.io.tiff.tifffile, "imwrite", partial_then_crash)
    with pytest.raises(OSError, match="no space"):
        imwrite(tmp_path / "a.tif", np.zeros((8, 8), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_its_input(tmp_path: Path) -> None:
    path = imwrite(tmp_path / "in.ome.tif", np.arange(64, dtype=np.uint8).reshape(8, 8))
    before = path.read_bytes()
    for lazy in (False, True):
        img = imread(path, lazy=lazy)
        with pytest.raises(InputError, match="refusing to overwrite") as exc:
            imwrite(path, img)
        _one_line(exc, "in.ome.tif")
    assert path.read_bytes() == before


def test_image_metadata_must_fit(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        imwrite(tmp_path / "a.tif", np.zeros((2, 8, 8), np.uint8), axes="CYX",
                channel_names=["only one"])  # fmt: skip
    _one_line(exc, "a.tif")
    img = Image(np.zeros((2, 8, 8), np.uint8), "CYX")
    with pytest.raises(AxesError, match="transpose"):
        imwrite(tmp_path / "a.tif", img, axes="YXC")
