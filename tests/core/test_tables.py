"""Unit-named table columns (``cytolens.core.tables``) and reading tables of earlier versions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cytolens.core.errors import FileFormatError, InputError, MissingFileError
from cytolens.core.tables import (
    BOX_COLUMNS,
    axis_sizes,
    read_table,
    upgrade_columns,
    with_physical_units,
)


def test_old_tracks_csv_is_read_with_current_names_and_gives_the_same_features(tmp_path):
    from cytolens.track.features import track_features

    old = tmp_path / "tracks.csv"
    old.write_text(
        "track_id,t,label,y,x,area_px,parent_track_id\n1,0,5,0.0,0.0,9,0\n1,2,5,3.0,4.0,9,0\n"
    )
    table = read_table(old, "tracks")
    assert list(table.columns) == [
        "track_id", "frame", "label", "y_px", "x_px", "area_px", "parent_track_id",
    ]  # fmt: skip
    features = track_features(table, pixel_size_um=0.5, frame_interval_s=10.0)
    assert features[["frame_start", "frame_end"]].to_numpy().tolist() == [[0, 2]]
    np.testing.assert_allclose(features["displacement_um"], 2.5)  # 5 px * 0.5 um
    np.testing.assert_allclose(features["duration_s"], 20.0)


def test_current_table_is_left_alone_and_old_names_never_shadow_new_ones():
    current = pd.DataFrame({"frame": [0], "y_px": [1.0], "x_px": [2.0]})
    assert upgrade_columns(current, "tracks") is current
    both = pd.DataFrame({"xmin": [1], "xmin_px": [2]})  # an extra column named like an old one
    assert list(upgrade_columns(both, "boxes").columns) == ["xmin", "xmin_px"]
    with pytest.raises(InputError, match="unknown table kind"):
        upgrade_columns(current, "nonsense")


def test_old_focus_names_are_upgraded():
    old = pd.DataFrame(columns=["row", "col", "y0", "x0", "height", "width", "z"])
    assert list(upgrade_columns(old, "focus").columns) == [
        "row", "col", "y0_px", "x0_px", "height_px", "width_px", "z_px",
    ]  # fmt: skip


def test_read_table_errors_name_the_file(tmp_path):
    with pytest.raises(MissingFileError, match=r"missing\.csv"):
        read_table(tmp_path / "missing.csv", "tracks")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(FileFormatError, match=r"empty\.csv: not a CSV table"):
        read_table(empty, "tracks")


def test_physical_units_beside_pixels_per_axis():
    table = pd.DataFrame({"track_id": 1, "frame": [3, 4], "z_px": [1.0, 2.0], "y_px": 4.0,
                          "x_px": [0.0, 8.0]})  # fmt: skip
    out = with_physical_units(
        table, pixel_size_um={"Z": 2.0, "Y": 0.25, "X": 0.25}, frame_interval_s=30.0
    )
    assert list(out.columns) == [
        "track_id", "frame", "time_s", "z_px", "z_um", "y_px", "y_um", "x_px", "x_um",
    ]  # fmt: skip
    np.testing.assert_allclose(out["z_um"], [2.0, 4.0])
    np.testing.assert_allclose(out["x_um"], [0.0, 2.0])
    np.testing.assert_allclose(out["time_s"], [90.0, 120.0])
    assert list(table.columns)[1] == "frame" and "time_s" not in table  # input unchanged
    assert list(with_physical_units(table).columns) == list(table.columns)  # nothing known


def test_bad_sizes_are_refused():
    with pytest.raises(InputError, match="lacks one of the axes ZYX"):
        axis_sizes({"Y": 0.5, "X": 0.5}, "ZYX")
    with pytest.raises(InputError, match="positive"):
        axis_sizes(0.0, "YX")
    table = pd.DataFrame({"frame": [0], "y_px": [0.0], "x_px": [0.0]})
    with pytest.raises(InputError, match="frame_interval_s"):
        with_physical_units(table, frame_interval_s=-1.0)


def test_box_columns_name_pixels():
    assert all(c.endswith("_px") for c in BOX_COLUMNS)
