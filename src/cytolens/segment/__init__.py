"""Nucleus segmentation: a shipped deep-learning model, a classical baseline, measurements.

- :func:`nuclei` / :class:`NucleusSegmenter`: a compact U-Net predicting
  foreground and normalized-distance maps, tiled over any image size, split
  into nuclei by a marker-controlled watershed (model ``nuclei-v1``, trained
  on DSB2018 by ``scripts/train/nuclei.py``).
- :func:`nuclei_classical`: Otsu (or local) threshold + distance-transform
  watershed, the baseline.
- :func:`cells`: whole cells of a cytoplasm/membrane stain, grown from nuclei
  by a seeded watershed (or from the cell foreground alone), tile by tile.
- :func:`measure`: one row per nucleus (area, perimeter, centroid, diameter,
  shape, intensity), units in the column names.

torch is imported only when a model runs.
"""

from cytolens.segment.classical import estimate_diameter, nuclei_classical
from cytolens.segment.measure import measure
from cytolens.segment.model import NucleusSegmenter, nuclei
from cytolens.segment.whole_cells import cells

__all__ = [
    "NucleusSegmenter",
    "cells",
    "estimate_diameter",
    "measure",
    "nuclei",
    "nuclei_classical",
]
