"""Chunked (bounded-memory) nucleus segmentation: same nuclei as the whole-plane path."""

from __future__ import annotations

import numpy as np
import pytest
from tests.conftest import shared

from cytolens.core.errors import InputError
from cytolens.segment.chunked import (
    _hist_percentile,
    chunk_read_shape,
    downsampled,
    segment_chunked,
    use_chunked,
    write_labels_ngff,
)
from cytolens.segment.model import NucleusSegmenter, nuclei


@pytest.fixture(scope="module")
def seg() -> NucleusSegmenter:
    import torch

    torch.set_num_threads(2)
    return NucleusSegmenter.from_pretrained("nuclei-v1", device="cpu")


def _whole(seg: NucleusSegmenter, image: np.ndarray, diameter: float, tile: int = 512):
    """The whole-plane path (what ``segment`` does for images that fit)."""
    x, _ = seg.prepare(image)
    scale = seg.diameter / diameter
    return seg.instances(seg.predict_maps(x, scale=scale, tile_shape=tile), scale=scale)


def _identical(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of objects of ``a`` whose mask is exactly one object of ``b`` (and vice versa)."""
    same = 0
    ids = np.unique(a[a > 0])
    for i in ids:
        mask = a == i
        j = np.unique(b[mask])
        if j.size == 1 and j[0] > 0 and np.array_equal(b == j[0], mask):
            same += 1
    return same / max(ids.size, 1)


def _crowded(disc_image, shape=(220, 240), radius=8.0, seed=1):
    """Discs on a jittered grid (many across any chunk border), some touching."""
    rng = np.random.default_rng(seed)
    centres = [
        (y + rng.uniform(-3, 3), x + rng.uniform(-3, 3))
        for y in range(14, shape[0] - 10, 19)
        for x in range(14, shape[1] - 10, 19)
        if rng.random() < 0.8
    ]
    return disc_image(shape, centres, radius, seed=seed)


@pytest.mark.parametrize(
    ("diameter", "tile", "chunk"),
    [(16.0, 512, 150), (12.0, 160, 150), (24.0, 128, 200)],
    ids=["scale1-one-tile", "zoom-in-many-tiles", "zoom-out"],
)
def test_synthetic_chunks_equal_whole_plane(seg, disc_image, diameter, tile, chunk):
    image, _ = _crowded(disc_image)
    whole = _whole(seg, image, diameter, tile)
    res = segment_chunked(seg, image, diameter=diameter, tile_shape=tile, chunk_shape=chunk)
    assert res.n_chunks >= 4  # nuclei do cross chunk borders
    assert res.labels.max() == res.n_objects == whole.max() > 30
    assert sorted(np.unique(res.labels))[1:] == list(range(1, res.n_objects + 1))
    assert _identical(whole, res.labels) == 1.0


def test_real_dsb2018_mosaic_equals_whole_plane(seg):
    import pandas as pd

    from cytolens.core.plane import single_plane
    from cytolens.io import imread

    root = shared("segmentation/dsb2018")
    samples = pd.read_csv(root / "samples.csv")
    ids = samples[
        (samples.modality == "fluorescence") & (samples.height == 256) & (samples.width == 256)
    ].id[:4]
    fields = [single_plane(imread(root / "images" / f"{i}.png"))[0] for i in ids]
    mosaic = np.block([fields[:2], fields[2:]]).astype(np.uint8)
    whole = _whole(seg, mosaic, 13.0)
    res = segment_chunked(seg, mosaic, diameter=13.0, chunk_shape=220, measure=True)
    assert res.n_chunks >= 9
    assert res.extra["exact_percentiles"]
    assert abs(res.n_objects - int(whole.max())) <= 1 and res.n_objects > 50
    assert _identical(whole, res.labels) >= 0.99
    # measurements streamed per chunk: one row per nucleus, centroids in image coordinates
    table = res.table.sort_values("label")
    assert table.label.tolist() == list(range(1, res.n_objects + 1))
    for row in table.sample(5, random_state=0).itertuples():
        ys, xs = np.nonzero(res.labels == row.label)
        assert row.area_px == ys.size
        assert row.centroid_y_px == pytest.approx(ys.mean()) and row.centroid_x_px == pytest.approx(
            xs.mean()
        )


def test_nuclei_switches_to_chunks_for_dask_and_chunk_shape(seg, disc_image):
    import dask.array as da

    image, _ = _crowded(disc_image, shape=(200, 220))
    whole = nuclei(image, diameter=16, device="cpu")  # small numpy: whole plane
    assert not use_chunked(image) and use_chunked(da.from_array(image))
    lazy = nuclei(da.from_array(image, chunks=64), diameter=16, device="cpu")
    forced = nuclei(image, diameter=16, device="cpu", chunk_shape=120)
    assert isinstance(lazy, np.ndarray)
    assert _identical(whole, lazy) == 1.0 and _identical(whole, forced) == 1.0
    assert use_chunked(np.zeros((5000, 5000, 3), np.uint8))  # a plane above 4096 x 4096


def test_lazy_tiff_into_ome_zarr(seg, disc_image, tmp_path):
    import tifffile

    from cytolens.io import imread

    image, _ = _crowded(disc_image, shape=(260, 260))
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, image.astype(np.uint16), tile=(64, 64))
    expected = segment_chunked(seg, image.astype(np.uint16), diameter=16, chunk_shape=130)
    lazy = imread(path, lazy=True)
    assert lazy.is_lazy
    with write_labels_ngff(tmp_path / "labels.ome.zarr", (260, 260), pixel_size_um=0.5) as z:
        res = segment_chunked(seg, lazy, diameter=16, chunk_shape=130, out=z)
    back = imread(tmp_path / "labels.ome.zarr")
    assert back.axes == "YX" and back.pixel_size_um == {"Y": 0.5, "X": 0.5}
    np.testing.assert_array_equal(np.asarray(back.data), expected.labels)
    assert res.n_objects == expected.n_objects
    assert back.metadata["levels"][:2] == ["s0", "s1"]


def test_chunk_too_small_for_diameter_is_refused(seg, disc_image):
    image, _ = _crowded(disc_image, shape=(200, 200))
    with pytest.raises(InputError, match=r"give at least 112 \("):
        nuclei(image, diameter=16, device="cpu", chunk_shape=60)
    with pytest.raises(InputError, match=r"MiB is too small for nuclei of 40.0 px.*give at least"):
        chunk_read_shape((20000, 20000), 40.0, max_chunk_mb=4)
    read, halo = chunk_read_shape((20000, 20000), 10.0)
    assert halo == 30 and read[0] == read[1] > 1000


def test_histogram_percentiles_match_numpy():
    rng = np.random.default_rng(3)
    for n in (17, 1000, 65537):
        values = rng.integers(0, 4000, n).astype(np.float32)
        hist = np.bincount(values.astype(np.int64), minlength=1 << 16)
        for q in (1.0, 50.0, 99.8):
            assert _hist_percentile(hist, q) == float(np.percentile(values, q).astype(np.float32))


def test_downsampled_reads_bands():
    x = np.arange(100 * 37).reshape(100, 37)
    np.testing.assert_array_equal(downsampled(x, 3, band=10), x[::3, ::3])


def test_cli_writes_ome_zarr_labels(disc_image, tmp_path):
    import tifffile
    from tests.clitools import cytolens, one_error_line

    from cytolens.io import imread

    image, _ = _crowded(disc_image, shape=(200, 200))
    tifffile.imwrite(tmp_path / "cells.tif", image.astype(np.uint16))
    out = tmp_path / "out"
    proc = cytolens("segment", "nuclei", tmp_path / "cells.tif", "--out", out, "--format", "zarr",
                    "--diameter", "16", "--device", "cpu", "--no-report")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    labels = np.asarray(imread(out / "cells_labels.ome.zarr").data)
    import pandas as pd

    table = pd.read_csv(out / "cells_nuclei.csv")
    assert len(table) == labels.max() > 40 and (out / "cells_overlay.png").exists()
    refused = cytolens("segment", "nuclei", tmp_path / "cells.tif", "--out", tmp_path / "o2",
                       "--format", "zarr", "--roi", "--device", "cpu")  # fmt: skip
    assert refused.returncode != 0
    assert "--roi and --geojson are not written" in one_error_line(refused)
