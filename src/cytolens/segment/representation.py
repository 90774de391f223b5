"""The dense representation the network predicts, and instances from it.

Two maps per pixel:

- ``foreground``: probability that the pixel belongs to a nucleus;
- ``distance``: the Euclidean distance to the nucleus's own border divided by
  that nucleus's largest distance, so it rises from 0 at every border to 1 at
  every centre, whatever the size of the nucleus. Where two nuclei touch, the
  map dips to 0 between them.

Instances come from a marker-controlled watershed: markers are the connected
regions where ``distance > seed_threshold`` inside the foreground, and they
grow over ``-distance`` within ``foreground > fg_threshold``. Both maps are
smooth, so they can be predicted tile by tile, blended, and post-processed on
the stitched whole: an object crossing a tile border is never split.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

__all__ = ["drop_small_objects", "instances_from_maps", "relabel_sequential_uint32", "target_maps"]


def target_maps(labels: np.ndarray) -> np.ndarray:
    """Training targets for a label image: ``(2, Y, X)`` float32 foreground and distance.

    Examples
    --------
    >>> lab = np.zeros((7, 7), np.uint16)
    >>> lab[1:6, 1:6] = 1  # a 5 x 5 square: middle row
    >>> target_maps(lab)[1, 3].astype(float).round(2).tolist()
    [0.0, 0.33, 0.67, 1.0, 0.67, 0.33, 0.0]
    """
    labels = np.asarray(labels)
    out = np.zeros((2, *labels.shape), np.float32)
    out[0] = labels > 0
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        padded = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
        mask = labels[padded] == i
        # pad by one pixel so objects touching the image border still get a border
        d = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        top = d.max()
        if top > 0:
            out[1][padded][mask] = (d[mask] / top).astype(np.float32)
    return out


def instances_from_maps(
    foreground: np.ndarray,
    distance: np.ndarray,
    *,
    fg_threshold: float = 0.5,
    seed_threshold: float = 0.5,
    min_size: int = 0,
) -> np.ndarray:
    """Marker-controlled watershed of the predicted maps into a uint32 label image.

    Parameters
    ----------
    foreground, distance : numpy.ndarray, shape (Y, X)
        Predicted maps in ``[0, 1]`` (see the module notes).
    fg_threshold : float
        Foreground probability above which a pixel belongs to a nucleus.
    seed_threshold : float
        Normalized distance above which a pixel is a nucleus's core (marker).
    min_size : int
        Objects smaller than this many pixels are removed.

    Returns
    -------
    numpy.ndarray of uint32
        0 = background, 1..N nuclei (sequential).

    Examples
    --------
    >>> yy, xx = np.mgrid[:9, :16]
    >>> dist = np.maximum(np.clip(1 - np.hypot(yy - 4, xx - 4) / 4, 0, 1),
    ...                   np.clip(1 - np.hypot(yy - 4, xx - 11) / 4, 0, 1))
    >>> lab = instances_from_maps(  # two touching cones
    ...     (dist > 0).astype(float), dist)
    >>> int(lab.max()), lab.dtype.name
    (2, 'uint32')
    """
    from skimage.segmentation import watershed

    mask = foreground > fg_threshold
    markers, n = ndi.label((distance > seed_threshold) & mask)
    if n == 0:
        return np.zeros(foreground.shape, np.uint32)
    return drop_small_objects(watershed(-distance, markers, mask=mask), min_size)


def relabel_sequential_uint32(labels: np.ndarray) -> np.ndarray:
    """Renumber the objects of a label image 1..N (in label order) as uint32.

    Examples
    --------
    >>> relabel_sequential_uint32(np.array([[0, 7, 7, 3]])).tolist()
    [[0, 2, 2, 1]]
    """
    return drop_small_objects(labels, 0)


def drop_small_objects(labels: Any, min_size: float, *, dtype: Any = np.uint32) -> np.ndarray:
    """Erase objects under ``min_size`` px and renumber the rest 1..N (in label order).

    One look-up table, no sort (unlike ``np.unique``): the step every
    segmenter ends with.

    Examples
    --------
    >>> lab = np.array([[1, 1, 0, 2], [1, 1, 0, 3], [0, 0, 0, 3]])
    >>> drop_small_objects(lab, 2, dtype=np.int32).tolist()
    [[1, 1, 0, 0], [1, 1, 0, 2], [0, 0, 0, 2]]
    """
    labels = np.asarray(labels)
    sizes = np.bincount(labels.ravel(), minlength=1)
    keep = sizes >= max(min_size, 1)
    keep[0] = False
    lut = np.zeros(sizes.size, dtype)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=dtype)
    return lut[labels]
