"""Nucleus segmentation: a shipped deep-learning model, a classical baseline, measurements.

- :func:`nuclei` / :class:`NucleusSegmenter`: a compact U-Net predicting
  foreground and normalized-distance maps, tiled over any image size, split
  into nuclei by a marker-controlled watershed (model ``nuclei-v1``, trained
  on DSB2018 by ``scripts/train/nuclei.py``).
- :func:`nuclei_classical`: Otsu (or local) threshold + distance-transform
  watershed, the baseline.
- :func:`measure`: one row per nucleus (area, perimeter, centroid, diameter,
  shape, intensity), units in the column names.

torch is imported only when a model runs.
"""

from cytolens.segment.classical import estimate_diameter, nuclei_classical
from cytolens.segment.measure import measure
from cytolens.segment.model import NucleusSegmenter, nuclei

__all__ = ["NucleusSegmenter", "estimate_diameter", "measure", "nuclei", "nuclei_classical"]
