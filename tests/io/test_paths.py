"""Expanding command-line inputs into image paths."""

from __future__ import annotations

import numpy as np
import pytest

from cytolens.core.errors import InputError, MissingFileError
from cytolens.io import find_images, imwrite


def test_folders_globs_and_files_expand_in_order_without_repeats(tmp_path):
    for name in ("b.tif", "a.png", "c.ome.zarr"):
        imwrite(tmp_path / name, np.zeros((8, 8), np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    found = find_images([tmp_path / "b.tif", str(tmp_path / "*.png"), tmp_path])
    assert [p.name for p in found] == ["b.tif", "a.png", "c.ome.zarr"]


def test_missing_inputs_name_what_was_given(tmp_path):
    with pytest.raises(MissingFileError, match=r"nope\.tif: no such file"):
        find_images([tmp_path / "nope.tif"])
    with pytest.raises(MissingFileError, match=r"\*\.jpg: no image matches"):
        find_images([str(tmp_path / "*.jpg")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="folder has no image files"):
        find_images([tmp_path / "empty"])


def test_folders_and_patterns_come_in_natural_order(tmp_path):
    for k in (10, 2, 1):
        imwrite(tmp_path / f"z{k}.tif", np.zeros((8, 8), np.uint8))
    assert [p.name for p in find_images([tmp_path])] == ["z1.tif", "z2.tif", "z10.tif"]
    assert [p.name for p in find_images([str(tmp_path / "z*.tif")])] == [
        "z1.tif",
        "z2.tif",
        "z10.tif",
    ]
