"""Tracking real Cell Tracking Challenge markers: link-only TRA bounds and a CTC round trip.

Bounds: link-only tracking measured TRA = 1.0 (division F1 = 1.0) on the bundled
20-frame excerpt of Fluo-N2DH-SIM+ and on the first 15 frames of the full sequence
(0.9995 over all 65 frames and over all 92 of Fluo-N2DH-GOWT1, benchmarks/tracking.py);
the tests allow a margin of 0.01.
"""

from __future__ import annotations

import numpy as np
import pytest

from cytolens import data
from cytolens.evaluate import ctc_measures
from cytolens.io import imread, read_ctc, read_ctc_tracks
from cytolens.track import track


def test_bundled_excerpt_link_only(shuffle):
    markers, tracks = data.tracking_ground_truth()
    gt = np.asarray(markers.data)
    result = track(shuffle(gt))
    m = ctc_measures(gt, tracks, result.labels, result.ctc_tracks)
    assert m.tra >= 0.99
    assert m.division_f1 >= 0.99 and m.n_divisions == 5


@pytest.fixture
def sim_first_frames(shared_data):
    n = 15
    seq = read_ctc(shared_data / "tracking" / "ctc" / "Fluo-N2DH-SIM+", lazy=True)
    gt = np.asarray(seq.tra_masks.data[:n])
    tracks = seq.tracks[seq.tracks["begin"] < n].copy()
    tracks["end"] = tracks["end"].clip(upper=n - 1)
    return gt, tracks


def test_sim_link_only_tra(sim_first_frames, shuffle):
    gt, tracks = sim_first_frames
    result = track(shuffle(gt))
    m = ctc_measures(gt, tracks, result.labels, result.ctc_tracks)
    assert m.det == 1.0
    assert m.tra >= 0.99


def test_ctc_round_trip(sim_first_frames, tmp_path):
    gt, tracks = sim_first_frames
    result = track(gt)
    folder = result.to_ctc(tmp_path / "01_RES")
    masks = sorted(folder.glob("mask*.tif"))
    assert [p.name for p in masks[:2]] == ["mask000.tif", "mask001.tif"] and len(masks) == 15
    movie = np.stack([np.asarray(imread(p).data) for p in masks])
    assert movie.dtype == np.uint16
    np.testing.assert_array_equal(movie, result.labels)
    table = read_ctc_tracks(folder / "res_track.txt")
    assert table.equals(result.ctc_tracks)
    written = ctc_measures(gt, tracks, movie, table)
    assert written.tra == ctc_measures(gt, tracks, result.labels, result.ctc_tracks).tra
