"""``cytolens segment nuclei --roi / --geojson`` in a subprocess, read back by other parsers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.path import Path as Polygon
from tests.clitools import cytolens, no_temporaries

from cytolens.io import imread, imwrite

#: Centres of the synthetic nuclei: round, and one touching the image border.
CENTRES = [(30, 30), (60, 90), (20, 100), (85, 8)]

#: The GeoJSON rules (RFC 7946) a FeatureCollection of polygons must keep; closed rings
#: are checked in the test (JSON Schema cannot compare a ring's first and last positions).
GEOJSON_POLYGONS = {
    "type": "object",
    "required": ["type", "features"],
    "properties": {
        "type": {"const": "FeatureCollection"},
        "features": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "geometry", "properties"],
                "properties": {
                    "type": {"const": "Feature"},
                    "properties": {"type": "object"},
                    "geometry": {
                        "type": "object",
                        "required": ["type", "coordinates"],
                        "properties": {
                            "type": {"const": "Polygon"},
                            "coordinates": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "array",
                                    "minItems": 4,
                                    "items": {
                                        "type": "array",
                                        "minItems": 2,
                                        "maxItems": 3,
                                        "items": {"type": "number"},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def _segment(tmp_path, *flags):
    """Segment one synthetic image (classical method) with ``flags``; the JSON summary row."""
    yy, xx = np.mgrid[:96, :128]
    mask = np.zeros(yy.shape, bool)
    for cy, cx in CENTRES:
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 < 9**2
    noise = np.random.default_rng(0).normal(0, 30, mask.shape)
    image = (300 + 2000 * mask + noise).astype(np.uint16)
    path = imwrite(tmp_path / "cells.tif", image, axes="YX", pixel_size_um=0.5)
    out = tmp_path / "out"
    proc = cytolens(
        "segment", "nuclei", path, "--out", out, "--method", "classical", "--no-report",
        "--json", *flags,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout.strip().splitlines()[-1])["images"]
    no_temporaries(out)
    labels = np.asarray(imread(out / row["labels"]).data)
    assert labels.max() == len(CENTRES)
    return out, row, labels


def _mask_of(xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The pixels whose centres lie inside the polygon (vertices on pixel corners, ImageJ style)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    centres = np.c_[xx.ravel() + 0.5, yy.ravel() + 0.5]
    return Polygon(xy).contains_points(centres).reshape(shape)


def test_roi_flag_writes_an_imagej_roi_set_equal_to_the_outlines(tmp_path):
    roifile = pytest.importorskip("roifile")
    out, row, labels = _segment(tmp_path, "--roi")
    assert row["rois"] == "cells_rois.zip"
    rois = roifile.roiread(out / row["rois"])
    assert sorted(roi.name for roi in rois) == [f"label-{k}" for k in range(1, len(CENTRES) + 1)]
    for roi in rois:
        label = int(roi.name.split("-")[1])
        # the polygon read back by roifile covers exactly the object's pixels
        np.testing.assert_array_equal(_mask_of(roi.coordinates(), labels.shape), labels == label)
    assert not list(out.glob("*.geojson"))  # only what was asked for


def test_geojson_flag_writes_one_valid_feature_per_nucleus(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    out, row, labels = _segment(tmp_path, "--geojson")
    assert row["geojson"] == "cells_nuclei.geojson"
    doc = json.loads((out / row["geojson"]).read_text())
    jsonschema.validate(doc, GEOJSON_POLYGONS)
    features = doc["features"]
    assert sorted(f["properties"]["label"] for f in features) == list(range(1, len(CENTRES) + 1))
    for feature in features:
        assert feature["properties"]["objectType"] == "detection"  # QuPath's object type
        (ring,) = feature["geometry"]["coordinates"]
        assert ring[0] == ring[-1]  # closed ring
        inside = _mask_of(np.asarray(ring), labels.shape)
        np.testing.assert_array_equal(inside, labels == feature["properties"]["label"])
    assert not list(out.glob("*.zip"))
