"""The ``track`` pipeline step: tracks and features tables, labels, and in a pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cytolens.core.errors import InputError
from cytolens.core.image import Image
from cytolens.pipeline import Item, make_step, make_steps, run_pipeline
from cytolens.track import track
from cytolens.track.steps import FEATURE_TABLE, TRACK_TABLE, Track


def test_step_tracks_a_label_movie_like_the_api(dividing_movie):
    movie, truth = dividing_movie
    image = Image(movie, "TYX", {"Y": 0.5, "X": 0.5})
    item = Item(Path("movie.tif"), "movie", image)
    tracked = Track({"labels": True, "frame_interval_s": 10}).track(item)
    direct = track(movie)
    table = item.tables[TRACK_TABLE]
    assert (table["image"] == "movie").all()
    pd.testing.assert_frame_equal(table[direct.tracks.columns], direct.tracks)
    # unit-named physical columns from the file's pixel size and the frame interval
    np.testing.assert_allclose(table["x_um"], direct.tracks["x_px"] * 0.5)
    np.testing.assert_allclose(table["time_s"], direct.tracks["frame"] * 10.0)
    assert item.row["tracks"] == direct.n_tracks and item.row["divisions"] == 1 and len(truth) == 5
    assert item.row["frames"] == 12 and item.row["segmenter"] == "labels"
    assert len(item.tables[FEATURE_TABLE]) == direct.n_tracks
    assert item.labels.dtype == np.uint32 and item.images["labels"].axes == "TYX"
    np.testing.assert_array_equal(item.labels, direct.labels)
    assert tracked.pixel_size_um == {"Y": 0.5, "X": 0.5}


def test_step_refuses_what_is_not_a_movie():
    item = Item(Path("stack.tif"), "s", Image(np.zeros((3, 8, 8), np.uint16), "ZYX"))
    with pytest.raises(InputError, match=r"stack\.tif has axes 'ZYX' \(a z-stack\)"):
        Track({"labels": True}).run(item)
    with pytest.raises(InputError, match="segmenter: Input should be 'threshold', 'nuclei'"):
        make_step("track", {"segmenter": "watershed"})
    assert make_step("track", {"segmenter": "nuclei"}).models()[0]["name"] == "nuclei-v2"
    assert make_step("track").models() == []


def test_pipeline_tracks_raw_movies(dividing_movie, tmp_path):
    from cytolens.io import imwrite

    movie, _ = dividing_movie
    raw = (movie > 0).astype(np.float32) * 200 + 10
    src = imwrite(tmp_path / "cells.ome.tif", raw.astype(np.uint16), axes="TYX")
    out = tmp_path / "out"
    steps = make_steps([("track", {"gap_closing": 1})])
    result = run_pipeline([src], steps, out, progress=False, report=False)
    assert [r["status"] for r in result.records] == ["done"], result.records
    tracks = pd.read_csv(out / "tracks.csv")
    assert {"image", "track_id", "frame", "y_px", "x_px", "area_px"} <= set(tracks)
    assert tracks["frame"].nunique() == 12 and (tracks["image"] == "cells").all()
    items = pd.read_csv(out / "items.csv")
    assert items["tracks"].iloc[0] == tracks["track_id"].nunique() >= 3
    assert len(pd.read_csv(out / "track_features.csv")) == items["tracks"].iloc[0]
    from cytolens.io import imread

    labels = imread(out / "labels" / "cells.ome.zarr")
    assert labels.shape == movie.shape and int(np.asarray(labels.data).max()) >= 3
