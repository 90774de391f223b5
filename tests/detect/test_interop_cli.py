"""``cytolens detect predict --geojson`` in a subprocess: the boxes as QuPath GeoJSON, read back."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from tests.clitools import cytolens, no_temporaries

from cytolens import data


def test_geojson_flag_writes_one_rectangle_per_box(tmp_path):
    sample = data.sample_path("blood_smear.jpg")
    out = tmp_path / "out"
    proc = cytolens(
        "detect", "predict", sample, "--out", out, "--device", "cpu", "--no-report", "--json",
        "--geojson",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout.strip().splitlines()[-1])["images"]
    assert row["geojson"] == "blood_smear.geojson"
    no_temporaries(out)
    boxes = pd.read_csv(out / "boxes.csv")
    assert len(boxes) == row["boxes"] > 0
    doc = json.loads((out / row["geojson"]).read_text())
    assert doc["type"] == "FeatureCollection"
    features = doc["features"]
    assert len(features) == len(boxes)  # one feature per box, in the order of boxes.csv
    for feature, box in zip(features, boxes.to_dict("records"), strict=True):
        assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Polygon"
        (ring,) = feature["geometry"]["coordinates"]
        ring = np.asarray(ring)
        assert ring.shape == (5, 2) and (ring[0] == ring[-1]).all()  # a closed rectangle
        np.testing.assert_allclose(ring.min(axis=0), [box["xmin"], box["ymin"]])
        np.testing.assert_allclose(ring.max(axis=0), [box["xmax"], box["ymax"]])
        props = feature["properties"]
        assert props["classification"]["name"] == box["class"]
        assert props["objectType"] == "detection"
        np.testing.assert_allclose(props["score"], box["score"], rtol=1e-6)
