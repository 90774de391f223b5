"""Column names of the per-object tables cytolens returns and writes, with their units.

Every coordinate column of a table that cytolens returns (detections, tracks,
focus patches) or writes for users (CSV from the commands and pipeline
steps) names its unit:

- pixels ``_px``: boxes ``xmin_px, ymin_px, xmax_px, ymax_px`` (max
  exclusive), positions ``z_px, y_px, x_px``, patch corners ``y0_px, x0_px``;
- micrometres ``_um`` beside them when the pixel size is known
  (:func:`with_physical_units`);
- time as ``frame`` (an integer index) and ``time_s`` when the frame interval
  is known.

Interchange formats keep their own names at their boundary (Pascal VOC /
LabelImg ``xmin``, COCO ``bbox``, TrackMate XML ``POSITION_X``, napari Tracks
data). Tables written by earlier versions of cytolens used the bare names
(``xmin``, ``t``, ``y``, ``x``, ``y0``); :func:`upgrade_columns` and
:func:`read_table` rename them, so files of earlier runs keep being read.

Examples
--------
>>> import pandas as pd
>>> old = pd.DataFrame({"track_id": [1], "t": [0], "y": [2.0], "x": [3.0]})
>>> list(upgrade_columns(old, "tracks").columns)
['track_id', 'frame', 'y_px', 'x_px']
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cytolens.core.errors import FileFormatError, InputError, MissingFileError

__all__ = [
    "BOX_COLUMNS",
    "FRAME",
    "LEGACY_NAMES",
    "POSITION_COLUMNS",
    "VOC_BOX_NAMES",
    "axis_sizes",
    "position_columns",
    "read_table",
    "upgrade_columns",
    "with_physical_units",
]

#: Box corners in pixels (``xmax_px``/``ymax_px`` exclusive, as LabelImg writes them).
BOX_COLUMNS = ("xmin_px", "ymin_px", "xmax_px", "ymax_px")
#: The same corners as Pascal VOC / LabelImg XML names them (interchange, and older tables).
VOC_BOX_NAMES = ("xmin", "ymin", "xmax", "ymax")
#: Integer time index of a row (frame number).
FRAME = "frame"
#: Object positions (centroids) in pixels, in axis order.
POSITION_COLUMNS = ("z_px", "y_px", "x_px")

#: Per kind of table: the name an earlier version wrote -> the current name.
LEGACY_NAMES: dict[str, dict[str, str]] = {
    "boxes": dict(zip(VOC_BOX_NAMES, BOX_COLUMNS, strict=True)),
    "tracks": {
        "t": FRAME,
        "z": "z_px",
        "y": "y_px",
        "x": "x_px",
        "t_start": "frame_start",
        "t_end": "frame_end",
    },
    "focus": {
        "y0": "y0_px",
        "x0": "x0_px",
        "z": "z_px",
        "height": "height_px",
        "width": "width_px",
    },
}


def upgrade_columns(table: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Rename the columns an earlier cytolens version wrote to the current unit-named ones.

    A column is renamed only when the table lacks its current name, so a
    current table comes back unchanged (the same object).

    Parameters
    ----------
    table : pandas.DataFrame
        A table of the given kind, current or old.
    kind : {"boxes", "tracks", "focus"}
        Which table it is (see :data:`LEGACY_NAMES`).

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> boxes = pd.DataFrame({"class": ["RBC"], "xmin": [1], "ymin": [2], "xmax": [5], "ymax": [6]})
    >>> list(upgrade_columns(boxes, "boxes").columns)
    ['class', 'xmin_px', 'ymin_px', 'xmax_px', 'ymax_px']
    """
    if kind not in LEGACY_NAMES:
        raise InputError(f"unknown table kind {kind!r}; expected one of {sorted(LEGACY_NAMES)}")
    renames = {
        old: new
        for old, new in LEGACY_NAMES[kind].items()
        if old in table.columns and new not in table.columns
    }
    return table.rename(columns=renames) if renames else table


def read_table(path: str | os.PathLike[str], kind: str) -> pd.DataFrame:
    """Read a CSV table cytolens wrote (this version or an earlier one), with current names.

    Parameters
    ----------
    path : path-like
        The ``.csv`` file.
    kind : {"boxes", "tracks", "focus"}
        Which table it is.

    Returns
    -------
    pandas.DataFrame
        The table, old column names renamed by :func:`upgrade_columns`.

    Raises
    ------
    MissingFileError, FileFormatError
        For a missing file, or one that is not a CSV table.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "tracks.csv"
    >>> _ = path.write_text("track_id,t,y,x\\n1,0,2.0,3.0\\n")
    >>> read_table(path, "tracks").columns.tolist()
    ['track_id', 'frame', 'y_px', 'x_px']
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: table not found")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"{path}: not a CSV table ({exc})") from None
    return upgrade_columns(table, kind)


def position_columns(table: pd.DataFrame) -> list[str]:
    """The position columns (``z_px``, ``y_px``, ``x_px``) a table has, in axis order.

    Examples
    --------
    >>> position_columns(pd.DataFrame(columns=["frame", "y_px", "x_px"]))
    ['y_px', 'x_px']
    """
    return [c for c in POSITION_COLUMNS if c in table.columns]


def axis_sizes(pixel_size_um: float | Mapping[str, float], axes: Sequence[str]) -> np.ndarray:
    """Pixel size in um of each axis of ``axes`` (letters such as ``"ZYX"``).

    Parameters
    ----------
    pixel_size_um : float or mapping
        One size for every axis, or one per axis letter (``{"Y": 0.5, "X": 0.5}``;
        upper or lower case).
    axes : sequence of str
        Axis letters.

    Raises
    ------
    InputError
        When an axis has no size or a size is not a positive finite number.

    Examples
    --------
    >>> axis_sizes({"Z": 2.0, "Y": 0.5, "X": 0.5}, "zyx").tolist()
    [2.0, 0.5, 0.5]
    """
    letters = [a.upper() for a in axes]
    if isinstance(pixel_size_um, Mapping):
        sizes = [pixel_size_um.get(a, pixel_size_um.get(a.lower())) for a in letters]
        if any(s is None for s in sizes):
            raise InputError(
                f"pixel_size_um {dict(pixel_size_um)} lacks one of the axes {''.join(letters)}"
            )
    else:
        sizes = [pixel_size_um] * len(letters)
    try:
        out = np.asarray(sizes, np.float64)
    except (TypeError, ValueError):
        raise InputError(f"pixel_size_um must be positive numbers, got {pixel_size_um!r}") from None
    if not np.all(np.isfinite(out) & (out > 0)):
        raise InputError(f"pixel_size_um must be positive, got {pixel_size_um!r}")
    return out


def with_physical_units(
    table: pd.DataFrame,
    *,
    pixel_size_um: float | Mapping[str, float] | None = None,
    frame_interval_s: float | None = None,
) -> pd.DataFrame:
    """Add ``z_um, y_um, x_um`` beside the pixel positions and ``time_s`` beside ``frame``.

    Columns are added only for what is known: positions in um when
    ``pixel_size_um`` is given, ``time_s = frame * frame_interval_s`` when
    the interval is. The input is not changed.

    Examples
    --------
    >>> t = pd.DataFrame({"frame": [0, 2], "y_px": [4.0, 6.0], "x_px": [2.0, 2.0]})
    >>> with_physical_units(t, pixel_size_um=0.5, frame_interval_s=10.0).columns.tolist()
    ['frame', 'time_s', 'y_px', 'y_um', 'x_px', 'x_um']
    >>> with_physical_units(t, pixel_size_um=0.5)["y_um"].tolist()
    [2.0, 3.0]
    """
    out = table.copy()
    columns = list(out.columns)
    if pixel_size_um is not None:
        spatial = position_columns(out)
        sizes = axis_sizes(pixel_size_um, [c[0] for c in spatial])
        for col, size in zip(spatial, sizes, strict=True):
            um = col.replace("_px", "_um")
            out[um] = out[col].to_numpy(np.float64) * size
            columns.insert(columns.index(col) + 1, um)
    if frame_interval_s is not None and FRAME in out.columns:
        interval = float(frame_interval_s)
        if not np.isfinite(interval) or interval <= 0:
            raise InputError(f"frame_interval_s must be positive, got {frame_interval_s!r}")
        out["time_s"] = out[FRAME].to_numpy(np.float64) * interval
        columns.insert(columns.index(FRAME) + 1, "time_s")
    return out[columns]
