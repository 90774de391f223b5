"""The classical baseline on synthetic discs, size estimation, and measure() columns and units."""

from __future__ import annotations

import numpy as np
import pytest

from cytolens.core.errors import InputError
from cytolens.core.image import Image
from cytolens.segment import estimate_diameter, measure, nuclei_classical


def test_classical_counts_discs_and_splits_touching_ones(disc_image):
    # a 5 x 4 grid of separate discs plus two pairs that touch
    centres = [(30 + 40 * r, 30 + 40 * c) for r in range(5) for c in range(4)]
    centres += [(230, 40), (230, 62), (230, 120), (230, 142)]
    image, truth = disc_image((260, 180), centres, 11)
    labels = nuclei_classical(image, diameter=22)
    assert labels.dtype == np.uint32
    assert labels.max() == len(centres)
    # every true disc is covered by exactly one predicted object
    for i in range(1, len(centres) + 1):
        assert np.unique(labels[truth == i]).size == 1


def test_classical_estimates_the_diameter_and_reads_microns(disc_image):
    image, _ = disc_image((200, 200), [(50, 50), (50, 150), (150, 100)], 14)
    auto = nuclei_classical(image)
    assert auto.max() == 3
    assert estimate_diameter((image - image.min()) / np.ptp(image)) == pytest.approx(28, rel=0.2)
    # the same diameter in um with a 0.5 um pixel gives the same result
    np.testing.assert_array_equal(
        nuclei_classical(image, diameter=14, pixel_size_um=0.5),
        nuclei_classical(image, diameter=28),
    )
    assert nuclei_classical(image, threshold="local", diameter=28).max() == 3


def test_diameter_estimate_ignores_bright_specks(disc_image):
    image, _ = disc_image((200, 200), [(50, 50), (50, 150), (150, 100)], 14)
    x = (image - image.min()) / np.ptp(image)
    rng = np.random.default_rng(0)
    for y, c in rng.integers(5, 195, (60, 2)):  # 60 hot 3x3 specks, more than the nuclei
        if x[y - 2 : y + 3, c - 2 : c + 3].max() < 0.5:
            x[y - 1 : y + 2, c - 1 : c + 2] = 1.0
    assert estimate_diameter(x) == pytest.approx(28, rel=0.2)


def test_diameter_estimate_on_a_dark_8_bit_movie_frame(shared_data):
    import tifffile

    seq = shared_data / "tracking/ctc/Fluo-N2DH-GOWT1/01"
    frame = tifffile.imread(seq / "t000.tif").astype(np.float32)
    truth = tifffile.imread(seq.parent / "01_GT/TRA/man_track000.tif")
    areas = np.bincount(truth.ravel())[1:]
    true_diameter = 2 * np.sqrt(np.median(areas[areas > 0]) / np.pi)  # 47.7 px
    estimate = estimate_diameter(frame / np.percentile(frame, 99.8))
    assert estimate == pytest.approx(true_diameter, rel=0.35)


def test_classical_handles_dark_nuclei_and_blank_images(disc_image):
    image, _ = disc_image((120, 120), [(40, 40), (80, 80)], 10)
    assert nuclei_classical(image.max() - image, diameter=20).max() == 2  # brightfield-like
    assert nuclei_classical(np.zeros((32, 32)), diameter=10).max() == 0


def test_measure_disc_of_known_radius(disc_image):
    r = 20
    image, labels = disc_image((100, 100), [(50, 50)], r)
    df = measure(labels, image, pixel_size_um=0.25)
    assert len(df) == 1
    row = df.iloc[0]
    # pixel discretization: a digital disc of radius 20 is within 1 % of pi r^2
    assert row["area_px"] == pytest.approx(np.pi * r**2, rel=0.01)
    assert row["area_um2"] == pytest.approx(np.pi * r**2 * 0.25**2, rel=0.01)
    assert row["equivalent_diameter_px"] == pytest.approx(2 * r, rel=0.01)
    assert row["equivalent_diameter_um"] == pytest.approx(2 * r * 0.25, rel=0.01)
    assert row["perimeter_px"] == pytest.approx(2 * np.pi * r, rel=0.05)
    assert row["perimeter_um"] == pytest.approx(row["perimeter_px"] * 0.25)
    assert (row["centroid_y_px"], row["centroid_x_px"]) == pytest.approx((50, 50), abs=0.01)
    assert row["centroid_x_um"] == pytest.approx(12.5, abs=0.01)
    assert row["eccentricity"] < 0.05 and row["solidity"] > 0.97
    assert row["intensity_mean"] == pytest.approx(900, abs=5)
    assert row["intensity_integrated"] == pytest.approx(row["intensity_mean"] * row["area_px"])


def test_measure_columns_without_units_and_with_channels(disc_image):
    image, labels = disc_image((60, 60), [(20, 20), (40, 42)], 6)
    df = measure(labels)
    assert list(df.columns) == [
        "label",
        "area_px",
        "perimeter_px",
        "centroid_y_px",
        "centroid_x_px",
        "equivalent_diameter_px",
        "eccentricity",
        "solidity",
    ]
    assert df["label"].tolist() == [1, 2]
    two = np.stack([image, 2 * image], axis=-1)
    df2 = measure(labels, two, pixel_size_um=(0.5, 0.25))
    assert df2["intensity_mean_c1"].tolist() == pytest.approx(2 * df2["intensity_mean_c0"])
    assert df2["area_um2"].tolist() == pytest.approx((df2["area_px"] * 0.125).tolist())
    assert df2["perimeter_um"].isna().all()  # undefined for anisotropic pixels
    img = Image(two.transpose(2, 0, 1), "CYX")
    assert measure(labels, img)["intensity_mean_c1"].tolist() == df2["intensity_mean_c1"].tolist()
    assert measure(np.zeros((8, 8), np.uint8)).empty


def test_measure_bad_input():
    labels = np.zeros((10, 10), np.uint8)
    with pytest.raises(InputError, match="intensity_image has shape"):
        measure(labels, np.zeros((5, 5)))
    with pytest.raises(InputError, match="integer"):
        measure(labels.astype(float))
    with pytest.raises(InputError, match="pixel_size_um"):
        measure(labels, pixel_size_um=-1)
