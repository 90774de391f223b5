"""Human Protein Atlas channel sets and their RGB composite."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from cytolens.core.errors import InputError, MissingFileError
from cytolens.io import hpa_composite, read_hpa

COLOURS = ("red", "green", "blue", "yellow")


def _sample(shared_data: Path) -> tuple[Path, str]:
    folder = shared_data / "classification/hpa/images"
    first = sorted(folder.glob("*_blue.png"))[0]
    return folder, first.name[: -len("_blue.png")]


def test_read_real_sample_three_ways(shared_data: Path) -> None:
    folder, sample = _sample(shared_data)
    img = read_hpa(folder, sample_id=sample)
    assert img.axes == "CYX" and img.shape == (4, 512, 512) and img.dtype == np.uint8
    assert img.channel_names == ("microtubules", "protein", "nucleus", "ER")
    for i, colour in enumerate(COLOURS):
        expected = np.asarray(PILImage.open(folder / f"{sample}_{colour}.png"))
        np.testing.assert_array_equal(img.data[i], expected)
    for other in (folder / sample, folder / f"{sample}_green.png"):
        np.testing.assert_array_equal(read_hpa(other).data, img.data)


def test_composite_of_real_sample(shared_data: Path) -> None:
    folder, sample = _sample(shared_data)
    img = read_hpa(folder, sample_id=sample)
    rgb = hpa_composite(img)
    assert rgb.shape == (512, 512, 3) and rgb.dtype == np.uint8
    r, g, b, y = (img.data[i].astype(np.int32) for i in range(4))
    expected = np.stack([r + y // 2, g + y // 2, b], axis=-1).clip(0, 255)
    np.testing.assert_array_equal(rgb, expected)
    # channels are found by name, whatever their order
    reordered = img.transpose("YXC")
    np.testing.assert_array_equal(hpa_composite(reordered), rgb)


def test_composite_clips_and_scales() -> None:
    rgby = np.array([250, 0, 7, 255], np.uint8).reshape(4, 1, 1)
    assert hpa_composite(rgby)[0, 0].tolist() == [255, 127, 7]
    assert hpa_composite(rgby.astype(np.uint16) * 257)[0, 0].tolist() == [255, 127, 7]
    with pytest.raises(InputError, match="4 channels"):
        hpa_composite(np.zeros((3, 4, 4), np.uint8))


def test_missing_channel_names_file_and_channel(shared_data: Path, tmp_path: Path) -> None:
    folder, sample = _sample(shared_data)
    for colour in COLOURS[:3]:
        shutil.copy(folder / f"{sample}_{colour}.png", tmp_path)
    with pytest.raises(MissingFileError) as exc:
        read_hpa(tmp_path / sample)
    message = str(exc.value)
    assert f"{sample}_yellow.png" in message and "ER" in message and "yellow" in message
