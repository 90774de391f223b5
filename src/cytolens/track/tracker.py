"""Tracking label movies and raw movies: the public entry points and their result."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cytolens.core.errors import InputError
from cytolens.core.files import atomic_path
from cytolens.core.tables import FRAME, position_columns
from cytolens.track import lineage
from cytolens.track.config import TrackerConfig, make_config
from cytolens.track.detections import (
    check_label_movie,
    check_looks_like_labels,
    detections,
    estimate_max_distance,
    movie_name,
)
from cytolens.track.lineage import assemble_tracks, ctc_table, relabel
from cytolens.track.linking import link_frames, link_segments
from cytolens.track.segmentation import check_found_objects, segment_movie

__all__ = ["TrackingResult", "track", "track_movie"]

logger = logging.getLogger(__name__)

#: Signature of ``progress`` callbacks: ``(stage, done, total)``.
ProgressCallback = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TrackingResult:
    """Tracks of a movie, the movie relabelled by track, and the settings that made them.

    Attributes
    ----------
    tracks : pandas.DataFrame
        One row per object and frame: ``track_id``, ``frame`` (index from
        0), ``label`` (the object's value in the input frame), ``z_px`` (3-D
        only), ``y_px``, ``x_px`` (centroid, pixels), ``area_px``,
        ``parent_track_id`` (0 = none). :func:`~cytolens.core.tables.with_physical_units`
        adds positions in um and ``time_s``.
        Divisions and closed gaps start new tracks whose parent is the track
        before (CTC convention; a parent with one child is a gap).
    labels : numpy.ndarray or dask.array.Array
        Movie ``T(Z)YX`` where each object carries its ``track_id``.
    config : TrackerConfig
        The settings used, with ``max_distance`` resolved.
    """

    tracks: pd.DataFrame
    labels: Any
    config: TrackerConfig

    @property
    def ctc_tracks(self) -> pd.DataFrame:
        """The CTC track table ``label, begin, end, parent`` (``res_track.txt``)."""
        return ctc_table(self.tracks)

    @property
    def divisions(self) -> pd.DataFrame:
        """One row per division: ``parent_track_id``, ``frame`` (mother's last), ``daughters``."""
        return lineage.divisions(self.tracks)

    @property
    def n_tracks(self) -> int:
        """Number of tracks."""
        return int(self.tracks["track_id"].nunique())

    def to_ctc(self, folder: str | os.PathLike[str], *, first_frame: int = 0) -> Path:
        """Write a CTC result folder: ``maskTTT.tif`` per frame and ``res_track.txt``.

        The folder is written under a temporary name and renamed when
        complete; an earlier result folder of that name (``mask*.tif`` and
        ``res_track.txt`` only) is replaced, any other folder is refused.

        Parameters
        ----------
        folder : str or path-like
            The result folder, e.g. ``01_RES``.
        first_frame : int
            The number of the movie's first frame, so that the results keep
            the input's numbering (``mask005.tif`` and ``res_track.txt``
            frames for ``t005.tif``); ``read_ctc`` gives it as
            ``frames.metadata["frame_numbers"][0]``.

        Returns
        -------
        pathlib.Path
            ``folder``.
        """
        from cytolens.io import imwrite, write_ctc_tracks

        if isinstance(first_frame, bool) or not isinstance(first_frame, (int, np.integer)):
            raise InputError(f"first_frame must be an integer >= 0, got {first_frame!r}")
        if first_frame < 0:
            raise InputError(f"first_frame must be an integer >= 0, got {first_frame}")
        if self.n_tracks >= 2**16:
            raise InputError(
                f"cannot write {folder}: {self.n_tracks} tracks exceed the 65535 labels of the "
                "uint16 masks of a CTC result"
            )
        folder = Path(folder)
        n_t = self.labels.shape[0]
        digits = max(3, len(str(first_frame + n_t - 1)))
        axes = "ZYX" if self.labels.ndim == 4 else "YX"
        earlier = folder.is_dir() and all(
            p.name == "res_track.txt" or (p.name.startswith("mask") and p.suffix == ".tif")
            for p in folder.iterdir()
        )  # an earlier result folder is replaced; a folder holding anything else never
        with atomic_path(folder, replace_folder=earlier) as tmp:
            tmp.mkdir()
            for t in range(n_t):
                plane = np.asarray(self.labels[t])
                name = f"mask{first_frame + t:0{digits}d}.tif"
                imwrite(tmp / name, plane.astype(np.uint16, copy=False), axes=axes)
            table = self.ctc_tracks
            table[["begin", "end"]] += first_frame
            write_ctc_tracks(tmp / "res_track.txt", table)
        return folder


def track(
    labels: Any,
    *,
    max_distance: float | None = None,
    gap_closing: int = 2,
    divisions: bool = True,
    overlap_weight: float = 1.0,
    method: str = "lap",
    config: TrackerConfig | None = None,
    progress: ProgressCallback | None = None,
) -> TrackingResult:
    """Track the objects of a label movie, with gap closing and divisions.

    Objects are linked frame to frame by linear assignment on costs from
    centroid distance and pixel overlap, then segments are joined across
    gaps and at divisions by a second assignment (Jaqaman et al. 2008; see
    :mod:`cytolens.track.linking`). Label values are never used to connect
    frames, so the input may be labelled frame by frame in any way.

    Parameters
    ----------
    labels : array_like of int or Image
        Label movie, axes ``TYX`` or ``TZYX`` (an
        :class:`~cytolens.core.image.Image` is reordered), 0 = background.
        Numpy or Dask (read one frame at a time).
    max_distance : float, optional
        Largest displacement in pixels between linked objects of consecutive
        frames. Default: derived from the data,
        ``max(1.5 * median diameter, 4 * median nearest-neighbour step)``
        (:func:`~cytolens.track.detections.estimate_max_distance`).
    gap_closing : int
        Most frames an object may be missing and still be linked (0: off).
    divisions : bool
        Detect divisions (one object becoming two).
    overlap_weight : float
        In ``[0, 1]``; how much overlap (IoU) lowers a link's cost.
    method : {"lap", "nearest"}
        Frame-to-frame assignment: optimal, or greedy nearest neighbour.
    config : TrackerConfig, optional
        All settings at once; the keyword options above are then ignored.
    progress : callable, optional
        Called as ``progress(stage, done, total)``.

    Returns
    -------
    TrackingResult

    Raises
    ------
    InputError
        For a movie that is not 3-D/4-D integer labels, one that looks like
        raw intensities or a binary mask rather than labels
        (:func:`~cytolens.track.detections.check_looks_like_labels`), or
        invalid options.

    Examples
    --------
    >>> movie = np.zeros((3, 20, 20), np.uint16)
    >>> for t in range(3):
    ...     movie[t, 2 + t : 6 + t, 2:6] = 10 + t  # one square moving down, relabelled each frame
    ...     movie[t, 12:16, 12 + t : 16 + t] = 30  # another moving right
    >>> result = track(movie)
    >>> result.ctc_tracks.to_numpy().tolist()
    [[1, 0, 2, 0], [2, 0, 2, 0]]
    >>> result.labels[2, 4, 2], result.labels[2, 12, 14]
    (np.uint16(1), np.uint16(2))
    """
    name = movie_name(labels)
    array, _ = check_label_movie(labels, name)
    check_looks_like_labels(array, name)
    if config is None:
        config = make_config(
            max_distance=max_distance,
            gap_closing=gap_closing,
            divisions=divisions,
            overlap_weight=overlap_weight,
            method=method,
        )
    else:
        config = make_config(config)
    table = detections(array)
    if config.max_distance is None:
        config = make_config(config, max_distance=estimate_max_distance(table))
    links = link_frames(array, table, config, progress=progress)
    extra = link_segments(table, links, config)
    tracks = assemble_tracks(table, np.concatenate([links, extra]))
    columns = ["track_id", FRAME, "label", *position_columns(tracks), "area_px", "parent_track_id"]
    tracks = tracks[columns].reset_index(drop=True)
    logger.info(
        "%d detections -> %d tracks, %d divisions",
        len(tracks),
        tracks["track_id"].nunique(),
        len(lineage.divisions(tracks)),
    )
    return TrackingResult(tracks, relabel(array, tracks), config)


def track_movie(
    frames: Any,
    *,
    segmenter: str | Callable[[np.ndarray], Any] = "threshold",
    config: TrackerConfig | None = None,
    progress: ProgressCallback | None = None,
    **options: Any,
) -> TrackingResult:
    """Segment every frame of a raw movie, then :func:`track` the objects.

    Parameters
    ----------
    frames : array_like or Image
        Raw movie ``TYX`` (or ``TZYX``); an Image is reordered.
    segmenter : {"auto", "threshold", "nuclei"} or callable
        ``"threshold"`` (default): the classical baseline
        :func:`~cytolens.track.segmentation.segment_threshold`, which tracks the
        Cell Tracking Challenge movies better than the learned model
        (``python benchmarks/tracking.py``);
        ``"nuclei"``: :func:`cytolens.segment.nuclei`; ``"auto"``: the latter
        when cytolens.segment provides it, else the baseline. A callable
        takes one frame and returns its label image.
    config : TrackerConfig, optional
        Tracker settings; or pass them as keyword ``options`` (see
        :func:`track`).
    progress : callable, optional
        Called as ``progress(stage, done, total)`` for ``"segmenting"``
        then ``"linking"``.

    Returns
    -------
    TrackingResult
        Its ``labels`` is the segmentation, relabelled by track.

    Raises
    ------
    InputError
        For invalid options, and when the segmenter finds no object in any
        frame (:func:`~cytolens.track.segmentation.check_found_objects`).

    Examples
    --------
    >>> from cytolens import data
    >>> frames = data.tracking().data[:3]
    >>> result = track_movie(frames, segmenter="threshold")
    >>> result.labels.shape, result.n_tracks > 0
    ((3, 320, 320), True)
    """
    config = make_config(config, **options)
    labels = segment_movie(frames, segmenter=segmenter, progress=progress)
    check_found_objects(labels, segmenter, movie_name(frames, "the movie"))
    return track(labels, config=config, progress=progress)
