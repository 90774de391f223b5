"""napari widgets as plain functions (npe2 ``autogenerate``), also callable on numpy arrays.

Annotations such as ``napari.types.ImageData`` stay strings (postponed
evaluation; napari is imported only for type checkers), which magicgui
resolves when napari builds the widget, so importing this module imports
neither napari nor Qt; each function imports the capability
(and so torch) only when it runs.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import napari


class SegmentMethod(str, Enum):
    """Nucleus segmentation method: the shipped model or the classical baseline."""

    model = "model"
    classical = "classical"


class DeconvolutionMethod(str, Enum):
    """Deconvolution method of :func:`cytolens.restore.deconvolve`."""

    wiener_butterworth = "wiener-butterworth"
    richardson_lucy = "richardson-lucy"


def rate_focus_widget(
    image: napari.types.ImageData,
    patch_size: int = 84,
) -> napari.types.LayerDataTuple:
    """Rate the focus of a 2-D image: a Shapes layer of patches coloured by defocus level.

    Parameters
    ----------
    image : array_like
        2-D grey image.
    patch_size : int
        Patch side in pixels (the shipped model was trained on 84).

    Returns
    -------
    (data, kwargs, "shapes")
        One rectangle per patch (corners in ``(y, x)``), edge colour as in
        :func:`cytolens.focus.overlay_rgb` (green level 0, in focus, through
        yellow to red; opacity from the certainty); ``properties`` ``level``, ``certainty`` and
        ``is_blank`` per patch; the verdict in the layer name and, with the
        in-focus probability and mean level, in ``metadata``.

    Examples
    --------
    >>> from cytolens import data
    >>> shapes, kwargs, kind = rate_focus_widget(data.nuclei().data)
    >>> kind, shapes.shape, kwargs["name"]
    ('shapes', (48, 4, 2), 'focus: in focus')
    """
    from cytolens.focus import rate_focus
    from cytolens.focus.overlay import level_rgba

    result = rate_focus(image, patch_size=patch_size)
    table, ps = result.patches, result.patch_size
    y0 = table["y0"].to_numpy(np.float64)
    x0 = table["x0"].to_numpy(np.float64)
    corners = np.array([[0, 0], [0, ps], [ps, ps], [ps, 0]], np.float64)
    rectangles = np.stack([y0, x0], axis=1)[:, None, :] + corners[None]
    n_levels = len(result.probabilities)
    kwargs = {
        "name": f"focus: {result.verdict}",
        "shape_type": "rectangle",
        "edge_color": level_rgba(table["level"], n_levels, table["certainty"]),
        "face_color": "transparent",
        "edge_width": max(1.0, ps / 40),
        "properties": {
            "level": table["level"].to_numpy(),
            "certainty": table["certainty"].to_numpy(),
            "is_blank": table["is_blank"].to_numpy(),
        },
        "metadata": {
            "verdict": result.verdict,
            "p_in_focus": result.p_in_focus,
            "mean_level": result.mean_level,
            "blank_fraction": result.blank_fraction,
            "model": result.model,
        },
    }
    return rectangles, kwargs, "shapes"


def segment_nuclei_widget(
    image: napari.types.ImageData,
    method: SegmentMethod = SegmentMethod.model,
    diameter: float = 0.0,
) -> napari.types.LabelsData:
    """Segment nuclei in a 2-D image: a label image (0 = background).

    Parameters
    ----------
    image : array_like
        2-D image.
    method : {"model", "classical"}
        :func:`cytolens.segment.nuclei` or :func:`cytolens.segment.nuclei_classical`.
    diameter : float
        Typical nucleus diameter in pixels; 0 estimates it.

    Returns
    -------
    numpy.ndarray of uint32

    Examples
    --------
    >>> from cytolens import data
    >>> labels = segment_nuclei_widget(data.nuclei().data, method="classical")
    >>> labels.shape, bool(labels.max() > 0)
    ((520, 696), True)
    """
    from cytolens import segment

    method = SegmentMethod(method)
    fn = segment.nuclei if method is SegmentMethod.model else segment.nuclei_classical
    return fn(image, diameter=diameter or None)


def deconvolve_widget(
    image: napari.types.ImageData,
    psf: napari.types.ImageData,
    iterations: int = 2,
    method: DeconvolutionMethod = DeconvolutionMethod.wiener_butterworth,
) -> napari.types.LayerDataTuple:
    """Deconvolve a 2-D or 3-D image with a PSF layer: a new Image layer.

    Parameters
    ----------
    image : array_like
        ``YX`` or ``ZYX`` image.
    psf : array_like
        PSF with the same number of dimensions (e.g. a bead image).
    iterations : int
        Iterations (1-3 suffice for Wiener-Butterworth, tens for Richardson-Lucy).
    method : {"wiener-butterworth", "richardson-lucy"}
        See :func:`cytolens.restore.deconvolve`.

    Returns
    -------
    (data, kwargs, "image")

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[-4:5, -4:5]
    >>> psf = np.exp(-(yy**2 + xx**2) / 4.0).astype(np.float32)
    >>> out, kwargs, kind = deconvolve_widget(np.ones((32, 32), np.float32), psf)
    >>> kind, out.shape, kwargs["name"]
    ('image', (32, 32), 'deconvolved (wiener-butterworth, 2 it.)')
    """
    from cytolens.restore import deconvolve

    method = DeconvolutionMethod(method)
    out = deconvolve(image, psf, method=method.value, iterations=int(iterations))
    name = f"deconvolved ({method.value}, {int(iterations)} it.)"
    return out, {"name": name}, "image"


def track_widget(
    movie: napari.types.ImageData,
    segmenter: SegmentMethod = SegmentMethod.classical,
) -> list[napari.types.LayerDataTuple]:
    """Segment and track the nuclei of a ``TYX`` movie: a Tracks and a Labels layer.

    Parameters
    ----------
    movie : array_like
        Raw movie, time first (``TYX`` or ``TZYX``).
    segmenter : {"classical", "model"}
        Per-frame segmentation: the threshold baseline (default; tracks the
        Cell Tracking Challenge movies best) or :func:`cytolens.segment.nuclei`.

    Returns
    -------
    list of layer-data tuples
        ``(tracks, kwargs, "tracks")`` with rows ``track_id, t, (z,) y, x`` and
        a ``graph`` of divisions / closed gaps (child -> [parent]), and
        ``(labels, kwargs, "labels")`` with each object carrying its track id.

    Examples
    --------
    >>> from cytolens import data
    >>> (tracks, kw, kind), (labels, _, _) = track_widget(data.tracking().data[:3])
    >>> kind, tracks.shape[1], labels.shape
    ('tracks', 4, (3, 320, 320))
    """
    from cytolens.track import track_movie

    segmenter = SegmentMethod(segmenter)
    result = track_movie(
        movie, segmenter="threshold" if segmenter is SegmentMethod.classical else "nuclei"
    )
    table = result.tracks
    columns = ["track_id", "t"] + [c for c in ("z", "y", "x") if c in table.columns]
    data = table[columns].to_numpy(np.float64)
    parents = table.groupby("track_id")["parent_track_id"].first()
    graph = {int(child): [int(parent)] for child, parent in parents.items() if parent > 0}
    tracks = (data, {"name": "tracks", "graph": graph, "tail_length": 5}, "tracks")
    labels = (result.labels, {"name": "tracked labels"}, "labels")
    return [tracks, labels]
