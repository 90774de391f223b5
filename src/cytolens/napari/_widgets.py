"""napari dock widgets: one per capability, each running its job in a worker thread.

Every widget is a magicgui :class:`~magicgui.widgets.Container` built by
:func:`make_widget` from a :class:`WidgetSpec`: layer pickers (only layers of
the right type), the options, a Run and a Cancel button, a progress bar and a
status line. "Run" checks the selection on the main thread, then calls the
job of :mod:`cytolens.napari._jobs` in napari's ``thread_worker`` so the
window stays responsive; progress reported by the API moves the bar, and
"Cancel" stops the job at its next progress report (jobs whose API reports
no progress are discarded when they end). Output layers get the scale,
translate, units and axis labels of the input layer; jobs that run pipeline
steps get the input layer's pixel sizes (:func:`layer_pixel_sizes`) for the
item's image. Bad input and failures become one line in napari's
notification area and in the status line, never a traceback dialog.

This module deliberately has no ``from __future__ import annotations``:
magicgui resolves annotations at run time, and the widgets are built from
explicit magicgui widgets rather than from annotations, so no postponed
annotation can fail to resolve (the ``ForwardRef('SegmentMethod')`` failure).
napari, magicgui and Qt are imported only when a widget is built.
"""

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from cytolens.core.errors import CytolensError
from cytolens.napari import _jobs

logger = logging.getLogger(__name__)

__all__ = ["SPECS", "Input", "Option", "WidgetSpec", "layer_pixel_sizes", "make_widget"]


@dataclass(frozen=True)
class Input:
    """A layer the job reads: its parameter name, layer type and a name hint for the default."""

    name: str
    kind: str = "image"
    label: str = ""
    prefer: str = ""


@dataclass(frozen=True)
class Option:
    """An option of the job: parameter name, default, and choices or limits.

    ``choices`` is a tuple, or a function returning them, called when the
    widget is built (e.g. the shipped models, listed without importing them
    with this module).
    """

    name: str
    default: Any
    label: str = ""
    choices: tuple[Any, ...] | Callable[[], Any] = ()
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class WidgetSpec:
    """What a widget shows and which job of :mod:`cytolens.napari._jobs` it runs.

    ``physical_units``: the job gets ``pixel_size_um`` (a number) and
    ``frame_interval_s`` of the input layer (:func:`physical_sizes`);
    ``pixel_sizes``: the job gets ``pixel_size_um`` per axis
    (:func:`layer_pixel_sizes`), for the image of the pipeline item it runs on.
    """

    title: str
    job: Callable[..., list]
    inputs: tuple[Input, ...]
    options: tuple[Option, ...] = ()
    physical_units: bool = False
    pixel_sizes: bool = False
    help: str = field(default="")


SPECS: dict[str, WidgetSpec] = {
    "rate_focus": WidgetSpec(
        "Rate focus",
        _jobs.rate_focus_layers,
        (Input("image"),),
        (Option("patch_size", 84, "patch size (px)", minimum=16, maximum=1024),),
        pixel_sizes=True,
        help="Defocus level of every patch of a 2-D image (green: in focus, red: blurred).",
    ),
    "best_plane": WidgetSpec(
        "Best plane",
        _jobs.best_plane_layers,
        (Input("stack"),),
        (
            Option(
                "method", "model", choices=("model", "brenner_gradient", "variance_of_laplacian")
            ),
        ),
        pixel_sizes=True,
        help="The sharpest plane of a Z stack.",
    ),
    "deconvolve": WidgetSpec(
        "Deconvolve",
        _jobs.deconvolve_layers,
        (Input("image"), Input("psf", prefer="psf")),
        (
            Option(
                "method", "wiener-butterworth", choices=("wiener-butterworth", "richardson-lucy")
            ),
            Option("iterations", 2, minimum=1, maximum=500),
        ),
        help="Richardson-Lucy deconvolution with a measured or theoretical PSF layer.",
    ),
    "denoise": WidgetSpec(
        "Denoise",
        _jobs.denoise_layers,
        (Input("image"),),
        (Option("model", "denoise-w2s-v1", choices=("denoise-w2s-v1",)),),
        pixel_sizes=True,
        help="A learned denoiser; the layer name says how far the image is from its training data.",
    ),
    "segment_nuclei": WidgetSpec(
        "Segment nuclei",
        _jobs.segment_nuclei_layers,
        (Input("image"),),
        (
            Option("method", "model", choices=("model", "classical")),
            Option("diameter", 0.0, "diameter (px, 0 = auto)", minimum=0, maximum=1000),
        ),
        pixel_sizes=True,
        help="Nuclei of a 2-D image as a Labels layer.",
    ),
    "segment_cells": WidgetSpec(
        "Segment cells",
        _jobs.segment_cells_layers,
        (Input("image", label="cell stain"), Input("nuclei", label="nuclear stain", prefer="nuc")),
        (Option("nucleus_method", "classical", choices=("classical", "model")),),
        pixel_sizes=True,
        help="Whole cells of a cytoplasm/membrane stain, grown from the nuclei of a nuclear stain.",
    ),
    "track": WidgetSpec(
        "Track nuclei",
        _jobs.track_layers,
        (Input("movie"),),
        (Option("segmenter", "threshold", choices=("threshold", "nuclei")),),
        physical_units=True,
        help="Segment and link the nuclei of a TYX movie; speeds in the layer's units.",
    ),
    "detect": WidgetSpec(
        "Detect cells",
        _jobs.detect_layers,
        (Input("image"),),
        (Option("min_score", 0.0, "min score (0 = model's)", minimum=0.0, maximum=1.0),),
        help="Boxes with a class and a score (shipped model: blood cells).",
    ),
    "hpa_cells": WidgetSpec(
        "Classify HPA cells",
        _jobs.hpa_cells_layers,
        tuple(
            Input(name.lower(), prefer=hint)
            for name, hint in zip(
                _jobs.HPA_INPUTS, ("microtub", "protein", "nucle", "er"), strict=True
            )
        ),
        help="Cells of a Human Protein Atlas field, each with its nucleolar call.",
    ),
    "label_free": WidgetSpec(
        "Predict fluorescence",
        _jobs.label_free_layers,
        (Input("stack"),),
        (Option("model", "isl-v1", choices=("isl-v1",)),),
        pixel_sizes=True,
        help="Fluorescence channels from a transmitted-light z-stack (isl-v1: 13 planes).",
    ),
    "phenotype": WidgetSpec(
        "Classify phenotypes",
        _jobs.phenotype_layers,
        (Input("image"), Input("labels", kind="labels")),
        (Option("model", "mitocheck-v1", choices=("mitocheck-v1",)),),
        pixel_sizes=True,
        help="The phenotype of every cell of a Labels layer, as points at the centroids.",
    ),
    "trust": WidgetSpec(
        "Check model",
        _jobs.trust_layers,
        (Input("image"),),
        (Option("model", "nuclei-v1", choices=_jobs.shipped_models),),
        help="How far the image lies from a model's training data (ood_score > 1: outside).",
    ),
    "register": WidgetSpec(
        "Register",
        _jobs.register_layers,
        (Input("fixed", prefer="fixed"), Input("moving", prefer="moving")),
        (Option("transform", "rigid", choices=("translation", "rigid", "affine")),),
        help="Align the moving image onto the fixed one; the result is in the fixed grid.",
    ),
}


class _Cancelled(Exception):
    """Raised in the worker by the progress callback after "Cancel"."""


def _run_job(spec: WidgetSpec, kwargs: dict[str, Any], progress: Callable) -> tuple[str, Any]:
    """Call the job in the worker thread; return ``(status, result or message)``, never raise."""
    try:
        return "ok", spec.job(**kwargs, progress=progress)
    except _Cancelled:
        return "cancelled", f"{spec.title}: cancelled"
    except (CytolensError, ValueError) as exc:
        return "invalid", str(exc)
    except Exception as exc:  # a widget must not end in a traceback dialog
        logger.exception("%s failed", spec.title)
        return "error", f"{spec.title} failed: {type(exc).__name__}: {exc}"


def _output_ndim(data: Any, kind: str, source: Any) -> int:
    if kind == "tracks":
        return int(np.shape(data)[1]) - 1
    if kind in ("shapes", "points"):
        return int(np.shape(data)[-1]) if len(data) else int(source.ndim)
    return int(np.ndim(data))


def inherit_geometry(kwargs: dict, data: Any, kind: str, source: Any) -> dict:
    """``kwargs`` with the source layer's scale, translate, units and axis labels.

    The last ``n`` axes of the source are used for an ``n``-D output (a
    best plane of a ``ZYX`` stack gets the ``YX`` scale).
    """
    ndim = _output_ndim(data, kind, source)
    out = dict(kwargs)
    if ndim > source.ndim:
        return out
    out.setdefault("scale", tuple(source.scale[-ndim:]))
    out.setdefault("translate", tuple(source.translate[-ndim:]))
    for attr in ("units", "axis_labels"):
        value = getattr(source, attr, None)
        if value is not None:
            out.setdefault(attr, tuple(str(v) for v in value[-ndim:]))
    return out


def physical_sizes(layer: Any) -> tuple[float | None, float | None]:
    """Pixel size in um (last axis) and frame interval in s (first axis) from the layer's units.

    ``None`` where the unit is not a length (a time), e.g. napari's default ``pixel``.
    """
    units = getattr(layer, "units", None)
    if not units:
        return None, None
    return _convert(units[-1], layer.scale[-1], "um"), _convert(units[0], layer.scale[0], "s")


def layer_pixel_sizes(layer: Any) -> dict[str, float]:
    """Pixel sizes in um of the layer's last (up to three) axes, as ``{"Z", "Y", "X"}`` keys.

    Only axes whose unit is a length count (napari's default ``pixel`` gives none).
    """
    units = getattr(layer, "units", None) or ()
    sizes = {}
    for axis, unit, scale in zip("XYZ", reversed(units), reversed(layer.scale), strict=False):
        size = _convert(unit, scale, "um")
        if size is not None and size > 0:
            sizes[axis] = size
    return sizes


def _convert(unit: Any, scale: float, target: str) -> float | None:
    """``scale`` in ``unit`` converted to ``target``; None when the unit is not of that kind."""
    try:
        return float((scale * unit).to(target).magnitude)
    except Exception:  # pint: dimensionality error, 'pixel' and other non-physical units
        return None


def _layer_data(layer: Any) -> Any:
    """The full-resolution data of a layer (level 0 of a pyramid)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


@cache
def _widget_class() -> type:
    from magicgui.widgets import ComboBox, Container, Label, ProgressBar, PushButton, create_widget
    from qtpy.QtCore import QTimer

    from napari import layers

    layer_types = {"image": layers.Image, "labels": layers.Labels}

    class CytolensWidget(Container):
        """A cytolens job as a napari dock widget (see the module docstring)."""

        def __init__(self, spec: WidgetSpec, viewer: Any) -> None:
            self.spec, self.viewer, self.worker = spec, viewer, None
            self._cancel = threading.Event()
            # the worker only stores its progress; a main-thread timer shows it (no Qt call
            # ever leaves the worker thread: PySide6 crashed on such calls)
            self._latest: tuple[int, int] | None = None
            self._poll = QTimer()
            self._poll.setInterval(100)
            self._poll.timeout.connect(self._show_progress)
            self.inputs = {}
            for inp in spec.inputs:
                kind = layer_types[inp.kind]
                self.inputs[inp.name] = ComboBox(
                    name=inp.name,
                    label=inp.label or inp.name,
                    nullable=True,
                    choices=lambda _w, kind=kind: [
                        (layer.name, layer) for layer in viewer.layers if isinstance(layer, kind)
                    ],
                )
            self.option_widgets = {}
            for opt in spec.options:
                label = opt.label or opt.name.replace("_", " ")
                if opt.choices:
                    choices = opt.choices
                    if callable(choices):
                        choices = lambda _w, f=opt.choices: tuple(f())  # noqa: E731
                    w = ComboBox(name=opt.name, label=label, choices=choices, value=opt.default)
                else:
                    limits = {
                        k: v
                        for k, v in (("min", opt.minimum), ("max", opt.maximum))
                        if v is not None
                    }
                    w = create_widget(value=opt.default, name=opt.name, label=label, options=limits)
                self.option_widgets[opt.name] = w
            self.run_button = PushButton(name="run", text=f"Run {spec.title.lower()}")
            self.cancel_button = PushButton(name="cancel", text="Cancel", enabled=False)
            self.progress = ProgressBar(name="progress", value=0, min=0, max=1, visible=False)
            self.status = Label(name="status", value=spec.help)
            super().__init__(
                widgets=[
                    *self.inputs.values(),
                    *self.option_widgets.values(),
                    self.run_button,
                    self.cancel_button,
                    self.progress,
                    self.status,
                ],
                labels=True,
            )
            self.run_button.changed.connect(self.run)
            self.cancel_button.changed.connect(self.cancel)
            for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
                event.connect(self._refresh_inputs)
            self._refresh_inputs()

        def _refresh_inputs(self, *_: Any) -> None:
            self.reset_choices()
            for inp in self.spec.inputs:
                combo = self.inputs[inp.name]
                choices = [c for c in combo.choices if c is not None]
                if combo.value is None and choices:
                    preferred = [c for c in choices if inp.prefer and inp.prefer in c.name.lower()]
                    plain = [
                        c
                        for c in choices
                        if not any(
                            i.prefer and i.prefer in c.name.lower() for i in self.spec.inputs
                        )
                    ]
                    combo.value = (preferred or plain or choices)[-1]

        def notify(self, message: str, level: str = "warning") -> None:
            from napari.utils import notifications

            self.status.value = message
            getattr(notifications, f"show_{level}")(message)

        def run(self, *_: Any) -> Any:
            """Start the job in a worker thread; return the worker (``None`` on bad input)."""
            if self.worker is not None:
                return None
            selected = {name: combo.value for name, combo in self.inputs.items()}
            for inp in self.spec.inputs:
                layer = selected[inp.name]
                kind = layer_types[inp.kind]
                if layer is None or not isinstance(layer, kind):
                    got = "no layer is selected" if layer is None else f"got {layer!r}"
                    self.notify(f"{self.spec.title} needs {inp.kind} layer as '{inp.name}'; {got}")
                    return None
            kwargs = {name: _layer_data(layer) for name, layer in selected.items()}
            kwargs.update({name: w.value for name, w in self.option_widgets.items()})
            source = selected[self.spec.inputs[0].name]
            if self.spec.physical_units:
                kwargs["pixel_size_um"], kwargs["frame_interval_s"] = physical_sizes(source)
            if self.spec.pixel_sizes:
                kwargs["pixel_size_um"] = layer_pixel_sizes(source)
            self._cancel.clear()

            def progress(done: int, total: int) -> None:
                if self._cancel.is_set():
                    raise _Cancelled
                self._latest = (done, total)

            from napari.qt.threading import create_worker

            worker = create_worker(_run_job, self.spec, kwargs, progress)
            worker.returned.connect(lambda result: self._finish(result, source))
            worker.finished.connect(self._idle)
            self.worker = worker
            self.run_button.enabled = False
            self.cancel_button.enabled = True
            self.progress.max, self.progress.value, self.progress.visible = 0, 0, True
            self.status.value = f"{self.spec.title}: running..."
            self._latest = None
            self._poll.start()
            worker.start()
            return worker

        def _show_progress(self) -> None:
            latest = self._latest
            if latest is not None and latest[1] and latest[1] > 0:
                done, total = latest
                self.progress.max = int(total)
                self.progress.value = int(min(done, total))

        def cancel(self, *_: Any) -> None:
            """Ask the running job to stop at its next progress report."""
            if self.worker is not None:
                self._cancel.set()
                self.status.value = f"{self.spec.title}: cancelling..."

        def _finish(self, result: tuple[str, Any], source: Any) -> None:
            status, value = result
            if self._cancel.is_set() or status == "cancelled":
                self.notify(f"{self.spec.title}: cancelled", "info")
                return
            if status != "ok":
                self.notify(value, "warning" if status == "invalid" else "error")
                return
            names, findings = [], []
            for item in value:
                if isinstance(item, _jobs.Finding):
                    source.metadata = {
                        **source.metadata,
                        item.key: {**source.metadata.get(item.key, {}), **item.values},
                    }
                    findings.append(item.text)
                    continue
                data, kwargs, kind = item
                full = inherit_geometry(kwargs, data, kind, source)
                getattr(self.viewer, f"add_{kind}")(data, **full)
                names.append(full.get("name", kind))
            lines = [f"{self.spec.title}: {text}" for text in findings]
            for line in lines:  # a finding is the result: it goes to the notification area too
                self.notify(line, "info")
            if names:
                lines.append(f"{self.spec.title}: added {', '.join(map(str, names))}")
            self.status.value = "\n".join(lines)

        def _idle(self) -> None:
            self._poll.stop()
            self._show_progress()
            self.worker = None
            self.run_button.enabled = True
            self.cancel_button.enabled = False
            self.progress.visible = False

    return CytolensWidget


def class_name(key: str) -> str:
    """The dock widget class name of ``SPECS[key]``: ``"rate_focus"`` -> ``"RateFocusWidget"``.

    Examples
    --------
    >>> class_name("hpa_cells")
    'HpaCellsWidget'
    """
    return "".join(part.title() for part in key.split("_")) + "Widget"


@cache
def widget_classes() -> dict[str, type]:
    """One dock widget class per spec, as napari instantiates them: ``Class(napari_viewer)``."""
    base = _widget_class()
    classes = {}
    for key, spec in SPECS.items():

        def __init__(self: Any, napari_viewer: Any, _spec: WidgetSpec = spec) -> None:
            base.__init__(self, _spec, napari_viewer)

        name = class_name(key)
        doc = f"Dock widget: {spec.title.lower()} (:func:`cytolens.napari._jobs`)."
        classes[name] = type(name, (base,), {"__init__": __init__, "__doc__": doc})
    return classes


def make_widget(key: str, napari_viewer: Any) -> Any:
    """Build the dock widget of ``SPECS[key]`` for ``napari_viewer`` (a Viewer or ViewerModel)."""
    return widget_classes()[class_name(key)](napari_viewer)


def __getattr__(name: str) -> Any:
    """The dock widget classes the manifest names, created on first access (imports magicgui)."""
    if name.endswith("Widget") and name in {class_name(key) for key in SPECS}:
        return widget_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
