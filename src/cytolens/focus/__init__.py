"""Focus quality: rate images patch by patch, find the best plane, draw QC overlays.

A rebuild of the deep-learning focus rater of Yang et al. 2018
(microscopeimagequality): every 84x84 patch gets a probability distribution
over 11 absolute defocus levels (0 = in focus ... 10 = strongly blurred);
patches without objects come out flat (low certainty). The per-image verdict
needs no threshold.

- :func:`rate_focus`, :class:`FocusResult`: one 2D image.
- :func:`best_plane`: the sharpest plane of a z-stack.
- :func:`save_overlay`, :func:`overlay_rgb`: the image with coloured patch borders.
- :mod:`cytolens.focus.classical`: classical focus measures (baselines, fallback).

torch is imported only when a model is loaded.
"""

from cytolens.focus.model import DEFAULT_MODEL, FocusModel, certainty, expected_level
from cytolens.focus.overlay import overlay_rgb, save_overlay
from cytolens.focus.rate import FocusResult, best_plane, rate_focus

__all__ = [
    "DEFAULT_MODEL",
    "FocusModel",
    "FocusResult",
    "best_plane",
    "certainty",
    "expected_level",
    "overlay_rgb",
    "rate_focus",
    "save_overlay",
]
