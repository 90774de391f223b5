"""Stain-aware input of the nucleus segmenters (issue 22) on real DSB2018 images.

The tune split's images (src/cytolens/segment/dsb2018_split.json): 7 H&E
histology, 1 brightfield, and a few fluorescence images.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import shared

from cytolens.core.errors import InputError
from cytolens.io import imread
from cytolens.segment.preprocess import (
    detect_stain,
    hematoxylin,
    prepared_plane,
)

SPLIT = Path(__file__).resolve().parents[2] / "src" / "cytolens" / "segment" / "dsb2018_split.json"
EXPECTED = {"histology": "he", "brightfield": "brightfield", "fluorescence": "fluorescence"}


def _tune(modality: str, n: int | None = None) -> list[str]:
    return json.loads(SPLIT.read_text())["tune"][modality][:n]


def _image(sample_id: str):
    return imread(shared(f"segmentation/dsb2018/images/{sample_id}.png"))


def _truth(sample_id: str) -> np.ndarray:
    import tifffile

    return tifffile.imread(shared(f"segmentation/dsb2018/labels/{sample_id}.tif"))


@pytest.mark.parametrize("modality", sorted(EXPECTED))
def test_the_stain_is_recognised_on_real_images(modality):
    for sample_id in _tune(modality, 4):
        x, info = prepared_plane(_image(sample_id))
        assert info["stain"] == EXPECTED[modality], sample_id
        # whatever the stain, nuclei come out brighter than the rest
        truth = _truth(sample_id) > 0
        assert x[truth].mean() > x[~truth].mean() + 0.2, sample_id
        assert info["inverted"] == (modality != "fluorescence")


def test_hematoxylin_makes_he_nuclei_bright_and_eosin_dark():
    sample_id = _tune("histology")[0]
    rgb = np.moveaxis(np.asarray(_image(sample_id).data)[..., :3], -1, 0).astype(np.float32)
    h = hematoxylin(rgb)
    truth = _truth(sample_id) > 0
    assert h.dtype == np.float32 and h.shape == truth.shape
    assert np.median(h[truth]) > 2 * np.median(h[~truth])
    x, info = prepared_plane(_image(sample_id), stain="hematoxylin")
    assert info == {"stain": "hematoxylin", "inverted": False}
    assert x[truth].mean() > x[~truth].mean() + 0.2


def test_the_stain_can_be_forced():
    he = _image(_tune("histology")[0])
    mean, info = prepared_plane(he, stain="mean")
    assert info == {"stain": "mean", "inverted": True}  # nuclei-v1's input: inverted mean
    auto, info = prepared_plane(he)
    assert info == {"stain": "he", "inverted": True}
    np.testing.assert_array_equal(auto, mean)  # H&E is given to the model as it was trained
    grey, info = prepared_plane(he, stain="fluorescence")
    assert info == {"stain": "fluorescence", "inverted": False}
    np.testing.assert_allclose(grey, 1 - mean, atol=1e-5)
    with pytest.raises(InputError, match="needs an RGB image"):
        prepared_plane(np.asarray(he.data)[..., 0], stain="hematoxylin")
    with pytest.raises(InputError, match="stain must be one of"):
        prepared_plane(he, stain="dapi")


def test_a_chosen_channel_is_grey_and_a_dark_colour_image_is_fluorescence():
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[8:16, 8:16] = (200, 40, 10)  # a red fluorescent nucleus
    assert detect_stain(rgb.mean(-1)) == "fluorescence"
    _, info = prepared_plane(rgb)
    assert info["stain"] == "fluorescence"
    _, info = prepared_plane(255 - rgb, channel=0)
    assert info["stain"] == "brightfield"


def test_brightfield_size_guess_finds_nuclei_not_cells():
    # DSB2018 brightfield: squamous cells whose grey cytoplasm is darker than the
    # background; one Otsu threshold found whole cells (about 4x the nucleus size)
    from cytolens.segment import NucleusSegmenter
    from cytolens.segment.classical import estimate_diameter
    from cytolens.segment.preprocess import nuclear_plane

    sample_id = _tune("brightfield")[0]
    sizes = np.bincount(_truth(sample_id).ravel())[1:]
    true_d = float(np.sqrt(4 * np.median(sizes[sizes > 0]) / np.pi))  # 20.7 px
    x, info = prepared_plane(_image(sample_id))
    assert info["stain"] == "brightfield"
    assert estimate_diameter(x) > 3 * true_d  # whole cells
    assert abs(np.log(estimate_diameter(nuclear_plane(x, "brightfield")) / true_d)) < np.log(1.4)
    seg = NucleusSegmenter.from_pretrained("nuclei-v1", device="cpu")
    d, _ = seg.estimate_diameter(x, stain=info["stain"])
    assert abs(np.log(d / true_d)) < np.log(1.25)
