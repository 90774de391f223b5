"""Lineage plot and overlay animation on a synthetic movie with a division."""

from __future__ import annotations

import pytest
from PIL import Image as PILImage

from cytolens.core.errors import InputError
from cytolens.track import overlay_animation, plot_lineage, track


def test_lineage_plot_draws_every_track_and_connector(dividing_movie):
    _, table = dividing_movie
    fig = plot_lineage(table)
    ax = fig.axes[0]
    assert len(ax.lines) == 5 + 2  # five tracks, two mother-daughter connectors
    assert "1 divisions" in ax.get_title()
    # daughters drawn on either side of their mother (track lines are the thick ones)
    tracks = [line for line in ax.lines if line.get_linewidth() == 2.0]
    assert len(tracks) == 5 and len({line.get_ydata()[0] for line in tracks}) == 5
    daughters = sorted(line.get_ydata()[0] for line in tracks if line.get_xdata()[0] == 6)
    mother = [line.get_ydata()[0] for line in tracks if line.get_xdata()[1] == 6]
    assert daughters[0] < mother[0] < daughters[1]


def test_overlay_gif_has_one_frame_per_time_point(dividing_movie, tmp_path):
    gt, _ = dividing_movie
    result = track(gt)
    path = overlay_animation(gt * 50, result.labels, result.tracks, tmp_path / "o.gif", max_size=48)
    with PILImage.open(path) as gif:
        assert gif.n_frames == gt.shape[0]
        assert max(gif.size) == 48  # 96 px subsampled by 2


def test_overlay_rejects_mismatched_shapes(dividing_movie, tmp_path):
    gt, _ = dividing_movie
    result = track(gt)
    with pytest.raises(InputError, match="differ"):
        overlay_animation(gt[:3], result.labels, result.tracks, tmp_path / "o.gif")
    assert not list(tmp_path.iterdir())
