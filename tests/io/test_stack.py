"""Reading one file per plane as a stack."""

from __future__ import annotations

import numpy as np
import pytest

from cytolens.core.errors import AxesError, FileFormatError, InputError
from cytolens.io import imread_stack, imwrite


def _planes(tmp_path, n=3, shape=(8, 6)):
    return [
        imwrite(
            tmp_path / f"p{k}.tif",
            np.full(shape, k, np.uint16),
            axes="YX",
            pixel_size_um={"Y": 0.5, "X": 0.5},
        )
        for k in range(n)
    ]


@pytest.mark.parametrize("lazy", [False, True])
def test_planes_are_stacked_in_the_given_order(tmp_path, lazy):
    files = _planes(tmp_path)
    img = imread_stack(files[::-1], lazy=lazy)
    assert img.axes == "ZYX" and img.shape == (3, 8, 6) and img.is_lazy == lazy
    assert img.pixel_size_um == {"Y": 0.5, "X": 0.5}
    assert [int(v) for v in np.asarray(img.data)[:, 0, 0]] == [2, 1, 0]
    assert img.metadata["files"][0].endswith("p2.tif")
    assert imread_stack(files, axis="T").axes == "TYX"


def test_a_plane_that_differs_is_named(tmp_path):
    files = _planes(tmp_path)
    odd = imwrite(tmp_path / "odd.tif", np.zeros((8, 7), np.uint16))
    with pytest.raises(FileFormatError, match=r"odd\.tif has shape \(8, 7\).*p0\.tif"):
        imread_stack([*files, odd], lazy=False)
    lazy = imread_stack([*files, odd], lazy=True)  # found when that plane is read
    with pytest.raises(FileFormatError, match=r"odd\.tif"):
        np.asarray(lazy.data[3])


def test_bad_arguments_are_refused(tmp_path):
    files = _planes(tmp_path)
    with pytest.raises(InputError, match="at least one file"):
        imread_stack([])
    with pytest.raises(AxesError, match="one of 'Z', 'T' or 'C'"):
        imread_stack(files, axis="Y")
    zstack = imwrite(tmp_path / "z.tif", np.zeros((2, 8, 6), np.uint8), axes="ZYX")
    with pytest.raises(AxesError, match=r"z\.tif already has a Z axis"):
        imread_stack([zstack])
