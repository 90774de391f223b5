"""Synthetic label movies with known tracks, shared by the tracking tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def paint_disc(
    movie: np.ndarray, t: int, centre: tuple[float, float], radius: float, label: int
) -> None:
    """Paint a disc of ``label`` into frame ``t``."""
    yy, xx = np.ogrid[: movie.shape[1], : movie.shape[2]]
    movie[t][(yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2] = label


def shuffle_labels(movie: np.ndarray, seed: int = 0) -> np.ndarray:
    """Renumber the objects of every frame at random, so identities cannot leak across frames."""
    rng = np.random.default_rng(seed)
    out = np.zeros_like(movie)
    for t in range(movie.shape[0]):
        ids = np.unique(movie[t])[1:]
        lut = np.zeros(int(movie[t].max()) + 1, movie.dtype)
        lut[ids] = rng.choice(np.arange(1, 200), size=ids.size, replace=False)
        out[t] = lut[movie[t]]
    return out


@pytest.fixture
def dividing_movie() -> tuple[np.ndarray, pd.DataFrame]:
    """12 frames: A moves right, B divides into two daughters at frame 6, C appears at frame 3.

    Returns the ground-truth marker movie (labels are track ids) and its CTC table.
    """
    movie = np.zeros((12, 96, 96), np.uint16)
    for t in range(12):
        paint_disc(movie, t, (20, 12 + 3 * t), 5, 1)  # A
        if t < 6:
            paint_disc(movie, t, (64, 60), 7, 2)  # B, the mother
        else:
            k = t - 6
            paint_disc(movie, t, (64, 52 - k), 5, 3)  # daughters move apart
            paint_disc(movie, t, (64, 68 + k), 5, 4)
        if t >= 3:
            paint_disc(movie, t, (85, 20 + t), 5, 5)  # C enters late
    table = pd.DataFrame(
        [[1, 0, 11, 0], [2, 0, 5, 0], [3, 6, 11, 2], [4, 6, 11, 2], [5, 3, 11, 0]],
        columns=["label", "begin", "end", "parent"],
    )
    return movie, table


@pytest.fixture
def disc():
    """The function :func:`paint_disc`."""
    return paint_disc


@pytest.fixture
def shuffle():
    """The function :func:`shuffle_labels`."""
    return shuffle_labels
