"""Classical blood-cell detection: a colour rule plus blobs (the baseline of the detector).

In Giemsa/Wright-stained smears nuclei and platelets are purple (red and blue
high, green low) and red cells are pale discs darker than the background:

1. stain map ``B - (R + G) / 2`` above ``stain_threshold``: large components are
   white-cell nuclei (box = component box grown by ``wbc_margin``), small
   ones are platelets;
2. darkness map ``1 - G`` minus the purple mask, Otsu threshold, distance
   transform; its maxima at least ``0.7 * rbc_diameter`` apart seed a
   watershed that splits touching red cells; regions of a plausible size
   become red-cell boxes.

Scores (for average precision) are the mean stain strength for purple
objects and the fill of a region relative to a disc of ``rbc_diameter`` for
red cells, both in ``[0, 1]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from cytolens.core.errors import InputError
from cytolens.core.tables import BOX_COLUMNS
from cytolens.core.validate import check_array

__all__ = ["detect_classical"]


def _otsu(x: np.ndarray) -> float:
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(x[::2, ::2]))


def detect_classical(
    image: Any,
    *,
    rbc_diameter: float = 100.0,
    platelet_area: tuple[float, float] = (100.0, 2500.0),
    wbc_min_area: float = 2500.0,
    wbc_margin: float = 0.3,
    platelet_size: float = 40.0,
    stain_threshold: float = 0.15,
) -> pd.DataFrame:
    """Boxes of red cells, white cells and platelets in an RGB blood smear.

    Parameters
    ----------
    image : array_like, shape (Y, X, 3)
        RGB image (any dtype; scaled by its maximum).
    rbc_diameter : float
        Typical red-cell diameter in pixels (about 100 in BCCD's 640x480 fields).
    platelet_area : (float, float)
        Area range in pixels of purple components taken for platelets.
    wbc_min_area : float
        Smallest purple component taken for a white-cell nucleus.
    wbc_margin : float
        White-cell boxes are the nucleus box grown by this fraction on each side.
    platelet_size : float
        Side of a platelet box (the stained core is smaller than the platelet).
    stain_threshold : float
        Smallest stain value ``B - (R + G) / 2`` (intensities scaled to [0, 1])
        of nuclei and platelets.

    Returns
    -------
    pandas.DataFrame
        ``class, xmin_px, ymin_px, xmax_px, ymax_px, score`` with classes ``RBC``,
        ``WBC`` and ``Platelets``.

    Examples
    --------
    >>> rgb = np.full((200, 200, 3), 230, np.uint8)
    >>> yy, xx = np.mgrid[:200, :200]
    >>> rgb[(yy - 100) ** 2 + (xx - 60) ** 2 < 45**2] = (200, 150, 160)  # a red cell
    >>> rgb[(yy - 100) ** 2 + (xx - 160) ** 2 < 10**2] = (150, 140, 210)  # a platelet
    >>> sorted(detect_classical(rgb)["class"])
    ['Platelets', 'RBC']
    """
    from skimage.segmentation import watershed

    rgb = np.asarray(check_array(image, name="image"))
    if rgb.ndim != 3 or rgb.shape[-1] < 3:
        raise InputError(f"image has shape {rgb.shape}; expected an RGB image (Y, X, 3)")
    x = rgb[..., :3].astype(np.float32) / max(float(rgb.max()), 1e-6)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    purple = ndi.gaussian_filter(b - (r + g) / 2, 1.5)
    rows = []
    p_mask = purple > stain_threshold
    p_mask = ndi.binary_opening(p_mask, iterations=2)
    labels, _ = ndi.label(p_mask)
    h, w = p_mask.shape
    for k, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        region = labels[sl] == k
        area = float(region.sum())
        strength = float(np.clip(purple[sl][region].mean() * 2.5, 0, 1))
        y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        if area >= wbc_min_area:
            my, mx = wbc_margin * (y1 - y0), wbc_margin * (x1 - x0)
            box = (max(0, x0 - mx), max(0, y0 - my), min(w, x1 + mx), min(h, y1 + my))
            rows.append(("WBC", *box, strength))
        elif platelet_area[0] <= area <= platelet_area[1]:
            # the stained core is smaller than the annotated platelet: a box of the typical size
            cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
            half = max(platelet_size, y1 - y0, x1 - x0) / 2
            box = (max(0, cx - half), max(0, cy - half), min(w, cx + half), min(h, cy + half))
            rows.append(("Platelets", *box, strength))

    dark = ndi.gaussian_filter(1 - g, 2.0)
    cells = (dark > _otsu(dark)) & ~ndi.binary_dilation(p_mask, iterations=5)
    cells = ndi.binary_fill_holes(ndi.binary_opening(cells, iterations=2))
    dist = ndi.distance_transform_edt(cells)
    size = max(3, int(0.7 * rbc_diameter))
    peaks = (dist == ndi.maximum_filter(dist, size=size)) & (dist > 0.2 * rbc_diameter)
    markers, _ = ndi.label(peaks)
    regions = watershed(-dist, markers, mask=cells)
    disc = np.pi * (rbc_diameter / 2) ** 2
    for k, sl in enumerate(ndi.find_objects(regions), start=1):
        if sl is None:
            continue
        area = float((regions[sl] == k).sum())
        if not 0.25 * disc <= area <= 2.0 * disc:
            continue
        score = float(np.clip(1 - abs(np.log(area / disc)), 0, 1))
        rows.append(("RBC", sl[1].start, sl[0].start, sl[1].stop, sl[0].stop, score))
    return pd.DataFrame(rows, columns=["class", *BOX_COLUMNS, "score"])
