"""The shipped nucleus model: accuracy on held-out DSB2018 images, tiling, sizes, bad input."""

from __future__ import annotations

import json
from importlib.resources import files

import numpy as np
import pytest

from cytolens.core.errors import InputError, ModelError
from cytolens.core.tiling import iter_tiles
from cytolens.evaluate import average_precision, dsb_score
from cytolens.segment import NucleusSegmenter, nuclei

#: Mean AP@0.5 of nuclei-v1 (diameter estimated) on the 6 validation images below, measured
#: after training (they are harder than the average validation image, 0.867); the test allows
#: a margin for platform differences in float arithmetic.
MEASURED_AP50 = 0.697
MARGIN = 0.05
N_IMAGES = 6


@pytest.fixture(scope="module")
def segmenter() -> NucleusSegmenter:
    return NucleusSegmenter.from_pretrained("nuclei-v1", device="cpu")


BRIGHT = {"background": 200, "amplitude": 1500, "noise": 40}


def validation_fluorescence(root, n):
    """The first ``n`` 256 x 256 fluorescence images of the validation split (sorted ids)."""
    import pandas as pd

    split = json.loads((files("cytolens.segment") / "dsb2018_split.json").read_text())
    samples = pd.read_csv(root / "samples.csv").set_index("id")
    ids = [
        i
        for i in split["validation"]["fluorescence"]
        if (samples.loc[i, "height"], samples.loc[i, "width"]) == (256, 256)
    ]
    return ids[:n]


def test_shipped_model_on_validation_images(shared_data):
    import tifffile

    from cytolens.io import imread

    root = shared_data / "segmentation" / "dsb2018"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    aps = []
    for sample_id in validation_fluorescence(root, N_IMAGES):
        truth = tifffile.imread(root / "labels" / f"{sample_id}.tif")
        labels = nuclei(imread(root / "images" / f"{sample_id}.png"), device="cpu")
        assert labels.dtype == np.uint32 and labels.shape == truth.shape
        aps.append(average_precision(truth, labels, 0.5))
    assert np.mean(aps) > MEASURED_AP50 - MARGIN, aps


def test_tiled_equals_untiled_and_border_objects_stay_whole(segmenter, disc_image):
    # nuclei at the training diameter (scale 1), centred on the borders between tiles
    shape, tile = (256, 352), 224
    tiles = iter_tiles(shape, tile, overlap=segmenter.overlap)
    (cut_y,) = sorted({t.write[0].start for t in tiles} - {0})
    (cut_x,) = sorted({t.write[1].start for t in tiles} - {0})
    centres = [(cut_y, x) for x in range(20, shape[1] - 10, 40)]  # across the horizontal seam
    centres += [(y, cut_x) for y in range(20, shape[0] - 10, 40) if abs(y - cut_y) > 25]
    image, truth = disc_image(shape, centres, 8, **BRIGHT)
    x = (image - image.min()) / np.ptp(image)
    whole = segmenter.predict_maps(x, tile_shape=None)
    tiled = segmenter.predict_maps(x, tile_shape=tile)
    # predictions agree to well within the thresholds (0.5) used on them
    assert np.abs(whole - tiled).max() < 0.1
    assert np.abs(whole - tiled).mean() < 1e-3
    labels = nuclei(image, diameter=16, tile_shape=tile, device="cpu")
    assert labels.max() == len(centres)
    for i in range(1, len(centres) + 1):  # each nucleus is one object, not cut at the seam
        assert np.unique(labels[truth == i]).size == 1
    assert dsb_score(truth, labels) > 0.8


def test_diameter_rescaling_across_magnifications(segmenter, disc_image):
    # the same scene at 1x and 2.5x: nuclei found with the size given or estimated
    centres = [(40, 40), (40, 100), (100, 70), (150, 40), (150, 130)]
    small, truth_small = disc_image((200, 180), centres, 7, **BRIGHT)
    big, truth_big = disc_image(
        (500, 450), [(2.5 * y, 2.5 * x) for y, x in centres], 17.5, **BRIGHT
    )
    for image, truth, d in ((small, truth_small, 14), (big, truth_big, 35)):
        assert average_precision(truth, segmenter.segment(image, diameter=d)) == 1.0
        assert average_precision(truth, segmenter.segment(image)) == 1.0
    # a diameter in um with the pixel size gives the same as in pixels
    np.testing.assert_array_equal(
        segmenter.segment(big, diameter=35),
        segmenter.segment(big, diameter=7, pixel_size_um=0.2),
    )


def test_colour_and_channel_inputs(segmenter, disc_image):
    image, truth = disc_image((96, 96), [(30, 30), (64, 60)], 8, **BRIGHT)
    grey = segmenter.segment(image, diameter=16)
    rgba = np.dstack([image / image.max() * 255] * 3 + [np.full(image.shape, 255.0)])
    np.testing.assert_array_equal(
        segmenter.segment(rgba.astype(np.uint8), diameter=16) > 0, grey > 0
    )
    stack = np.stack([np.zeros_like(image), image])
    assert segmenter.segment(stack, axes="CYX", channel=1, diameter=16).max() == 2
    dark = image.max() - image  # brightfield-like: inverted automatically
    assert average_precision(truth, segmenter.segment(dark, diameter=16)) == 1.0
    assert segmenter.segment(np.full((64, 64), 5.0), diameter=16).max() == 0


@pytest.mark.parametrize(
    ("image", "kwargs", "message"),
    [
        (np.zeros((5, 64, 64)), {}, r"shape \(5, 64, 64\).*axes"),
        (np.zeros((5, 64, 64)), {"axes": "ZYX"}, "5 planes along axis Z"),
        (np.zeros((2, 64, 64)), {"axes": "CYX"}, "2 channels"),
        (np.full((32, 32), np.nan), {}, "non-finite"),
        (np.zeros((0, 0)), {}, "empty"),
        (np.zeros((32, 32)), {"diameter": -3}, "diameter must be > 0, got -3"),
        (np.zeros((32, 32)), {"channel": 2}, "channel=2"),
    ],
)
def test_bad_input_names_the_value(image, kwargs, message):
    with pytest.raises(InputError, match=message):
        nuclei(image, device="cpu", **kwargs)


def test_unknown_model():
    with pytest.raises(ModelError, match="nuclei-v0"):
        nuclei(np.zeros((32, 32)), model="nuclei-v0")
