"""Interop writers: ImageJ ROI sets, GeoJSON (QuPath), TrackMate XML, read back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cytolens import data
from cytolens.core.errors import InputError
from cytolens.io.interop import (
    label_outlines,
    read_trackmate_xml,
    write_geojson,
    write_imagej_rois,
    write_trackmate_xml,
)

roifile = pytest.importorskip("roifile")


def _labels() -> np.ndarray:
    from skimage.draw import disk

    labels = np.zeros((64, 80), np.uint16)
    labels[5:15, 10:30] = 1
    labels[disk((40, 40), 12)] = 2
    labels[30:60, 65:70] = 7
    return labels


def _rasterize(xy: np.ndarray, shape) -> np.ndarray:
    """Pixels whose centres lie inside the polygon (pixel-corner vertices)."""
    from matplotlib.path import Path as MplPath

    yy, xx = np.mgrid[: shape[0], : shape[1]]
    centres = np.stack([xx.ravel() + 0.5, yy.ravel() + 0.5], 1)
    return MplPath(xy).contains_points(centres).reshape(shape)


def test_roi_set_read_back_equals_label_outlines(tmp_path: Path) -> None:
    labels = _labels()
    out = write_imagej_rois(tmp_path / "rois.zip", labels=labels)
    rois = roifile.roiread(out)
    assert [r.name for r in rois] == ["label-1", "label-2", "label-7"]
    outlines = label_outlines(labels)
    for roi, (label, xy) in zip(rois, outlines.items(), strict=True):
        np.testing.assert_allclose(roi.coordinates(), xy)
        # the outline encloses exactly the object's pixels
        np.testing.assert_array_equal(_rasterize(roi.coordinates(), labels.shape), labels == label)


def test_roi_set_of_boxes(tmp_path: Path) -> None:
    boxes = data.blood_smear_boxes()
    out = write_imagej_rois(tmp_path / "boxes.zip", boxes=boxes)
    rois = roifile.roiread(out)
    assert len(rois) == len(boxes)
    assert (rois[0].left, rois[0].top, rois[0].right, rois[0].bottom) == tuple(
        int(boxes.iloc[0][c]) for c in ("xmin_px", "ymin_px", "xmax_px", "ymax_px")
    )


def test_geojson_one_feature_per_object(tmp_path: Path) -> None:
    labels = _labels()
    doc = json.loads(write_geojson(tmp_path / "a.geojson", labels=labels).read_text())
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == 3
    for feature, label in zip(doc["features"], (1, 2, 7), strict=True):
        geometry = feature["geometry"]
        assert feature["type"] == "Feature" and geometry["type"] == "Polygon"
        ring = np.array(geometry["coordinates"][0])
        assert ring.shape[1] == 2 and np.all(ring[0] == ring[-1]) and len(ring) >= 4
        assert feature["properties"]["label"] == label
        assert feature["properties"]["objectType"] == "detection"
        np.testing.assert_array_equal(_rasterize(ring, labels.shape), labels == label)
    boxes = pd.DataFrame(
        {"class": ["RBC"], "xmin_px": [1], "ymin_px": [2], "xmax_px": [5], "ymax_px": [9]}
    )
    doc = json.loads(write_geojson(tmp_path / "b.geojson", boxes=boxes).read_text())
    assert doc["features"][0]["properties"]["classification"] == {"name": "RBC"}


def test_geojson_validates_with_geojson_pydantic_when_installed(tmp_path: Path) -> None:
    models = pytest.importorskip("geojson_pydantic")
    text = write_geojson(tmp_path / "a.geojson", labels=_labels()).read_text()
    assert len(models.FeatureCollection.model_validate_json(text).features) == 3


def test_writers_reject_empty_or_ambiguous_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="labels or boxes"):
        write_geojson(tmp_path / "x.geojson")
    with pytest.raises(InputError, match="no object"):
        write_imagej_rois(tmp_path / "x.zip", labels=np.zeros((8, 8), np.uint8))


def test_trackmate_round_trip_with_a_division(tmp_path: Path) -> None:
    rows = [(1, t, 10.0, 5.0 + 2 * t, 0) for t in range(3)]
    rows += [(2, t, 6.0, 12.0 + t, 1) for t in range(3, 5)]
    rows += [(3, t, 14.0, 12.0 - t, 1) for t in range(3, 6)]
    rows += [(4, t, 30.0, 30.0, 0) for t in range(1, 4)]
    tracks = pd.DataFrame(rows, columns=["track_id", "frame", "y_px", "x_px", "parent_track_id"])
    out = write_trackmate_xml(tmp_path / "t.xml", tracks, pixel_size_um=0.5, frame_interval_s=30)
    import xml.etree.ElementTree as ET

    model = ET.parse(out).getroot().find("Model")
    assert model.get("spatialunits") == "micron" and len(list(model.iter("Track"))) == 2
    back = read_trackmate_xml(out)
    # same segments (ids by first appearance), positions in um, same lineage
    expected = tracks.sort_values(["track_id", "frame"]).reset_index(drop=True)
    np.testing.assert_array_equal(back["track_id"], expected["track_id"])
    np.testing.assert_array_equal(back["frame"], expected["frame"])
    np.testing.assert_allclose(back[["y_um", "x_um"]], expected[["y_px", "x_px"]] * 0.5)
    np.testing.assert_array_equal(back["parent_track_id"], expected["parent_track_id"])


def test_trackmate_round_trip_of_a_real_tracking_result(tmp_path: Path) -> None:
    from cytolens.track import track_movie

    result = track_movie(data.tracking().data[:6])
    out = write_trackmate_xml(tmp_path / "sim.xml", result.tracks)
    back = read_trackmate_xml(out)
    expected = result.tracks.sort_values(["track_id", "frame"])
    assert len(back) == len(expected) and back["track_id"].nunique() == result.n_tracks
    columns = ["frame", "y_px", "x_px"]  # no pixel size: the model is in pixels
    got = back.sort_values(columns)[columns].to_numpy()
    want = expected.sort_values(columns)[columns].to_numpy()
    np.testing.assert_allclose(got, want)
