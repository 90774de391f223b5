"""The fast inference path of the nucleus model agrees with the plain network on real images."""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest

from cytolens.evaluate import segmentation_scores
from cytolens.segment import NucleusSegmenter
from cytolens.segment.representation import instances_from_maps, relabel_sequential_uint32

#: Validation fluorescence images: one 256 x 256 (zoomed up, probed whole) and one 520 x 696.
IMAGES = ("094afe36759e7daffe12188ab5987581d405b06720f1d5acf3f2614f404df380",
          "193ffaa5272d5c421ae02130a64d98ad120ec70e4ed97a72cdcd4801ce93b066")  # fmt: skip


@pytest.fixture(scope="module")
def segmenter() -> NucleusSegmenter:
    return NucleusSegmenter.from_pretrained("nuclei-v1", device="cpu")


def _variant(seg: NucleusSegmenter, precision: str, plain: bool = False) -> NucleusSegmenter:
    """A shallow copy in ``precision``; ``plain`` runs the unmodified network (the reference)."""
    out = copy.copy(seg)
    out.precision = precision
    if plain:
        out._predict_tile = functools.partial(
            NucleusSegmenter._predict_tile, out, network=out.network
        )
    return out


@pytest.fixture(scope="module")
def real_images():
    from tests.conftest import shared

    from cytolens.io import imread

    root = shared("segmentation/dsb2018")
    found = [root / "images" / f"{i}.png" for i in IMAGES]
    if not all(p.exists() for p in found):
        pytest.skip("the DSB2018 validation images of this test are absent")
    return [imread(p) for p in found]


def test_float32_fast_path_equals_the_plain_network(segmenter, real_images):
    fast, plain = _variant(segmenter, "float32"), _variant(segmenter, "float32", plain=True)
    small, large = real_images
    x, _ = fast.prepare(small)
    np.testing.assert_allclose(
        fast.predict_maps(x, scale=1.3), plain.predict_maps(x, scale=1.3), atol=1e-5
    )
    # the size estimate (probes), then four tiles of 512 px: identical labels
    np.testing.assert_array_equal(fast.segment(small), plain.segment(small))
    np.testing.assert_array_equal(
        fast.segment(large, diameter=14), plain.segment(large, diameter=14)
    )


def test_bfloat16_path_agrees_with_float32(segmenter, real_images):
    fast, plain = _variant(segmenter, "bfloat16"), _variant(segmenter, "float32", plain=True)
    small, large = real_images
    x, _ = fast.prepare(small)
    diff = np.abs(fast.predict_maps(x, scale=1.3) - plain.predict_maps(x, scale=1.3))
    assert diff.mean() < 2e-3 and diff.max() < 0.1, (diff.mean(), diff.max())
    scores = segmentation_scores(
        plain.segment(large, diameter=14), fast.segment(large, diameter=14)
    )
    assert scores["ap50"] > 0.97 and scores["dsb_score"] > 0.85, scores


def test_whole_probe_maps_are_reused_exactly(segmenter, real_images):
    seg = _variant(segmenter, "float32")
    image = real_images[0]
    x, info = seg.prepare(image)
    d, probe = seg.estimate_diameter(x, stain=info["stain"])
    assert probe is not None and probe[0] == d  # probed whole: segment() reuses it
    maps = seg.predict_maps(x, scale=seg.diameter / d)
    np.testing.assert_array_equal(probe[1], maps)
    np.testing.assert_array_equal(seg.segment(image), seg.instances(maps, scale=seg.diameter / d))


def test_inference_copy_folds_batch_norm_with_running_statistics():
    import torch

    from cytolens.segment.inference import inference_copy
    from cytolens.segment.network import UNet

    torch.manual_seed(0)
    net = UNet(1, 2, (4, 8, 16))
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    net.eval()
    fast = inference_copy(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    x = torch.rand(2, 1, 32, 24)
    with torch.inference_mode():
        expected = net(x)
        np.testing.assert_allclose(fast(x.contiguous(memory_format=torch.channels_last)),
                                   expected, atol=1e-5)  # fmt: skip
        half = inference_copy(net, precision="bfloat16")
        with torch.autocast("cpu", torch.bfloat16):
            got = half(x).float()
    assert got.dtype == torch.float32 and float((got - expected).abs().max()) < 0.1


def test_instances_remove_small_objects_and_number_sequentially():
    yy, xx = np.mgrid[:20, :40]
    cones = [
        np.clip(1 - np.hypot(yy - 10, xx - cx) / r, 0, 1) for cx, r in [(8, 6), (22, 2), (33, 5)]
    ]
    distance = np.maximum.reduce(cones)
    labels = instances_from_maps((distance > 0).astype(float), distance, min_size=30)
    assert labels.dtype == np.uint32 and labels.max() == 2
    assert labels[10, 22] == 0 and labels[10, 8] == 1 and labels[10, 33] == 2
    assert relabel_sequential_uint32(np.array([[5, 0], [9, 5]], np.int32)).tolist() == [
        [1, 0],
        [2, 1],
    ]
