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
    # coordinates name their unit; the VOC file beside keeps VOC's own names
    assert list(boxes.columns[4:9]) == ["xmin_px", "ymin_px", "xmax_px", "ymax_px", "score"]
    assert {"xmin", "ymin", "xmax", "ymax"}.isdisjoint(boxes.columns)
    assert "<xmin>" in (out / "blood_smear.xml").read_text()
    doc = json.loads((out / row["geojson"]).read_text())
    assert doc["type"] == "FeatureCollection"
    features = doc["features"]
    assert len(features) == len(boxes)  # one feature per box, in the order of boxes.csv
    for feature, box in zip(features, boxes.to_dict("records"), strict=True):
        assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Polygon"
        (ring,) = feature["geometry"]["coordinates"]
        ring = np.asarray(ring)
        assert ring.shape == (5, 2) and (ring[0] == ring[-1]).all()  # a closed rectangle
        np.testing.assert_allclose(ring.min(axis=0), [box["xmin_px"], box["ymin_px"]])
        np.testing.assert_allclose(ring.max(axis=0), [box["xmax_px"], box["ymax_px"]])
        props = feature["properties"]
        assert props["classification"]["name"] == box["class"]
        assert props["objectType"] == "detection"
        np.testing.assert_allclose(props["score"], box["score"], rtol=1e-6)


def test_roi_flag_writes_an_imagej_roi_set_per_image(tmp_path):
    import roifile

    from cytolens.io import imwrite

    images = tmp_path / "images"
    images.mkdir()
    (images / "blood_smear.jpg").write_bytes(data.sample_path("blood_smear.jpg").read_bytes())
    imwrite(images / "blank.png", np.zeros((96, 96, 3), np.uint8), axes="YXC")  # no box
    out = tmp_path / "out"
    proc = cytolens(
        "detect", "predict", images, "--out", out, "--device", "cpu", "--no-report", "--json",
        "--roi",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = {r["image"]: r for r in json.loads(proc.stdout.strip().splitlines()[-1])["images"]}
    assert rows["blood_smear.jpg"]["rois"] == "blood_smear_rois.zip"
    no_temporaries(out)
    boxes = pd.read_csv(out / "boxes.csv")
    boxes = boxes[boxes["filename"] == "blood_smear.jpg"].reset_index(drop=True)
    rois = roifile.roiread(out / "blood_smear_rois.zip")
    assert len(rois) == len(boxes) == rows["blood_smear.jpg"]["boxes"] > 0
    for k, (roi, box) in enumerate(zip(rois, boxes.to_dict("records"), strict=True)):
        assert roi.roitype == roifile.ROI_TYPE.RECT and roi.name == f"{box['class']}-{k + 1}"
        # ImageJ rectangles have integer pixel corners: the box's, truncated
        assert (roi.left, roi.top) == (int(box["xmin_px"]), int(box["ymin_px"]))
        assert (roi.right, roi.bottom) == (int(box["xmax_px"]), int(box["ymax_px"]))
    assert rows["blank.png"]["boxes"] == 0
    assert roifile.roiread(out / rows["blank.png"]["rois"]) == []  # an empty set, not missing
