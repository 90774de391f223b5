"""Cells of an HPA image: nuclei (blue), cell bodies by a seeded watershed, masked cell crops.

The per-cell workflow follows the 2021 HPA single-cell challenge: segment
every cell, cut out its masked crop (pixels of other cells and background set
to zero) and classify the crop like a small image.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from cytolens.core.errors import InputError
from cytolens.core.tables import BOX_COLUMNS

__all__ = ["CROP_SIZE", "cell_crops", "cell_table", "iter_cell_crops", "segment_cells"]

logger = logging.getLogger(__name__)

#: Side (px, at the model's working scale) of the square canvas a cell crop is fitted into.
CROP_SIZE = 128
#: Nucleus methods of :func:`segment_cells`.
NUCLEUS_METHODS = ("classical", "model")


def as_cyx_float(image: Any, *, name: str = "image", normalization: Any = None) -> np.ndarray:
    """A ``(4, Y, X)`` float32 array in ``[0, 1]`` from an HPA image (dtype range scaled).

    uint8 is divided by 255, wider integers by their dtype maximum, floats
    are taken as already in ``[0, 1]`` (clipped). An :class:`~cytolens.core.image.Image`
    is reordered to ``CYX`` and its channels found by name when named as by
    :func:`cytolens.io.read_hpa`. A model's ``normalization``
    (:class:`~cytolens.models.schema.DtypeRangeNormalization`, from its card)
    replaces this default scaling.

    Examples
    --------
    >>> as_cyx_float(np.full((4, 2, 2), 255, np.uint8))[:, 0, 0].tolist()
    [1.0, 1.0, 1.0, 1.0]
    """
    from cytolens.core.image import Image
    from cytolens.io.hpa import HPA_CHANNELS

    if isinstance(image, Image):
        if sorted(image.axes) != sorted("CYX"):
            raise InputError(f"{name}: expected axes 'CYX' (4 HPA channels), got {image.axes!r}")
        image = image.transpose("CYX")
        names = image.channel_names
        data = np.asarray(image.data)
        if names is not None and set(HPA_CHANNELS.values()) <= set(names):
            data = data[[names.index(n) for n in HPA_CHANNELS.values()]]
    else:
        data = np.asarray(image)
    if data.ndim != 3 or data.shape[0] != 4:
        raise InputError(
            f"{name}: expected a (4, Y, X) array with channels red, green, blue, yellow "
            f"(axes 'CYX'), got shape {data.shape}"
        )
    if normalization is None:
        from cytolens.core.normalize import normalize_dtype_range

        return normalize_dtype_range(data, name=name)
    return np.asarray(normalization.apply(data, name=name), np.float32)


def segment_cells(
    image: Any,
    *,
    nucleus_method: str = "classical",
    nucleus_diameter: float | None = None,
    min_cell_area: int = 400,
) -> tuple[np.ndarray, np.ndarray]:
    """Nuclei and whole cells of an HPA image.

    Parameters
    ----------
    image : array_like or Image
        ``(4, Y, X)``, channels red (microtubules), green (protein), blue
        (nucleus), yellow (ER), as from :func:`cytolens.io.read_hpa`.
    nucleus_method : {"classical", "model"}
        :func:`cytolens.segment.nuclei_classical` (threshold + watershed,
        fast) or the learned :func:`cytolens.segment.nuclei` on the blue channel.
    nucleus_diameter : float, optional
        Typical nucleus diameter in px; estimated when omitted.
    min_cell_area : int
        Nuclei (and their cells) smaller than this many px are dropped.

    Returns
    -------
    nuclei, cells : numpy.ndarray of int32
        Label images ``(Y, X)``; cell ``k`` grows from nucleus ``k``.

    Notes
    -----
    Cell bodies: the microtubule and ER channels (plus half the nucleus) are
    smoothed, thresholded at half their Otsu level (cell edges are dim), and
    split by a watershed of the inverted cell signal seeded by the nuclei, so
    each foreground pixel joins the nucleus it is best connected to: the
    core of :func:`cytolens.segment.cells` (:func:`cytolens.segment.whole_cells.seeded_cells`),
    with the HPA channels scaled by their dtype range as the HPA model was
    trained.

    Examples
    --------
    >>> yy, xx = np.mgrid[:96, :160]
    >>> img = np.zeros((4, 96, 160), np.float32)
    >>> for cx in (40, 120):
    ...     img[2][(yy - 48) ** 2 + (xx - cx) ** 2 < 12**2] = 1
    ...     img[0][(yy - 48) ** 2 + (xx - cx) ** 2 < 30**2] = 0.5
    >>> nuc, cells = segment_cells(img, nucleus_diameter=24, min_cell_area=50)
    >>> int(nuc.max()), int(cells.max()), bool(cells[48, 70] == cells[48, 40])
    (2, 2, True)
    """
    from skimage.filters import gaussian

    from cytolens.segment.representation import drop_small_objects
    from cytolens.segment.whole_cells import seeded_cells

    if nucleus_method not in NUCLEUS_METHODS:
        raise InputError(f"nucleus_method must be one of {NUCLEUS_METHODS}, got {nucleus_method!r}")
    x = as_cyx_float(image)
    blue = x[2]
    if not np.ptp(blue) > 0:
        empty = np.zeros(blue.shape, np.int32)
        return empty, empty.copy()
    if nucleus_method == "model":
        from cytolens.segment import nuclei

        nuc = nuclei(blue, diameter=nucleus_diameter, device="cpu")
    else:
        from cytolens.segment import nuclei_classical

        nuc = nuclei_classical(blue, diameter=nucleus_diameter)
    nuc = drop_small_objects(nuc, min_cell_area, dtype=np.int32)
    ids = np.unique(nuc[nuc > 0])
    if not len(ids):
        return nuc, nuc.copy()
    cells = seeded_cells(gaussian(x[0] + x[3] + 0.5 * x[2], 2.0), nuc)
    logger.debug("segmented %d cells", len(ids))
    return nuc, cells


def cell_table(nuclei: np.ndarray, cells: np.ndarray) -> pd.DataFrame:
    """One row per cell: ``cell_id``, box ``xmin_px ... ymax_px`` (max exclusive), areas.

    Examples
    --------
    >>> cells = np.zeros((6, 8), np.int32)
    >>> cells[1:4, 2:7] = 1
    >>> cell_table(cells, cells)[["cell_id", *BOX_COLUMNS]].values.tolist()
    [[1, 2, 1, 7, 4]]
    """
    from scipy import ndimage as ndi

    n = int(cells.max())
    rows = []
    nuc_area = np.bincount(nuclei.ravel(), minlength=n + 1)
    cell_area = np.bincount(cells.ravel(), minlength=n + 1)
    edge = np.unique(np.concatenate([cells[0], cells[-1], cells[:, 0], cells[:, -1]]))
    border = np.zeros(n + 1, bool)
    border[edge] = True
    for k, sl in enumerate(ndi.find_objects(cells), start=1):
        if sl is None:
            continue
        ys, xs = sl
        rows.append(
            {
                "cell_id": k,
                "xmin_px": xs.start,
                "ymin_px": ys.start,
                "xmax_px": xs.stop,
                "ymax_px": ys.stop,
                "cell_area_px": int(cell_area[k]),
                "nucleus_area_px": int(nuc_area[k]),
                "touches_border": bool(border[k]),
            }
        )
    columns = ["cell_id", *BOX_COLUMNS, "cell_area_px", "nucleus_area_px", "touches_border"]
    return pd.DataFrame(rows, columns=columns)


def cell_crops(
    image: np.ndarray, cells: np.ndarray, *, scale: float = 0.5, size: int = CROP_SIZE
) -> tuple[np.ndarray, list[int]]:
    """Masked crops of every cell, zoomed by ``scale`` and centred on a ``size`` x ``size`` canvas.

    Parameters
    ----------
    image : numpy.ndarray
        ``(C, Y, X)`` float32 (e.g. from :func:`as_cyx_float`).
    cells : numpy.ndarray
        Label image ``(Y, X)``.
    scale : float
        Zoom to the model's working scale (0.5: 512 px images seen at 256 px).
        Cells larger than the canvas at that scale are shrunk further to fit.
    size : int
        Canvas side.

    Returns
    -------
    crops : numpy.ndarray
        ``(n_cells, C, size, size)`` float32, zero outside the cell.
    ids : list of int
        The cell label of each crop.

    See Also
    --------
    iter_cell_crops : the same crops in batches, for images with many cells.

    Examples
    --------
    >>> cells = np.zeros((40, 40), np.int32)
    >>> cells[5:15, 5:25] = 3
    >>> crops, ids = cell_crops(np.ones((4, 40, 40), np.float32), cells, size=32)
    >>> crops.shape, ids, float(crops[0, 0].sum())
    ((1, 4, 32, 32), [3], 50.0)
    """
    batches = list(iter_cell_crops(image, cells, scale=scale, size=size))
    if not batches:
        return np.zeros((0, image.shape[0], size, size), np.float32), []
    return np.concatenate([b[0] for b in batches]), [k for b in batches for k in b[1]]


def iter_cell_crops(
    image: np.ndarray,
    cells: np.ndarray,
    *,
    scale: float = 0.5,
    size: int = CROP_SIZE,
    batch_size: int = 64,
) -> Iterator[tuple[np.ndarray, list[int]]]:
    """Masked cell crops (as :func:`cell_crops`) in batches of at most ``batch_size`` cells.

    Memory stays at one batch of crops (``batch_size * C * size**2`` floats)
    however many cells the image holds.

    Examples
    --------
    >>> cells = np.zeros((40, 40), np.int32)
    >>> cells[5:15, 5:15], cells[20:30, 20:30], cells[30:40, 0:10] = 1, 2, 3
    >>> [ids for _, ids in iter_cell_crops(np.ones((4, 40, 40)), cells, size=16, batch_size=2)]
    [[1, 2], [3]]
    """
    from scipy import ndimage as ndi
    from skimage.transform import resize

    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    out, ids = [], []
    for k, sl in enumerate(ndi.find_objects(cells), start=1):
        if sl is None:
            continue
        crop = image[(slice(None), *sl)] * (cells[sl] == k)
        h, w = crop.shape[1:]
        z = min(scale, size / max(h, w))
        nh, nw = max(1, round(h * z)), max(1, round(w * z))
        if (nh, nw) != (h, w):
            crop = resize(crop, (crop.shape[0], nh, nw), order=1, anti_aliasing=z < 1)
        canvas = np.zeros((image.shape[0], size, size), np.float32)
        y0, x0 = (size - nh) // 2, (size - nw) // 2
        canvas[:, y0 : y0 + nh, x0 : x0 + nw] = crop
        out.append(canvas)
        ids.append(k)
        if len(out) == batch_size:
            yield np.stack(out), ids
            out, ids = [], []
    if out:
        yield np.stack(out), ids
