"""Cell Tracking Challenge (CTC) folders and track tables.

Layout (https://celltrackingchallenge.net/datasets/)::

    <dataset>/01/t000.tif ...               raw frames
    <dataset>/01_GT/TRA/man_track000.tif    tracking markers, every frame
    <dataset>/01_GT/TRA/man_track.txt       "L B E P" lines: label, begin, end, parent (0 = none)
    <dataset>/01_GT/SEG/man_seg000.tif      full segmentations, some frames

Frames and markers are stacked along ``T`` (numpy, or Dask when large);
segmentations stay on disk and are read when looked up.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tifffile

from cytolens.core.errors import FileFormatError, InputError, MissingFileError
from cytolens.core.files import atomic_path
from cytolens.core.image import Image
from cytolens.io.formats import check_dtype, check_like, read_errors, want_lazy
from cytolens.io.tiff import strict_tifffile

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "TRACK_COLUMNS",
    "CTCSequence",
    "MaskFiles",
    "read_ctc",
    "read_ctc_tracks",
    "write_ctc_tracks",
]

logger = logging.getLogger(__name__)

#: Columns of a CTC track table, in file order.
TRACK_COLUMNS = ("label", "begin", "end", "parent")
_FRAME = re.compile(r"t(\d+)\.tiff?", re.IGNORECASE)
_TRA = re.compile(r"man_track(\d+)\.tiff?", re.IGNORECASE)
_SEG = re.compile(r"man_seg(\d+)\.tiff?", re.IGNORECASE)


def _numbered(folder: Path, pattern: re.Pattern[str]) -> dict[int, Path]:
    """Files of ``folder`` whose whole name matches ``pattern``, by their number."""
    if not folder.is_dir():
        return {}
    found = {}
    for entry in folder.iterdir():
        match = pattern.fullmatch(entry.name)
        if match:
            found[int(match.group(1))] = entry
    return dict(sorted(found.items()))


class MaskFiles(Mapping[int, np.ndarray]):
    """Read-only mapping frame number -> mask, read from disk on each lookup.

    Examples
    --------
    >>> masks = MaskFiles({})
    >>> len(masks), list(masks)
    (0, [])
    """

    def __init__(self, files: Mapping[int, Path]) -> None:
        self.files = dict(sorted(files.items()))

    def __getitem__(self, frame: int) -> np.ndarray:
        return _read_tiff(self.files[frame])

    def __iter__(self) -> Iterator[int]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return (
            f"MaskFiles({len(self)} frames: {list(self.files)[:5]}{'...' if len(self) > 5 else ''})"
        )


@dataclass(frozen=True, repr=False, eq=False)
class CTCSequence:
    """One sequence of a Cell Tracking Challenge dataset, with its ground truth if present.

    Attributes
    ----------
    name : str
        Dataset name, e.g. ``"Fluo-N2DH-SIM+"``.
    sequence : str
        Sequence number as in the folder name, e.g. ``"01"``.
    path : pathlib.Path
        The sequence folder (holding ``t000.tif`` ...).
    frames : Image
        Raw frames, axes ``"TYX"`` (``"TZYX"`` for 3D data); Dask when large.
        ``frames.metadata["frame_numbers"]`` holds the file number of each
        frame (consecutive, usually from 0).
    tracks : pandas.DataFrame or None
        ``man_track.txt`` as columns ``label, begin, end, parent`` (int64);
        ``None`` without tracking ground truth.
    tra_masks : Image or None
        Tracking markers (``man_trackTTT.tif``) stacked like ``frames``.
    seg_masks : Mapping[int, numpy.ndarray]
        Segmentation ground truth by frame number, read on access (empty
        without ``SEG`` ground truth).
    """

    name: str
    sequence: str
    path: Path
    frames: Image
    tracks: pd.DataFrame | None
    tra_masks: Image | None
    seg_masks: Mapping[int, np.ndarray]

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return self.frames.shape[0]

    def __repr__(self) -> str:
        n_tracks = "no GT" if self.tracks is None else f"{len(self.tracks)} tracks"
        return (
            f"CTCSequence({self.name}/{self.sequence}: {self.n_frames} frames "
            f"{self.frames.shape[1:]} {self.frames.dtype}, {n_tracks}, "
            f"{len(self.seg_masks)} SEG frames)"
        )


def _find_sequence(folder: Path, sequence: str | int | None) -> tuple[Path, str]:
    """Return (dataset folder, sequence name) for a dataset or sequence folder."""
    if not folder.exists():
        raise MissingFileError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise InputError(f"{folder} is a file; read_ctc expects a CTC dataset or sequence folder")
    wanted = None
    if sequence is not None:
        wanted = f"{int(sequence):02d}" if str(sequence).isdigit() else str(sequence)
    if _numbered(folder, _FRAME):
        if wanted is not None and wanted != folder.name:
            raise InputError(f"{folder} is sequence {folder.name!r}, not sequence {wanted!r}")
        return folder.parent, folder.name
    available = sorted(
        d.name for d in folder.iterdir() if d.is_dir() and d.name.isdigit() and _numbered(d, _FRAME)
    )
    if not available:
        raise FileFormatError(
            f"{folder} is neither a CTC dataset folder (with sequence folders 01, 02, ...) "
            "nor a sequence folder (with frames t000.tif, t001.tif, ...)"
        )
    if wanted is None:
        return folder, available[0]
    if wanted not in available:
        raise MissingFileError(
            f"{folder} has no sequence {wanted!r}; it has {', '.join(available)}"
        )
    return folder, wanted


def _read_tiff(path: Path) -> np.ndarray:
    with read_errors(path), strict_tifffile(path):
        return tifffile.imread(path)


def _read_plane(path: Path, shape: tuple[int, ...], dtype: np.dtype, first: Path) -> np.ndarray:
    return check_like(_read_tiff(path), path, shape, dtype, first)


def _check_complete(
    files: dict[int, Path], frames: list[int], folder: Path, prefix: str, what: str
) -> None:
    """Refuse a gap: a missing frame would shift every later frame (or read as zeros)."""
    first = next(iter(files.values()))
    match = re.search(r"(\d+)(\.tiff?)$", first.name, re.IGNORECASE)
    digits, suffix = (len(match.group(1)), match.group(2)) if match else (3, ".tif")
    name = f"{prefix}{{:0{digits}d}}{suffix}".format
    missing = [name(t) for t in frames if t not in files]
    if missing:
        more = len(missing) - 10
        shown = ", ".join(missing[:10]) + (f" and {more} more" if more > 0 else "")
        raise MissingFileError(
            f"{folder}: {what} {shown} missing between {name(frames[0])} and "
            f"{name(frames[-1])}; a Cell Tracking Challenge sequence has one file per frame, "
            "numbered without gaps"
        )


def _stack(
    files: dict[int, Path], frames: list[int], *, lazy: bool | None, lazy_threshold_mb: float
) -> Any:
    """Stack the files for ``frames`` (all present) along a new first axis."""
    first = next(iter(files.values()))
    with read_errors(first), tifffile.TiffFile(first) as tif:
        shape, dtype = (
            tuple(int(s) for s in tif.series[0].shape),
            check_dtype(tif.series[0].dtype, first),
        )
    if want_lazy(len(frames) * math.prod(shape) * dtype.itemsize, lazy, lazy_threshold_mb):
        import dask
        import dask.array as da

        planes = [
            da.from_delayed(dask.delayed(_read_plane)(files[t], shape, dtype, first), shape, dtype)
            for t in frames
        ]
        return da.stack(planes)
    out = np.zeros((len(frames), *shape), dtype)

    def load(item: tuple[int, Path]) -> None:
        out[item[0]] = _read_plane(item[1], shape, dtype, first)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(load, [(i, files[t]) for i, t in enumerate(frames)]))
    return out


def read_ctc(
    folder: str | os.PathLike[str],
    sequence: str | int | None = None,
    *,
    lazy: bool | None = None,
    lazy_threshold_mb: float = 512,
) -> CTCSequence:
    """Read a Cell Tracking Challenge sequence with its ground truth.

    Parameters
    ----------
    folder : str or path-like
        The dataset folder (e.g. ``.../Fluo-N2DH-SIM+``) or one of its
        sequence folders (``.../Fluo-N2DH-SIM+/01``).
    sequence : str or int, optional
        Which sequence of a dataset folder (``"01"`` or ``1``); default the
        first. Must match the folder when a sequence folder is given.
    lazy : bool, optional
        Dask arrays for frames and markers (``True``), numpy (``False``), or by
        size (``None``: Dask above ``lazy_threshold_mb`` MiB per stack).
    lazy_threshold_mb : float
        See ``lazy``.

    Returns
    -------
    CTCSequence

    Raises
    ------
    MissingFileError
        For a missing folder or sequence, and for a gap in the frames or in
        the tracking markers (``t004.tif`` missing between ``t003.tif`` and
        ``t005.tif``): a Cell Tracking Challenge sequence has one file per
        frame, and a gap would shift every later frame (results written as
        ``mask004.tif`` for ``t005.tif``) or read as an empty frame.
    FileFormatError
        For a folder that is not in CTC layout, an unreadable frame or a
        malformed ``man_track.txt``.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> root = Path(tempfile.mkdtemp()) / "Fluo-Toy"
    >>> (root / "01").mkdir(parents=True)
    >>> for t in range(3):
    ...     tifffile.imwrite(root / "01" / f"t{t:03d}.tif", np.full((8, 8), t, np.uint8))
    >>> seq = read_ctc(root)
    >>> seq.frames.axes, seq.n_frames, seq.tracks is None
    ('TYX', 3, True)
    """
    dataset, seq = _find_sequence(Path(folder), sequence)
    seq_dir, gt_dir = dataset / seq, dataset / f"{seq}_GT"
    frame_files = _numbered(seq_dir, _FRAME)
    numbers = list(range(min(frame_files), max(frame_files) + 1))
    _check_complete(frame_files, numbers, seq_dir, "t", "frame file(s)")
    options = {"lazy": lazy, "lazy_threshold_mb": lazy_threshold_mb}
    data = _stack(frame_files, numbers, **options)
    axes = "TYX" if data.ndim == 3 else "TZYX"
    meta = {"format": "ctc", "frame_numbers": numbers}
    frames = Image(data, axes, path=seq_dir, metadata=meta)
    tra_files = _numbered(gt_dir / "TRA", _TRA)
    tra_masks = None
    if tra_files:
        _check_complete(tra_files, numbers, gt_dir / "TRA", "man_track", "marker file(s)")
        tra = _stack(tra_files, numbers, **options)
        tra_masks = Image(tra, axes, path=gt_dir / "TRA", metadata=dict(meta))
    track_file = gt_dir / "TRA" / "man_track.txt"
    tracks = read_ctc_tracks(track_file) if track_file.is_file() else None
    seg_masks = MaskFiles(_numbered(gt_dir / "SEG", _SEG))
    sequence_ = CTCSequence(dataset.name, seq, seq_dir, frames, tracks, tra_masks, seg_masks)
    logger.info("read %r", sequence_)
    return sequence_


def _check_tracks(table: pd.DataFrame, source: str, error: type[Exception]) -> None:
    """Validate a track table: non-negative ints, begin <= end, unique labels."""
    values = table[list(TRACK_COLUMNS)].to_numpy()
    if len(values) == 0:
        return
    if (values < 0).any():
        raise error(f"{source}: negative label, frame or parent in the track table")
    bad = np.flatnonzero(values[:, 1] > values[:, 2])
    if bad.size:
        row = values[bad[0]]
        raise error(f"{source}: track {row[0]} begins at frame {row[1]} after it ends ({row[2]})")
    labels, counts = np.unique(values[:, 0], return_counts=True)
    if (counts > 1).any():
        raise error(f"{source}: label(s) {labels[counts > 1][:5].tolist()} listed more than once")
    orphans = set(values[:, 3][values[:, 3] > 0].tolist()) - set(labels.tolist())
    if orphans:
        logger.warning("%s: parent label(s) %s have no track of their own", source, sorted(orphans))


def read_ctc_tracks(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a CTC track file (``man_track.txt`` / ``res_track.txt``).

    Returns
    -------
    pandas.DataFrame
        Columns ``label``, ``begin``, ``end``, ``parent`` (int64; frames are
        inclusive, parent 0 means none), one row per track, in file order.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "res_track.txt"
    >>> _ = path.write_text("1 0 4 0\\n2 5 9 1\\n3 5 7 1\\n")
    >>> read_ctc_tracks(path).to_numpy().tolist()
    [[1, 0, 4, 0], [2, 5, 9, 1], [3, 5, 7, 1]]
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such track file")
    rows = []
    with read_errors(path):
        lines = path.read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 4 or not all(f.lstrip("-").isdigit() for f in fields):
            raise FileFormatError(
                f"{path}, line {number}: expected 4 integers 'L B E P', got {line.strip()!r}"
            )
        rows.append([int(f) for f in fields])
    table = pd.DataFrame(np.array(rows, dtype=np.int64).reshape(-1, 4), columns=list(TRACK_COLUMNS))
    _check_tracks(table, str(path), FileFormatError)
    return table


def write_ctc_tracks(path: str | os.PathLike[str], tracks: Any) -> Path:
    """Write a track table as CTC ``L B E P`` lines, atomically.

    Parameters
    ----------
    path : str or path-like
        Output file, usually ``res_track.txt``.
    tracks : pandas.DataFrame or array_like
        Columns ``label``, ``begin``, ``end``, ``parent`` (other columns are
        ignored), or an ``(N, 4)`` integer array in that order.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    InputError
        For missing columns, non-integer or negative values, ``begin > end``
        or repeated labels.

    Examples
    --------
    >>> import tempfile, pandas as pd
    >>> path = Path(tempfile.mkdtemp()) / "res_track.txt"
    >>> table = pd.DataFrame({"label": [1, 2], "begin": [0, 3], "end": [2, 5], "parent": [0, 1]})
    >>> print(write_ctc_tracks(path, table).read_text(), end="")
    1 0 2 0
    2 3 5 1
    """
    import pandas as pd

    path = Path(path)
    if not isinstance(tracks, pd.DataFrame):
        array = np.asarray(tracks)
        if array.ndim != 2 or array.shape[1] != 4:
            raise InputError(
                f"cannot write {path}: tracks must be a DataFrame or an (N, 4) array, "
                f"got shape {array.shape}"
            )
        tracks = pd.DataFrame(array, columns=list(TRACK_COLUMNS))
    missing = [c for c in TRACK_COLUMNS if c not in tracks.columns]
    if missing:
        raise InputError(f"cannot write {path}: the track table lacks column(s) {missing}")
    values = tracks[list(TRACK_COLUMNS)].to_numpy()
    if len(values) and not (
        np.issubdtype(values.dtype, np.number) and np.array_equal(values, np.round(values))
    ):
        raise InputError(f"cannot write {path}: track table values must be integers")
    table = pd.DataFrame(values.astype(np.int64), columns=list(TRACK_COLUMNS))
    _check_tracks(table, f"cannot write {path}", InputError)
    text = "".join(f"{a} {b} {c} {d}\n" for a, b, c, d in table.itertuples(index=False))
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path
