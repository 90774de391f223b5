"""Cell tracking with lineages: link objects over time, close gaps, detect divisions.

- :func:`track` links the objects of a label movie (``TYX`` or ``TZYX``) by
  linear assignment on distance and overlap, with gap closing and division
  detection; :func:`track_movie` segments raw frames first.
- The result, :class:`TrackingResult`, holds a tracks DataFrame
  (``track_id, frame, label, y_px, x_px, area_px, parent_track_id``), the movie
  relabelled by track, and writes a Cell Tracking Challenge result folder.
- :mod:`cytolens.track.plot` draws lineage trees and overlay animations.

Examples
--------
>>> import numpy as np
>>> from cytolens import track as tr
>>> movie = np.zeros((4, 32, 32), np.uint16)
>>> for t in range(4):
...     movie[t, 10:16, 4 + 2 * t : 10 + 2 * t] = 1
>>> tr.track(movie).ctc_tracks.to_numpy().tolist()
[[1, 0, 3, 0]]
"""

from cytolens.track.config import TrackerConfig
from cytolens.track.detections import detections, estimate_max_distance
from cytolens.track.lineage import assemble_tracks, ctc_table, relabel
from cytolens.track.plot import overlay_animation, plot_lineage
from cytolens.track.segmentation import segment_movie, segment_threshold
from cytolens.track.tracker import TrackingResult, track, track_movie

__all__ = [
    "TrackerConfig",
    "TrackingResult",
    "assemble_tracks",
    "ctc_table",
    "detections",
    "estimate_max_distance",
    "overlay_animation",
    "plot_lineage",
    "relabel",
    "segment_movie",
    "segment_threshold",
    "track",
    "track_movie",
]
