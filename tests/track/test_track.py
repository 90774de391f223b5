"""Tracking synthetic movies with known answers: links, gaps, divisions, relabelling, checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cytolens.core.errors import InputError
from cytolens.evaluate import ctc_measures
from cytolens.track import (
    TrackerConfig,
    assemble_tracks,
    detections,
    estimate_max_distance,
    track,
    track_movie,
)


def test_known_tracks_and_division_are_recovered(dividing_movie, shuffle):
    gt, table = dividing_movie
    result = track(shuffle(gt))
    m = ctc_measures(gt, table, result.labels, result.ctc_tracks)
    assert m.tra == 1.0 and m.det == 1.0
    assert m.division_f1 == 1.0 and m.link_f1 == 1.0
    assert len(result.divisions) == 1
    spans = result.ctc_tracks[["begin", "end"]].to_numpy().tolist()
    assert sorted(spans) == sorted(table[["begin", "end"]].to_numpy().tolist())


def test_tracks_table_is_consistent_with_relabelled_movie(dividing_movie, shuffle):
    gt, _ = dividing_movie
    result = track(shuffle(gt, seed=3))
    tracks = result.tracks
    assert list(tracks.columns) == [
        "track_id", "frame", "label", "y_px", "x_px", "area_px", "parent_track_id",
    ]  # fmt: skip
    for row in tracks.itertuples():
        assert result.labels[row.frame, round(row.y_px), round(row.x_px)] == row.track_id
    assert result.labels.dtype == np.uint16
    assert set(np.unique(result.labels)) - {0} == set(tracks["track_id"])


def test_result_does_not_depend_on_label_values(dividing_movie, shuffle):
    gt, _ = dividing_movie
    a = track(shuffle(gt, seed=1)).ctc_tracks
    b = track(shuffle(gt, seed=2)).ctc_tracks
    pd.testing.assert_frame_equal(a, b)


def test_input_is_not_modified(dividing_movie):
    gt, _ = dividing_movie
    copy = gt.copy()
    track(gt)
    np.testing.assert_array_equal(gt, copy)


def test_divisions_off_links_mother_to_one_daughter(dividing_movie):
    gt, table = dividing_movie
    result = track(gt, divisions=False)
    m = ctc_measures(gt, table, result.labels, result.ctc_tracks)
    assert len(result.divisions) == 0
    # one parent link became a track link (EC) and the other is missing (EA)
    assert (m.ec, m.ea, m.ed) == (1, 1, 0)


@pytest.fixture
def gap_movie(disc) -> np.ndarray:
    movie = np.zeros((8, 48, 48), np.uint16)
    for t in range(8):
        if t != 4:  # missing in frame 4
            disc(movie, t, (24, 8 + 3 * t), 4, 1)
    return movie


def test_gap_is_closed_with_a_parent_link(gap_movie):
    result = track(gap_movie, gap_closing=1)
    assert result.ctc_tracks.to_numpy().tolist() == [[1, 0, 3, 0], [2, 5, 7, 1]]
    assert len(result.divisions) == 0  # one child: a gap, not a division


def test_gap_closing_off_gives_two_unrelated_tracks(gap_movie):
    result = track(gap_movie, gap_closing=0)
    assert result.ctc_tracks.to_numpy().tolist() == [[1, 0, 3, 0], [2, 5, 7, 0]]


def test_lap_beats_greedy_nearest_neighbour_on_a_crossing(disc):
    # two objects whose greedy choice is wrong: b's nearest is a's target
    movie = np.zeros((2, 40, 60), np.uint16)
    disc(movie, 0, (20, 10), 2, 1)
    disc(movie, 0, (20, 22), 2, 2)
    disc(movie, 1, (20, 19), 2, 1)
    disc(movie, 1, (20, 30), 2, 2)
    lap = track(movie, max_distance=12, overlap_weight=0, divisions=False)
    greedy = track(movie, max_distance=12, overlap_weight=0, divisions=False, method="nearest")
    assert lap.n_tracks == 2  # total squared displacement 81 + 64 beats 9 alone
    assert greedy.n_tracks == 3


def test_default_max_distance_comes_from_object_size(dividing_movie):
    gt, _ = dividing_movie
    table = detections(gt)
    diameter = 2 * np.sqrt(np.median(table["area_px"]) / np.pi)
    assert estimate_max_distance(table) == pytest.approx(1.5 * diameter)
    assert track(gt).config.max_distance == pytest.approx(1.5 * diameter)


def test_config_object_and_keywords_agree(dividing_movie):
    gt, _ = dividing_movie
    config = TrackerConfig(max_distance=15, gap_closing=0)
    a = track(gt, config=config)
    b = track(gt, max_distance=15, gap_closing=0)
    pd.testing.assert_frame_equal(a.tracks, b.tracks)
    assert TrackerConfig.model_validate_json(a.config.model_dump_json()) == a.config


def test_3d_movie_is_tracked():
    movie = np.zeros((4, 10, 30, 30), np.uint8)
    for t in range(4):
        movie[t, 3:7, 5 + t : 10 + t, 5:10] = 1
        movie[t, 2:6, 20:25, 18 - t : 23 - t] = 2
    result = track(movie)
    assert "z_px" in result.tracks.columns
    assert result.ctc_tracks[["begin", "end"]].to_numpy().tolist() == [[0, 3], [0, 3]]


def test_dask_input_gives_dask_labels(dividing_movie):
    da = pytest.importorskip("dask.array")
    gt, _ = dividing_movie
    result = track(da.from_array(gt, chunks=(1, 96, 96)))
    assert type(result.labels).__module__.startswith("dask")
    np.testing.assert_array_equal(np.asarray(result.labels), track(gt).labels)


def test_empty_frames_are_allowed():
    movie = np.zeros((5, 20, 20), np.uint16)
    movie[[0, 1, 3, 4], 5:9, 5:9] = 7
    result = track(movie, gap_closing=1)
    assert result.ctc_tracks.to_numpy().tolist() == [[1, 0, 1, 0], [2, 3, 4, 1]]
    assert track(np.zeros((3, 8, 8), np.uint8)).n_tracks == 0


@pytest.mark.parametrize(
    ("movie", "words"),
    [
        (np.zeros((8, 8), np.uint16), "3-D or 4-D"),
        (np.zeros((2, 8, 8), np.float64), "float64"),
        (np.full((2, 8, 8), np.nan), "NaN"),
        (np.full((2, 8, 8), -3, np.int32), "negative"),
        (np.zeros((2, 8, 8, 4, 4), np.uint8), "5-D"),
    ],
)
def test_bad_movies_raise_input_error_naming_the_value(movie, words):
    with pytest.raises(InputError, match=words):
        track(movie)


def test_bad_options_raise_input_error(dividing_movie):
    gt, _ = dividing_movie
    with pytest.raises(InputError, match="gap_closing"):
        track(gt, gap_closing=-1)
    with pytest.raises(InputError, match="max_distance"):
        track(gt, max_distance=0)
    with pytest.raises(InputError, match="segmenter"):
        track_movie(gt.astype(np.float32), segmenter="magic")


def test_assemble_tracks_rejects_merges():
    table = pd.DataFrame({"frame": [0, 0, 1]})
    with pytest.raises(InputError, match="more than one incoming"):
        assemble_tracks(table, [(0, 2), (1, 2)])


def test_track_movie_segments_then_tracks(dividing_movie):
    gt, table = dividing_movie
    rng = np.random.default_rng(0)
    frames = (gt > 0) * 200.0 + rng.normal(20, 5, gt.shape)
    result = track_movie(frames.astype(np.float32), segmenter="threshold")
    m = ctc_measures(gt, table, result.labels, result.ctc_tracks)
    assert m.fn == 0 and m.ns == 0  # every cell found, none merged (a noise speck may be FP)
    assert m.tra > 0.99 and m.division_f1 == 1.0


def test_track_movie_rejects_nan_frames():
    frames = np.zeros((2, 16, 16), np.float32)
    frames[1, 3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        track_movie(frames, segmenter="threshold")


def test_tracking_names_the_nucleus_model_that_segments():
    from cytolens.segment.model import DEFAULT_MODEL
    from cytolens.track.cli import NUCLEI_MODEL

    assert NUCLEI_MODEL == DEFAULT_MODEL  # applicability and provenance name the model that runs
