"""Reading the real public files in ../shared/data (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

from cytolens.io import describe, imread

BBBC006 = "focus/bbbc006_subset"


def _first(folder: Path, pattern: str) -> Path:
    files = sorted(folder.glob(pattern))
    if not files:
        pytest.skip(f"no {pattern} in {folder}")
    return files[0]


def test_bbbc006_16bit_png_keeps_16_bits(shared_data: Path) -> None:
    # the BBBC006 ".png" files hold TIFF data; they are read by content, bit depth intact
    path = shared_data / BBBC006 / "BBBC006_z_aligned__a01__s1__w1_10.png"
    img = imread(path)
    assert (img.axes, img.shape, img.dtype) == ("YX", (520, 696), np.uint16)
    assert img.metadata["format"] == "tiff"
    assert img.data.max() > 255
    np.testing.assert_array_equal(img.data, tifffile.imread(path))


def test_real_16bit_png(shared_data: Path) -> None:
    path = shared_data / BBBC006 / "cell_image.png"
    img = imread(path)
    assert (img.axes, img.dtype, img.metadata["format"]) == ("YX", np.uint16, "png")
    np.testing.assert_array_equal(img.data, np.asarray(PILImage.open(path)))


def test_bbbc006_16bit_tiff(shared_data: Path) -> None:
    path = _first(shared_data / BBBC006, "00_mcf-z-stacks-*.tif")
    img = imread(path)
    assert (img.axes, img.shape, img.dtype) == ("YX", (520, 696), np.uint16)
    assert img.pixel_size_um == {}


def test_ctc_lzw_frame_eager_and_lazy(shared_data: Path) -> None:
    path = shared_data / "tracking/ctc/Fluo-N2DH-SIM+/01/t000.tif"
    img = imread(path)
    assert (img.axes, img.shape, img.dtype) == ("YX", (690, 628), np.uint16)
    assert img.metadata["compression"] == "lzw"
    lazy = imread(path, lazy=True)
    np.testing.assert_array_equal(lazy.data.compute(), img.data)


def test_dsb2018_rgba_png(shared_data: Path) -> None:
    path = _first(shared_data / "segmentation/dsb2018/images", "*.png")
    img = imread(path)
    assert img.axes == "YXC" and img.sizes["C"] == 4 and img.dtype == np.uint8
    np.testing.assert_array_equal(img.data, np.asarray(PILImage.open(path)))


def test_bccd_jpeg(shared_data: Path) -> None:
    img = imread(shared_data / "detection/bccd/JPEGImages/BloodImage_00000.jpg")
    assert (img.axes, img.shape, img.dtype) == ("YXC", (480, 640, 3), np.uint8)
    assert img.metadata["format"] == "jpeg"


def test_flowdec_float32_stack(shared_data: Path) -> None:
    path = shared_data / "deconvolution/flowdec/bars-25pct/data.tif"
    img = imread(path)
    assert (img.axes, img.shape, img.dtype) == ("ZYX", (32, 64, 64), np.float32)
    assert img.metadata["file_axes"] == "QYX"  # unnamed plane axis read as Z
    info = describe(img)
    assert info["max"] == pytest.approx(float(img.data.max()))
    assert info["mean"] == pytest.approx(float(img.data.astype(np.float64).mean()))
