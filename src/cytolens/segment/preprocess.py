"""From any 2-D microscope image to the one normalized channel the segmenters work on.

Both the learned model and the classical baseline see the same input (steps 1-2 are
:func:`cytolens.core.plane.single_plane`, shared with the other per-plane methods):

1. **One plane.** Axes come from the :class:`~cytolens.core.image.Image` or
   the ``axes`` argument; without them, a 2-D array is ``"YX"`` and a 3-D
   array whose last axis has 3 or 4 entries is ``"YXC"`` (RGB/RGBA). Other
   3-D arrays are refused (a Z stack or a channel stack cannot be told apart).
   Singleton ``T``/``Z`` axes are dropped; longer ones are refused.
2. **One channel.** ``channel=`` picks a channel. Otherwise a single channel
   is used as is and RGB(A) becomes the plain mean of R, G and B (alpha is
   dropped): for the grey fluorescence PNGs of DSB2018 (R = G = B) this is the
   image itself, and for brightfield or H&E histology it is a luminance in
   which nuclei are dark. Two or more than four channels need ``channel=``.
3. **Normalization.** Percentiles 1 and 99.8 map to 0 and 1
   (:func:`~cytolens.core.normalize.normalize_percentile`, csbdeep's
   definition), over the whole image so tiles agree.
4. **Polarity.** Nuclei must be bright. With ``invert=None`` an image whose
   normalized median is above 0.4 (a bright background, as in brightfield and
   histology) is inverted to ``1 - x``. On DSB2018 the median is at most 0.19
   for every fluorescence image and at least 0.43 for every histology image.
"""

from __future__ import annotations

import numpy as np

from cytolens.core.normalize import Normalizer

__all__ = ["INVERT_MEDIAN", "NORMALIZER", "SEGMENT_HINT", "normalized_plane"]

#: The normalization of every segmenter input (recorded in the model card).
NORMALIZER = Normalizer(pmin=1.0, pmax=99.8, clip=False)
#: What to do with a stack, appended to the errors of :func:`cytolens.core.plane.single_plane`.
SEGMENT_HINT = "nuclei are segmented in 2-D: pass one plane or a projection"
#: Normalized median above which an image is taken to have a bright background.
INVERT_MEDIAN = 0.4


def normalized_plane(plane: np.ndarray, *, invert: bool | None = None) -> tuple[np.ndarray, bool]:
    """Normalize a plane and make nuclei bright (steps 3-4 of the module notes).

    Returns
    -------
    normalized : numpy.ndarray of float32
        About 0 for background and 1 for bright nuclei.
    inverted : bool
        Whether the intensities were inverted.

    Examples
    --------
    >>> bright_field = np.full((16, 16), 200.0)
    >>> bright_field[4:8, 4:8] = 50.0  # a dark nucleus
    >>> x, inverted = normalized_plane(bright_field)
    >>> inverted, float(x[5, 5]) > float(x[0, 0])
    (True, True)
    """
    x = NORMALIZER(plane)
    if invert is None:
        invert = bool(np.median(x) > INVERT_MEDIAN)
    if invert:
        x = np.float32(1) - x
    return x, bool(invert)
