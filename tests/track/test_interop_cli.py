"""``cytolens track`` in a subprocess: TrackMate XML and the track features table, read back.

The movie is the hand-made ``dividing_movie`` (tests/track/conftest.py): A moves
3 px per frame to the right for 12 frames, C 1 px per frame from frame 3, B stays
put and divides at frame 6 into daughters moving apart at 1 px per frame.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
from tests.clitools import cytolens, no_temporaries

from cytolens.io import imwrite
from cytolens.io.interop import read_trackmate_xml


def _track(tmp_path, movie, *flags, pixel_size_um=None):
    path = imwrite(tmp_path / "labels.tif", movie, axes="TYX", pixel_size_um=pixel_size_um)
    out = tmp_path / "out"
    proc = cytolens("track", path, "--out", out, "--labels", "--json", *flags)
    assert proc.returncode == 0, proc.stderr
    no_temporaries(out)
    return out, json.loads(proc.stdout.strip().splitlines()[-1])


def _by_start(features: pd.DataFrame) -> dict[str, pd.Series]:
    """Tracks A (frames 0-11) and C (frames 3-11) by when they start and end."""
    a = features[(features["frame_start"] == 0) & (features["frame_end"] == 11)]
    c = features[features["frame_start"] == 3]
    assert len(a) == 1 and len(c) == 1, features
    return {"A": a.iloc[0], "C": c.iloc[0]}


def test_track_features_in_physical_units_from_the_options(dividing_movie, tmp_path):
    movie, _ = dividing_movie
    out, summary = _track(tmp_path, movie, "--pixel-size-um", "0.5", "--frame-interval-s", "2")
    assert summary["track_features_csv"] == str(out / "track_features.csv")
    assert summary["pixel_size_um"] == 0.5 and summary["frame_interval_s"] == 2.0
    features = pd.read_csv(out / "track_features.csv")
    assert len(features) == summary["tracks"] == 5
    tracks = _by_start(features)
    # A: 3 px/frame = 1.5 um per 2 s; 33 px = 16.5 um in 22 s, in a straight line
    np.testing.assert_allclose(tracks["A"]["mean_speed_um_per_s"], 0.75, rtol=1e-6)
    np.testing.assert_allclose(tracks["A"]["displacement_um"], 16.5, rtol=1e-6)
    np.testing.assert_allclose(tracks["A"]["duration_s"], 22.0)
    np.testing.assert_allclose(tracks["A"]["straightness"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(tracks["C"]["mean_speed_um_per_s"], 0.25, rtol=1e-6)
    assert not (out / "tracks.xml").exists()  # only with --trackmate


def test_track_features_take_the_files_pixel_size(dividing_movie, tmp_path):
    movie, _ = dividing_movie
    out, summary = _track(tmp_path, movie, pixel_size_um=0.125)
    assert summary["pixel_size_um"] == {"Y": 0.125, "X": 0.125}
    features = pd.read_csv(out / "track_features.csv")
    tracks = pd.read_csv(out / "tracks.csv")  # the file's pixel size gives um; no time_s
    np.testing.assert_allclose(tracks["y_um"], tracks["y_px"] * 0.125)
    assert "time_s" not in tracks and {"y", "x", "t"}.isdisjoint(tracks.columns)
    # no frame interval: speeds per frame, lengths in um (not pixels: 8x off at 0.125 um)
    np.testing.assert_allclose(_by_start(features)["A"]["mean_speed_um_per_frame"], 0.375)


def test_trackmate_flag_writes_the_same_tracks(dividing_movie, tmp_path):
    movie, _ = dividing_movie
    out, summary = _track(
        tmp_path, movie, "--trackmate", "--pixel-size-um", "0.5", "--frame-interval-s", "2"
    )
    assert summary["trackmate_xml"] == str(out / "tracks.xml")
    tracks = pd.read_csv(out / "tracks.csv")
    # every column names its unit: pixels and um, frame index and seconds
    assert list(tracks.columns) == [
        "track_id", "frame", "time_s", "label", "y_px", "y_um", "x_px", "x_um", "area_px",
        "parent_track_id",
    ]  # fmt: skip
    np.testing.assert_allclose(tracks["time_s"], tracks["frame"] * 2.0)
    # read with a plain XML parser, as TrackMate's own reader sees the model
    model = ET.parse(out / "tracks.xml").getroot().find("Model")
    assert model.get("spatialunits") == "micron" and model.get("timeunits") == "sec"
    spots = {s.get("ID"): s for s in model.iter("Spot")}
    assert len(spots) == len(tracks)
    # one TrackMate track per lineage: A, B with its two daughters, C
    lineages = model.find("AllTracks").findall("Track")
    assert len(lineages) == 3
    assert sorted(len(t.findall("Edge")) for t in lineages) == [
        8,
        11,
        5 + 2 * 6,
    ]  # C, A, B (5) + daughters (5 + a link each)
    for spot in spots.values():
        frame = int(spot.get("FRAME"))
        row = tracks[
            (tracks["frame"] == frame) & (tracks["track_id"] == int(spot.get("TRACK_ID_CYTOLENS")))
        ]
        assert len(row) == 1
        np.testing.assert_allclose(float(spot.get("POSITION_X")), row["x_px"].iloc[0] * 0.5)
        np.testing.assert_allclose(float(spot.get("POSITION_Y")), row["y_px"].iloc[0] * 0.5)
        np.testing.assert_allclose(float(spot.get("POSITION_X")), row["x_um"].iloc[0])
        np.testing.assert_allclose(float(spot.get("POSITION_T")), frame * 2.0)
    # and cytolens' reader gives back the tracks table (positions in um)
    back = read_trackmate_xml(out / "tracks.xml")
    columns = ["track_id", "frame", "y_um", "x_um", "parent_track_id"]
    expected = tracks.sort_values(["track_id", "frame"])[columns].reset_index(drop=True)
    pd.testing.assert_frame_equal(back[columns], expected, check_dtype=False)
