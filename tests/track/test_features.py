"""Track features in physical units on hand-made movies with known speeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cytolens.core.errors import InputError
from cytolens.track import track
from cytolens.track.features import mean_squared_displacement, step_features, track_features


def _movie() -> np.ndarray:
    """Two squares: one moves 3 px/frame along x, one 4 px/frame along y; 6 frames."""
    movie = np.zeros((6, 64, 64), np.uint16)
    for t in range(6):
        movie[t, 5:11, 2 + 3 * t : 8 + 3 * t] = 1
        movie[t, 20 + 4 * t : 26 + 4 * t, 45:51] = 2
    return movie


def test_known_speeds_in_um_per_second() -> None:
    result = track(_movie())
    features = track_features(result.tracks, pixel_size_um=0.25, frame_interval_s=10.0)
    assert len(features) == 2
    by_speed = features.sort_values("mean_speed_um_per_s")
    # 3 px * 0.25 um / 10 s and 4 px * 0.25 um / 10 s
    np.testing.assert_allclose(by_speed["mean_speed_um_per_s"], [0.075, 0.1], rtol=1e-6)
    np.testing.assert_allclose(by_speed["displacement_um"], [3.75, 5.0], rtol=1e-6)
    np.testing.assert_allclose(by_speed["straightness"], 1.0)
    np.testing.assert_allclose(by_speed["duration_s"], 50.0)
    steps = step_features(result.tracks, pixel_size_um=0.25, frame_interval_s=10.0)
    speeds = steps["speed_um_per_s"].dropna().round(6)
    assert set(speeds) == {0.075, 0.1}


def test_msd_of_constant_velocity_is_quadratic() -> None:
    result = track(_movie())
    msd = mean_squared_displacement(result.tracks, pixel_size_um=0.5, frame_interval_s=2.0)
    lags = msd["lag_frames"].to_numpy()
    np.testing.assert_array_equal(lags, [1, 2, 3, 4, 5])
    # mean over both tracks of (v * lag)^2, v = 1.5 and 2 um per frame
    np.testing.assert_allclose(msd["msd_um2"], (1.5**2 + 2.0**2) / 2 * lags**2, rtol=1e-6)
    np.testing.assert_allclose(msd["lag_s"], 2.0 * lags)


def test_pixel_units_without_sizes_and_anisotropic_sizes() -> None:
    tracks = pd.DataFrame(
        {"track_id": 1, "frame": [0, 1], "z_px": [0.0, 1.0], "y_px": [0.0, 0.0], "x_px": [0.0, 0.0]}
    )
    assert "speed_px_per_frame" in step_features(tracks).columns
    feats = track_features(tracks, pixel_size_um={"Z": 2.0, "Y": 0.5, "X": 0.5})
    np.testing.assert_allclose(feats["displacement_um"], 2.0)


def test_zigzag_straightness() -> None:
    tracks = pd.DataFrame(
        {"track_id": 1, "frame": range(5), "y_px": [0.0, 1, 0, 1, 0], "x_px": range(5)}
    )
    feats = track_features(tracks)
    np.testing.assert_allclose(feats["straightness"], 4 / (4 * np.sqrt(2)))


def test_bad_sizes_are_rejected() -> None:
    tracks = pd.DataFrame({"track_id": 1, "frame": [0, 1], "y_px": 0.0, "x_px": [0.0, 1.0]})
    with pytest.raises(InputError, match="pixel_size_um"):
        step_features(tracks, pixel_size_um=-1)
    with pytest.raises(InputError, match="frame_interval_s"):
        track_features(tracks, frame_interval_s=0)
    with pytest.raises(InputError, match="columns"):
        step_features(tracks.drop(columns="x_px"))
