"""What each napari widget computes, as plain functions on arrays (no napari, no Qt).

Each function takes the data of the selected layers and the widget's options,
checks them (an :class:`~cytolens.core.errors.InputError` naming what is
expected, which the widget shows as a notification), calls the cytolens API
and returns napari layer-data tuples ``(data, kwargs, layer_type)`` in the
pixel grid of the input. Where a pipeline step exists (``focus.rate``,
``focus.best_plane``, ``segment.nuclei`` + ``segment.measure``,
``segment.cells``, ``restore.denoise``, ``track``, ``detect.boxes``,
``label_free.predict``, ``phenotype.classify``), the job
builds that step from the widget's values (validated as a pipeline YAML's
parameters) and runs it with :func:`run_steps` on an
:class:`~cytolens.pipeline.Item` made from the layer's data, its axes and the
pixel sizes of the layer's scale, then turns what the step left on the item
into layers. Deconvolution, registration and the HPA cells call the API:
their steps take the PSF / the fixed image as a file, and
``classify.localization`` keeps no label images. The widgets (:mod:`cytolens.napari._widgets`) run
these in a worker thread and give every output the input layer's ``scale``,
``translate`` and ``units``.

``progress`` is ``None`` or a callable ``progress(done, total)``; it may raise
to cancel (the widgets raise on "Cancel").

A job whose result is no layer (the applicability check) returns a
:class:`Finding` among its items: a line the widget shows in its status line
and the notification area, and values it stores in the input layer's
``metadata``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cytolens.core.errors import InputError

LayerData = tuple[Any, dict, str]
Progress = Callable[[int, int], Any] | None


@dataclass(frozen=True)
class Finding:
    """A result that is no layer: ``text`` to show, ``values`` for the input's ``metadata[key]``."""

    text: str
    key: str
    values: dict = field(default_factory=dict)


#: The Human Protein Atlas channels in the order :func:`cytolens.classify.classify_cells` wants.
HPA_INPUTS = ("microtubules", "protein", "nucleus", "ER")


def shipped_models() -> list[str]:
    """Names of the shipped models (the choices of the applicability check)."""
    from cytolens.models import list_models

    return list_models()


def require_ndim(data: Any, ndims: tuple[int, ...], what: str, expected: str) -> None:
    """Raise :class:`InputError` unless ``data`` has one of ``ndims`` dimensions.

    Examples
    --------
    >>> require_ndim(np.zeros((4, 4, 4)), (2,), "Segment nuclei", "a 2-D image (YX)")
    Traceback (most recent call last):
    ...
    cytolens.core.errors.InputError: Segment nuclei needs a 2-D image (YX); got 3 dimensions ...
    """
    if data is None:
        raise InputError(f"{what} needs {expected}; no layer is selected")
    ndim = np.ndim(data)
    if ndim not in ndims:
        raise InputError(
            f"{what} needs {expected}; got {ndim} dimensions (shape {tuple(np.shape(data))})"
        )


def run_steps(
    specs: list[tuple[str, dict[str, Any]]],
    image: Any,
    axes: str,
    *,
    what: str,
    pixel_size_um: dict[str, float] | None = None,
    labels: Any = None,
    progress: Progress = None,
) -> Any:
    """Run pipeline steps on a layer's data; return the :class:`~cytolens.pipeline.Item` filled.

    Parameters
    ----------
    specs : list of (str, dict)
        Step names and parameters, e.g. ``[("segment.nuclei", {"method": "classical"})]``;
        bad parameters raise :class:`InputError` naming ``what``.
    image : array_like
        The layer's data, with ``axes``.
    axes : str
        Its axes, e.g. ``"YX"``, ``"ZYX"``, ``"CYX"``.
    what : str
        The widget's title, for error messages.
    pixel_size_um : dict, optional
        Pixel sizes of the layer's scale (:func:`cytolens.napari._widgets.layer_pixel_sizes`);
        those of ``axes`` go into the item's image.
    labels : array_like, optional
        A labels layer's data: the item's labels (uint32), for steps that need them.
    progress : callable, optional
        Given to a step whose ``run`` reports progress (``focus.rate``); the
        others are followed by one ``progress(1, 1)`` (the cancel check).

    Examples
    --------
    >>> from cytolens import data
    >>> item = run_steps([("segment.nuclei", {"method": "classical"}), ("segment.measure", {})],
    ...                  data.nuclei().data, "YX", what="Segment nuclei", pixel_size_um={"X": 0.5})
    >>> item.row["nuclei"] == len(item.tables["nuclei"]), "area_um2" in item.tables["nuclei"]
    (True, False)
    """
    import inspect
    import warnings
    from pathlib import Path

    from cytolens.core.image import Image
    from cytolens.core.validate import is_dask
    from cytolens.models.applicability import OutOfDomainWarning
    from cytolens.pipeline import Item, make_step

    steps = [make_step(name, params, where=what) for name, params in specs]
    sizes = {a: float(v) for a, v in (pixel_size_um or {}).items() if a in axes and v > 0}
    data = image if is_dask(image) else np.asarray(image)  # a Dask layer stays lazy
    item = Item(Path("layer"), "layer", Image(data, axes, sizes))
    if labels is not None:
        item.labels = np.asarray(labels).astype(np.uint32, copy=False)
    for step in steps:
        reports = "progress" in inspect.signature(step.run).parameters
        with warnings.catch_warnings():  # applicability goes into layer names and metadata
            warnings.simplefilter("ignore", OutOfDomainWarning)
            step.run(item, **({"progress": progress} if reports else {}))
        if progress is not None and not reports:
            progress(1, 1)
    return item


def ood_suffix(score: float | None) -> str:
    """The applicability part of an output layer's name: ``", ood 0.42"``, "OUT OF DOMAIN" above 1.

    Examples
    --------
    >>> ood_suffix(0.42), ood_suffix(1.5), ood_suffix(None)
    (', ood 0.42', ', ood 1.50 OUT OF DOMAIN', '')
    """
    if score is None:
        return ""
    return f", ood {score:.2f}" + (" OUT OF DOMAIN" if score > 1 else "")


def rate_focus_layers(
    image: Any,
    *,
    patch_size: int = 84,
    pixel_size_um: dict[str, float] | None = None,
    progress: Progress = None,
) -> list[LayerData]:
    """Rate the focus of a 2-D image: a Shapes layer of patches coloured by defocus level.

    Returns
    -------
    list with one ``(rectangles, kwargs, "shapes")``
        One rectangle per patch (corners ``(y, x)``), edge colour as in
        :func:`cytolens.focus.overlay_rgb` (green = level 0, in focus, to red;
        opacity from the certainty); ``features`` ``level``, ``certainty``,
        ``is_blank``; the verdict in the name and, with the in-focus
        probability and mean level, in ``metadata``.

    Examples
    --------
    >>> from cytolens import data
    >>> ((shapes, kwargs, kind),) = rate_focus_layers(data.nuclei().data)
    >>> kind, shapes.shape, kwargs["name"]
    ('shapes', (48, 4, 2), 'focus: in focus')
    """
    from cytolens.focus.model import DEFAULT_MODEL
    from cytolens.focus.overlay import level_rgba
    from cytolens.focus.steps import PATCH_TABLE

    require_ndim(image, (2,), "Rate focus", "a 2-D grey image (YX)")
    params = {"model": DEFAULT_MODEL, "patch_size": int(patch_size)}
    item = run_steps(
        [("focus.rate", params)],
        image,
        "YX",
        what="Rate focus",
        pixel_size_um=pixel_size_um,
        progress=progress,
    )
    table, row = item.tables[PATCH_TABLE], item.row
    h, w = table["height_px"].to_numpy(np.float64), table["width_px"].to_numpy(np.float64)
    y0, x0 = table["y0_px"].to_numpy(np.float64), table["x0_px"].to_numpy(np.float64)
    rectangles = np.stack(
        [np.stack(c, axis=1) for c in ((y0, x0), (y0, x0 + w), (y0 + h, x0 + w), (y0 + h, x0))],
        axis=1,
    )
    n_levels = sum(1 for c in table.columns if c[0] == "p" and c[1:].isdigit())
    kwargs = {
        "name": f"focus: {row['focus_verdict']}",
        "shape_type": "rectangle",
        "edge_color": level_rgba(table["level"], n_levels, table["certainty"]),
        "face_color": "transparent",
        "edge_width": max(1.0, float(h.max(initial=0)) / 40),
        "features": {
            "level": table["level"].to_numpy(),
            "certainty": table["certainty"].to_numpy(),
            "is_blank": table["is_blank"].to_numpy(),
        },
        "metadata": {
            **{key: row[f"focus_{key}"] for key in ("verdict", "p_in_focus", "mean_level")},
            "blank_fraction": row["focus_blank_fraction"],
            "model": params["model"],
            **{k: v for k, v in row.items() if not k.startswith("focus_")},  # applicability
        },
    }
    return [(rectangles, kwargs, "shapes")]


def best_plane_layers(
    stack: Any,
    *,
    method: str = "model",
    pixel_size_um: dict[str, float] | None = None,
    progress: Progress = None,
) -> list[LayerData]:
    """The sharpest plane of a ``ZYX`` stack, as a 2-D Image layer (the ``focus.best_plane`` step).

    ``metadata`` holds the plane index ``z`` (and ``z_um`` when the layer's
    Z scale is a length) and the per-plane ``scores`` (the step's
    ``focus_planes`` table: ``z_px``, the score, ``has_content``).

    Examples
    --------
    >>> stack = np.zeros((3, 96, 96), np.float32)
    >>> stack[1, ::8, ::8] = 1.0
    >>> ((plane, kwargs, kind),) = best_plane_layers(stack, method="brenner_gradient")
    >>> kind, plane.shape, kwargs["name"]
    ('image', (96, 96), 'best plane (z=1)')
    """
    from cytolens.focus.steps import PLANE_TABLE

    require_ndim(stack, (3,), "Best plane", "a 3-D stack (ZYX)")
    item = run_steps(
        [("focus.best_plane", {"method": method, "device": "cpu"})],
        stack,
        "ZYX",
        what="Best plane",
        pixel_size_um=pixel_size_um,
        progress=progress,
    )
    index = int(item.row["best_z_px"])
    scores = item.tables[PLANE_TABLE].drop(columns="image")
    plane = np.asarray(item.image.data)
    meta = {"z": index, "scores": scores}
    if "best_z_um" in item.row:  # the layer's Z scale is a length
        meta["z_um"] = item.row["best_z_um"]
    return [(plane, {"name": f"best plane (z={index})", "metadata": meta}, "image")]


def deconvolve_layers(
    image: Any,
    psf: Any,
    *,
    method: str = "wiener-butterworth",
    iterations: int = 2,
    progress: Progress = None,
) -> list[LayerData]:
    """Deconvolve a 2-D or 3-D image with a PSF layer of the same dimensionality.

    Examples
    --------
    >>> yy, xx = np.mgrid[-4:5, -4:5]
    >>> psf = np.exp(-(yy**2 + xx**2) / 4.0).astype(np.float32)
    >>> ((out, kwargs, kind),) = deconvolve_layers(np.ones((32, 32), np.float32), psf)
    >>> kind, out.shape, kwargs["name"]
    ('image', (32, 32), 'deconvolved (wiener-butterworth, 2 it.)')
    """
    from cytolens.restore import deconvolve

    require_ndim(image, (2, 3), "Deconvolve", "a 2-D or 3-D image (YX or ZYX)")
    require_ndim(psf, (np.ndim(image),), "Deconvolve", f"a {np.ndim(image)}-D PSF like the image")
    out = deconvolve(
        image, psf, method=method, iterations=int(iterations), device="cpu", progress=progress
    )
    name = f"deconvolved ({method}, {int(iterations)} it.)"
    return [(out, {"name": name}, "image")]


def denoise_layers(
    image: Any,
    *,
    model: str = "denoise-w2s-v1",
    pixel_size_um: dict[str, float] | None = None,
    progress: Progress = None,
) -> list[LayerData]:
    """Denoise a 2-D image (or a stack plane by plane) with a learned model.

    The layer's name carries the input's applicability (``ood_score``; "OUT OF
    DOMAIN" when above 1), and its ``metadata`` the full scores.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> ((out, kwargs, kind),) = denoise_layers(rng.poisson(20, (64, 64)).astype(np.float32))
    >>> kind, out.shape, kwargs["name"].startswith("denoised (denoise-w2s-v1")
    ('image', (64, 64), True)
    """
    require_ndim(image, (2, 3), "Denoise", "a 2-D image (YX) or a stack of planes (ZYX)")
    item = run_steps(
        [("restore.denoise", {"model": model, "device": "cpu"})],
        image,
        "YX" if np.ndim(image) == 2 else "ZYX",
        what="Denoise",
        pixel_size_um=pixel_size_um,
        progress=progress,
    )
    out = np.asarray(item.images["denoised"].data)
    verdict = ood_suffix(item.row.get("ood_score"))  # the row's verdict goes into the name
    return [(out, {"name": f"denoised ({model}{verdict})", "metadata": dict(item.row)}, "image")]


def segment_nuclei_layers(
    image: Any,
    *,
    method: str = "model",
    diameter: float = 0.0,
    pixel_size_um: dict[str, float] | None = None,
    progress: Progress = None,
) -> list[LayerData]:
    """Segment nuclei in a 2-D image: a Labels layer (0 = background) with their measurements.

    The ``segment.nuclei`` and ``segment.measure`` steps: the layer's
    ``features`` are the measurement table (``index`` = label; ``_um`` columns
    when the layer's scale is in a length unit), its ``metadata`` the step's
    summary row (count, median area, applicability for the model).

    Examples
    --------
    >>> from cytolens import data
    >>> ((labels, kwargs, kind),) = segment_nuclei_layers(data.nuclei().data, method="classical")
    >>> kind, labels.shape, kwargs["name"].startswith("nuclei (classical")
    ('labels', (520, 696), True)
    """
    require_ndim(image, (2,), "Segment nuclei", "a 2-D image (YX)")
    if method not in ("model", "classical"):
        raise InputError(f"Segment nuclei: unknown method {method!r}; use 'model' or 'classical'")
    params = {"method": method, "diameter": diameter or None, "device": "cpu"}
    item = run_steps(
        [("segment.nuclei", params), ("segment.measure", {})],
        image,
        "YX",
        what="Segment nuclei",
        pixel_size_um=pixel_size_um,
        progress=progress,
    )
    features = item.tables["nuclei"].drop(columns="image").rename(columns={"label": "index"})
    kwargs = {
        "name": f"nuclei ({method}, {item.row['nuclei']})",
        "features": features,
        "metadata": dict(item.row),
    }
    return [(item.labels, kwargs, "labels")]


def segment_cells_layers(
    image: Any,
    nuclei: Any,
    *,
    nucleus_method: str = "classical",
    pixel_size_um: dict[str, float] | None = None,
    progress: Progress = None,
) -> list[LayerData]:
    """Whole cells of a cytoplasm or membrane stain, seeded by a nuclear stain: two Labels layers.

    The ``segment.cells`` step on the two layers stacked as channels (the
    cell stain, then the nuclear stain); the nuclei it found come back too.
    The cells' ``features`` are the step's ``cells`` table (``index`` = label).

    Examples
    --------
    >>> yy, xx = np.mgrid[:96, :160]
    >>> cell = sum(((yy - 48) ** 2 + (xx - cx) ** 2 < 30**2) for cx in (40, 120)) * 1.0
    >>> nuc = sum(((yy - 48) ** 2 + (xx - cx) ** 2 < 10**2) for cx in (40, 120)) * 1.0
    >>> (cells, kw, kind), (nuclei, _, _) = segment_cells_layers(cell, nuc)
    >>> kind, int(cells.max()), kw["name"]
    ('labels', 2, 'cells (2)')
    """
    require_ndim(image, (2,), "Segment cells", "a 2-D cell-stain image (YX)")
    require_ndim(nuclei, (2,), "Segment cells", "a 2-D nuclear-stain image (YX)")
    if np.shape(image) != np.shape(nuclei):
        raise InputError(
            f"Segment cells: the cell stain {np.shape(image)} and the nuclear stain "
            f"{np.shape(nuclei)} must have the same shape"
        )
    stack = np.stack([np.asarray(image, np.float32), np.asarray(nuclei, np.float32)])
    params = {
        "channel": [0],
        "nuclear_channel": 1,
        "nucleus_method": nucleus_method,
        "device": "cpu",
    }
    item = run_steps(
        [("segment.cells", params)],
        stack,
        "CYX",
        what="Segment cells",
        pixel_size_um=pixel_size_um,
        progress=progress,
    )
    labels, found = item.images["cells"].data, item.images["nuclei"].data
    features = item.tables["cells"].drop(columns="image").rename(columns={"label": "index"})
    return [
        (labels, {"name": f"cells ({int(labels.max())})", "features": features}, "labels"),
        (found, {"name": f"nuclei ({nucleus_method}, {int(found.max())})"}, "labels"),
    ]


def track_layers(
    movie: Any,
    *,
    segmenter: str = "threshold",
    pixel_size_um: float | None = None,
    frame_interval_s: float | None = None,
    progress: Progress = None,
) -> list[LayerData]:
    """Segment and track the nuclei of a ``TYX`` movie (``track`` step): Tracks and Labels layers.

    Tracks rows are ``track_id, frame, (z,) y, x`` in pixels of the movie (the
    widget gives the layer the movie's scale, so they show in micrometres);
    ``graph`` holds divisions and closed gaps (child -> [parent]);
    ``features`` hold, per point, the step speed from
    :func:`cytolens.track.features.step_features` (um per time unit when
    ``pixel_size_um`` is given, else pixels per frame); ``metadata`` the
    step's summary row (for the nucleus model its applicability, also in the
    name: :func:`ood_suffix`).

    Examples
    --------
    >>> from cytolens import data
    >>> (tracks, kw, kind), (labels, _, _) = track_layers(data.tracking().data[:3])
    >>> kind, tracks.shape[1], labels.shape
    ('tracks', 4, (3, 320, 320))
    """
    from cytolens.core.tables import FRAME, position_columns
    from cytolens.track.features import step_features
    from cytolens.track.steps import TRACK_TABLE

    require_ndim(movie, (3, 4), "Track nuclei", "a movie with time first (TYX or TZYX)")

    def relay(stage: str, done: int, total: int) -> None:
        if progress is not None:
            # segmenting is most of the work: frames count once, linking once more
            progress(done if stage == "segmenting" else total, total + 1)

    params = {
        "segmenter": segmenter,
        "pixel_size_um": pixel_size_um,
        "frame_interval_s": frame_interval_s,
    }
    item = run_steps(
        [("track", params)],
        movie,
        "TYX" if np.ndim(movie) == 3 else "TZYX",
        what="Track nuclei",
        progress=relay,
    )
    table = item.tables[TRACK_TABLE]
    data = table[["track_id", FRAME, *position_columns(table)]].to_numpy(np.float64)
    parents = table.groupby("track_id")["parent_track_id"].first()
    graph = {int(child): [int(parent)] for child, parent in parents.items() if parent > 0}
    steps = step_features(table, pixel_size_um=pixel_size_um, frame_interval_s=frame_interval_s)
    speed = next(c for c in steps.columns if c.startswith("speed"))
    features = {speed: steps[speed].fillna(0.0).to_numpy()}
    tracks_kw = {
        "name": f"tracks ({item.row['tracks']}{ood_suffix(item.row.get('ood_score'))})",
        "graph": graph,
        "tail_length": 5,
        "features": features,
        "color_by": speed,
        "metadata": dict(item.row),
    }
    return [(data, tracks_kw, "tracks"), (item.labels, {"name": "tracked nuclei"}, "labels")]


def detect_layers(
    image: Any, *, min_score: float = 0.0, progress: Progress = None
) -> list[LayerData]:
    """Detect objects (blood cells with the shipped model) in a 2-D or RGB image: a Shapes layer.

    The ``detect.boxes`` step; ``metadata`` holds its summary row (counts
    per class, the model's applicability, also in the name: :func:`ood_suffix`).

    Examples
    --------
    >>> from cytolens import data
    >>> ((boxes, kwargs, kind),) = detect_layers(data.blood_smear().data)
    >>> kind, boxes.shape[1:], set(kwargs["features"]["class"]) <= {"RBC", "WBC", "Platelets"}
    ('shapes', (4, 2), True)
    """
    from cytolens.detect.steps import BOX_TABLE

    arr = np.asarray(image)
    rgb = arr.ndim == 3 and arr.shape[-1] in (3, 4)
    require_ndim(arr[..., 0] if rgb else arr, (2,), "Detect", "a 2-D grey or RGB image (YX[C])")
    item = run_steps(
        [("detect.boxes", {"min_score": min_score or None, "device": "cpu"})],
        arr,
        "YXC" if rgb else "YX",
        what="Detect",
        progress=progress,
    )
    table = item.tables[BOX_TABLE]
    y0, x0 = table["ymin_px"].to_numpy(float), table["xmin_px"].to_numpy(float)
    y1, x1 = table["ymax_px"].to_numpy(float), table["xmax_px"].to_numpy(float)
    boxes = np.stack([np.stack([y0, x0], 1), np.stack([y0, x1], 1), np.stack([y1, x1], 1)], 1)
    boxes = np.concatenate([boxes, np.stack([y1, x0], 1)[:, None]], 1).reshape(-1, 4, 2)
    kwargs = {
        "name": f"detections ({len(table)}{ood_suffix(item.row.get('ood_score'))})",
        "shape_type": "rectangle",
        "face_color": "transparent",
        "edge_color": "class",
        "edge_width": 2.0,
        "features": {"class": table["class"].to_numpy(), "score": table["score"].to_numpy()},
        "text": {"string": "{class} {score:.2f}", "size": 8, "color": "white"},
        "metadata": dict(item.row),
    }
    return [(boxes, kwargs, "shapes")]


def hpa_cells_layers(
    microtubules: Any,
    protein: Any,
    nucleus: Any,
    er: Any,
    *,
    progress: Progress = None,
) -> list[LayerData]:
    """Classify the protein localization of every cell of a Human Protein Atlas field.

    The four channels are 2-D layers of the same shape; the result is a
    Labels layer of cells whose ``features`` carry the per-cell call
    (``nucleolar``, ``confidence``, ``labels``), and the nuclei.

    Examples
    --------
    >>> yy, xx = np.mgrid[:128, :128]
    >>> disc = ((yy - 64) ** 2 + (xx - 64) ** 2 < 14**2).astype(np.float32)
    >>> (cells, kw, kind), _ = hpa_cells_layers(0.4 * disc, 0.6 * disc, 0.8 * disc, 0 * disc)
    >>> kind, cells.shape, list(kw["features"].columns)[:2]
    ('labels', (128, 128), ['index', 'nucleolar'])
    """
    from cytolens.classify import classify_cells

    channels = (microtubules, protein, nucleus, er)
    for name, channel in zip(HPA_INPUTS, channels, strict=True):
        require_ndim(channel, (2,), "Classify HPA cells", f"a 2-D {name} channel (YX)")
    shapes = {np.shape(c) for c in channels}
    if len(shapes) != 1:
        raise InputError(f"Classify HPA cells needs four channels of one shape; got {shapes}")
    image = np.stack([np.asarray(c, np.float32) for c in channels])
    table, nuclei, cells = classify_cells(image, device="cpu")
    if progress is not None:
        progress(1, 1)
    features = table[["cell_id", "nucleolar", "confidence"]].rename(columns={"cell_id": "index"})
    features["labels"] = table["labels"].map(
        lambda v: ", ".join(v) if not isinstance(v, str) else v
    )
    cells_kw = {"name": f"cells ({len(table)})", "features": features}
    return [(cells, cells_kw, "labels"), (nuclei, {"name": "nuclei", "visible": False}, "labels")]


def label_free_layers(
    stack: Any,
    *,
    model: str = "isl-v1",
    pixel_size_um: dict[str, float] | None = None,
    progress: Progress = None,
) -> list[LayerData]:
    """Predict fluorescence channels from a transmitted-light z-stack: one Image layer per target.

    Each layer is named after its target, the model and the input's
    applicability (:func:`ood_suffix`); ``metadata`` holds the model, the
    units (the card's normalized target units) and the applicability scores.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> stack = rng.integers(0, 60000, (13, 128, 128)).astype(np.uint16)
    >>> layers = label_free_layers(stack)
    >>> [(kw["name"].split(",")[0], out.shape, kind) for out, kw, kind in layers]
    [('dapi (isl-v1', (128, 128), 'image'), ('map2 (isl-v1', (128, 128), 'image'), \
('nfh (isl-v1', (128, 128), 'image')]
    """
    require_ndim(stack, (3,), "Predict fluorescence", "a transmitted-light z-stack (ZYX)")
    item = run_steps(
        [("label_free.predict", {"model": model, "device": "cpu", "replace_image": False})],
        stack,
        "ZYX",
        what="Predict fluorescence",
        pixel_size_um=pixel_size_um,
        progress=progress,
    )
    pred = item.images["predicted"]
    meta = dict(pred.metadata)
    verdict = ood_suffix(meta.get("applicability", {}).get("ood_score"))
    colormaps = ("blue", "green", "magenta", "red", "cyan", "yellow")
    return [
        (
            np.asarray(pred.data[i]),
            {
                "name": f"{target} ({model}{verdict})",
                "colormap": colormaps[i % len(colormaps)],
                "blending": "additive",
                "metadata": meta,
            },
            "image",
        )
        for i, target in enumerate(pred.channel_names)
    ]


def phenotype_layers(
    image: Any,
    labels: Any,
    *,
    model: str = "mitocheck-v1",
    pixel_size_um: dict[str, float] | None = None,
    progress: Progress = None,
) -> list[LayerData]:
    """Classify the phenotype of every object of a Labels layer: a Points layer at the centroids.

    ``features`` hold, per cell, ``label``, ``phenotype``, ``confidence`` and
    the applicability columns (``ood_score``, ``in_domain``); the points are
    coloured and labelled by phenotype.

    Examples
    --------
    >>> img = np.zeros((80, 80), np.uint8); lab = np.zeros((80, 80), np.int32)
    >>> img[20:34, 20:36] = 120; lab[20:34, 20:36] = 1
    >>> ((points, kwargs, kind),) = phenotype_layers(img, lab)
    >>> kind, points.tolist(), kwargs["features"]["label"].tolist()
    ('points', [[26.5, 27.5]], [1])
    """
    require_ndim(image, (2,), "Classify phenotypes", "a 2-D grey image (YX)")
    require_ndim(labels, (2,), "Classify phenotypes", "a 2-D labels layer of the cells (YX)")
    if np.shape(image) != np.shape(labels):
        raise InputError(
            f"Classify phenotypes needs labels of the image's shape {tuple(np.shape(image))}; "
            f"got {tuple(np.shape(labels))}"
        )
    labels = np.asarray(labels)
    if not labels.any():
        raise InputError("Classify phenotypes needs a labels layer with cells; it is empty")
    item = run_steps(  # out-of-domain cells are marked in the features
        [("phenotype.classify", {"model": model, "device": "cpu"})],
        image,
        "YX",
        what="Classify phenotypes",
        pixel_size_um=pixel_size_um,
        labels=labels,
        progress=progress,
    )
    table = item.tables["cells"]
    points = table[["centroid_y", "centroid_x"]].to_numpy(np.float64)
    keep = [c for c in ("label", "phenotype", "confidence", "ood_score", "in_domain") if c in table]
    kwargs = {
        "name": f"phenotypes ({model}, {len(table)} cells)",
        "features": table[keep].reset_index(drop=True),
        "face_color": "phenotype",
        "size": 6,
        "text": {"string": "{phenotype}", "size": 8, "color": "white", "anchor": "upper_left"},
    }
    return [(points, kwargs, "points")]


def trust_layers(
    image: Any, *, model: str = "nuclei-v1", progress: Progress = None
) -> list[LayerData | Finding]:
    """How far an image lies from a model's training data (``cytolens models check`` on a layer).

    Returns
    -------
    list with one :class:`Finding`
        Its text names the model, ``ood_score`` (> 1: out of domain), the
        domain percentile and the verdict; its values (``ood_score``,
        ``domain_percentile``, ``in_domain``) go to the layer's
        ``metadata["applicability"][model]``.

    Examples
    --------
    >>> from cytolens import data
    >>> (finding,) = trust_layers(data.nuclei().data, model="focus-miq-v1")
    >>> finding.text.split(":")[0], finding.key, finding.values["focus-miq-v1"]["in_domain"]
    ('focus-miq-v1', 'applicability', True)
    """
    from cytolens.models import load
    from cytolens.models.applicability import score_input

    require_ndim(image, (2, 3), "Check model", "a 2-D image (YX or RGB) or a stack (ZYX)")
    predictor = load(model, device="cpu")
    if not predictor.has_domain:
        raise InputError(f"Check model: {model!r} ships no applicability reference")
    axes = str(predictor.card.input_axes)
    if "Z" in axes and np.ndim(image) != len(axes):
        raise InputError(
            f"Check model: {model!r} takes {len(axes)}-D stacks ({axes}); got "
            f"{np.ndim(image)} dimensions (shape {tuple(np.shape(image))})"
        )
    if progress is not None:
        progress(0, 1)
    scores = score_input(predictor, np.asarray(image), "the layer", warn=False)
    if progress is not None:
        progress(1, 1)
    verdict = "in domain" if scores["in_domain"] else "OUT OF DOMAIN: do not trust its output"
    text = (
        f"{model}: ood_score {scores['ood_score']:.2f} (domain percentile "
        f"{scores['domain_percentile']:.0f}), {verdict}"
    )
    return [Finding(text, "applicability", {model: dict(scores)})]


def register_layers(
    fixed: Any, moving: Any, *, transform: str = "rigid", progress: Progress = None
) -> list[LayerData]:
    """Align ``moving`` onto ``fixed``: the moving image resampled in the fixed image's grid.

    The name carries the kind and the fit's NCC before and after ("not
    converged" when the fit did not converge); ``metadata["transform"]`` the
    transform (:meth:`cytolens.register.Transform.to_dict`, pixels of the
    fixed grid to pixels of the moving image).

    Examples
    --------
    >>> from scipy import ndimage as ndi
    >>> scene = ndi.gaussian_filter(np.random.default_rng(0).random((96, 96)), 2)
    >>> fixed, moving = scene[16:80, 16:80], ndi.shift(scene, (3.0, -2.5), order=1)[16:80, 16:80]
    >>> ((out, kw, kind),) = register_layers(fixed, moving, transform="translation")
    >>> matrix = np.array(kw["metadata"]["transform"]["matrix"])
    >>> kind, out.shape, np.round(matrix[:2, 2], 1).tolist()
    ('image', (64, 64), [3.0, -2.5])
    """
    import warnings

    from cytolens.register import register, transform_image

    require_ndim(fixed, (2, 3), "Register", "a 2-D or 3-D fixed image (YX or ZYX)")
    ndim = np.ndim(fixed)
    require_ndim(moving, (ndim,), "Register", f"a {ndim}-D moving image like the fixed one")
    if progress is not None:
        progress(0, 2)
    with warnings.catch_warnings():  # "not converged" goes into the name instead
        warnings.simplefilter("ignore")
        found = register(fixed, moving, transform=transform, device="cpu")
    if progress is not None:
        progress(1, 2)
    out = transform_image(moving, found, reference_shape=np.shape(fixed), device="cpu")
    if progress is not None:
        progress(2, 2)
    q = found.quality
    fit = f"ncc {q.get('ncc_before', np.nan):.2f} -> {q.get('ncc_after', np.nan):.2f}"
    if found.converged is False:
        fit += ", not converged"
    name = f"registered ({transform}, {fit})"
    return [(out, {"name": name, "metadata": {"transform": found.to_dict()}}, "image")]
