"""The napari widgets built through npe2/magicgui and run in a headless napari (Qt)."""

from __future__ import annotations

import importlib
import time

import numpy as np
import pytest

napari = pytest.importorskip("napari", reason="napari is not installed (pip install -e '.[dev]')")
try:
    from qtpy import QtCore  # noqa: F401
except Exception as exc:  # no Qt binding, or Qt libraries missing on this machine
    pytest.skip(f"Qt cannot load: {exc}", allow_module_level=True)
pytest.importorskip("pytestqt", reason="pytest-qt is not installed")

import npe2  # noqa: E402

from cytolens import data  # noqa: E402
from cytolens.napari import MANIFEST  # noqa: E402
from cytolens.napari import _sample_data as samples  # noqa: E402
from cytolens.napari._widgets import SPECS, physical_sizes  # noqa: E402

from .conftest import has_canvas  # noqa: E402

WIDGETS = npe2.PluginManifest.from_file(MANIFEST).contributions.widgets
COMMANDS = {c.id: c for c in npe2.PluginManifest.from_file(MANIFEST).contributions.commands}


def _factory(command_id: str):
    module, attr = COMMANDS[command_id].python_name.split(":")
    return getattr(importlib.import_module(module), attr)


def _add(viewer, layer_data):
    added = []
    for data_, kwargs, kind in layer_data:
        out = getattr(viewer, f"add_{kind}")(data_, **kwargs)
        added += out if isinstance(out, list) else [out]
    return added


def _run(qtbot, widget, timeout=120_000):
    """Click Run, wait for the worker to finish; return the layers it added."""
    before = set(map(id, widget.viewer.layers))
    worker = widget.run()
    if worker is not None:
        qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)
    return [layer for layer in widget.viewer.layers if id(layer) not in before]


def test_every_manifest_widget_is_a_spec() -> None:
    keys = {w.command.removeprefix("cytolens.") for w in WIDGETS}
    assert keys == set(SPECS)
    assert not any(w.autogenerate for w in WIDGETS)


@pytest.mark.parametrize("contribution", WIDGETS, ids=lambda w: w.command)
def test_every_widget_builds(contribution, viewer) -> None:
    """Fails if any widget of the manifest cannot be built (the ForwardRef failure of issue 23)."""
    from magicgui.widgets import Container

    _add(viewer, samples.nuclei_sample())
    viewer.add_labels(np.zeros((8, 8), np.uint8), name="some labels")
    widget = _factory(contribution.command)(napari_viewer=viewer)
    assert isinstance(widget, Container)
    assert widget.native is not None  # the Qt widget exists
    for combo in widget.inputs.values():
        names = [c.name for c in combo.choices if c is not None]
        assert names == ["nuclei"]  # Image layers only, never the Labels layer
    assert widget.run_button.enabled and not widget.cancel_button.enabled


@pytest.mark.skipif(not has_canvas(), reason="needs napari's canvas (a display or Xvfb)")
def test_dock_widgets_open_through_napari(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    for contribution in WIDGETS:
        dock, widget = viewer.window.add_plugin_dock_widget("cytolens", contribution.display_name)
        assert widget is not None and dock is not None


def _check_geometry(layer, source, ndim):
    np.testing.assert_allclose(layer.scale, source.scale[-ndim:])
    np.testing.assert_allclose(layer.translate, source.translate[-ndim:])
    assert tuple(map(str, layer.units)) == tuple(map(str, source.units[-ndim:]))


def test_segment_nuclei_widget_runs(qtbot, viewer) -> None:
    (source,) = _add(viewer, samples.nuclei_sample())
    source.scale, source.translate, source.units = (0.5, 0.5), (10.0, -4.0), ("um", "um")
    widget = _factory("cytolens.segment_nuclei")(napari_viewer=viewer)
    widget.option_widgets["method"].value = "classical"
    (labels,) = _run(qtbot, widget)
    assert isinstance(labels, napari.layers.Labels) and labels.name.startswith("nuclei (classical")
    assert labels.data.shape == (520, 696) and labels.data.max() > 0
    _check_geometry(labels, source, 2)


def test_denoise_widget_runs_and_names_its_applicability(qtbot, viewer) -> None:
    (source,) = _add(viewer, samples.nuclei_sample())
    source.scale, source.units = (0.5, 0.5), ("um", "um")
    widget = _factory("cytolens.denoise")(napari_viewer=viewer)
    (out,) = _run(qtbot, widget)
    assert isinstance(out, napari.layers.Image) and out.name.startswith("denoised (denoise-w2s-v1")
    assert out.data.shape == source.data.shape and out.data.dtype == np.float32
    assert "ood" in out.name and "ood_score" in out.metadata
    _check_geometry(out, source, 2)


def test_rate_focus_widget_runs(qtbot, viewer) -> None:
    (source,) = _add(viewer, samples.nuclei_sample())
    widget = _factory("cytolens.rate_focus")(napari_viewer=viewer)
    (shapes,) = _run(qtbot, widget)
    assert isinstance(shapes, napari.layers.Shapes) and shapes.name == "focus: in focus"
    assert len(shapes.data) == (520 // 84) * (696 // 84)
    assert set(shapes.features.columns) == {"level", "certainty", "is_blank"}
    _check_geometry(shapes, source, 2)


def test_track_widget_results_in_physical_units(qtbot, viewer) -> None:
    ((movie, kwargs, kind),) = samples.tracking_sample()
    (source,) = _add(viewer, [(movie[:4], kwargs, kind)])
    assert physical_sizes(source) == (pytest.approx(0.125), None)
    widget = _factory("cytolens.track")(napari_viewer=viewer)
    tracks, labels = _run(qtbot, widget)
    assert isinstance(tracks, napari.layers.Tracks) and isinstance(labels, napari.layers.Labels)
    np.testing.assert_allclose(tracks.scale, (1.0, 0.125, 0.125))  # shows in um, not pixels
    _check_geometry(labels, source, 3)
    assert "speed_um_per_frame" in tracks.features.columns
    # the world extent of the tracks lies inside the movie's (320 px * 0.125 um = 40 um)
    world = tracks.data[:, 2:] * 0.125
    assert world.max() <= 40.0 and world.max() > 20.0


def test_deconvolve_widget_picks_the_psf_and_runs(qtbot, viewer) -> None:
    bead, psf = _add(viewer, samples.bead_sample())
    widget = _factory("cytolens.deconvolve")(napari_viewer=viewer)
    assert widget.inputs["image"].value is bead and widget.inputs["psf"].value is psf
    widget.option_widgets["iterations"].value = 1
    (out,) = _run(qtbot, widget)
    assert out.data.shape == (64, 64, 64) and out.name.startswith("deconvolved")
    _check_geometry(out, bead, 3)


def test_detect_widget_runs_on_rgb(qtbot, viewer) -> None:
    _add(viewer, samples.blood_sample())
    widget = _factory("cytolens.detect")(napari_viewer=viewer)
    (boxes,) = _run(qtbot, widget)
    assert isinstance(boxes, napari.layers.Shapes) and len(boxes.data) > 5
    assert set(boxes.features["class"]) <= {"RBC", "WBC", "Platelets"}


def test_hpa_widget_runs(qtbot, viewer) -> None:
    _add(viewer, samples.hpa_sample())  # four layers, one per channel
    widget = _factory("cytolens.hpa_cells")(napari_viewer=viewer)
    chosen = [widget.inputs[k].value.name for k in ("microtubules", "protein", "nucleus", "er")]
    assert chosen == ["microtubules", "protein", "nucleus", "ER"]
    cells, _nuclei = _run(qtbot, widget)
    assert isinstance(cells, napari.layers.Labels) and cells.data.max() > 0
    assert {"nucleolar", "confidence"} <= set(cells.features.columns)


def test_best_plane_widget_runs(qtbot, viewer) -> None:
    from scipy import ndimage

    sharp = data.nuclei().data[:200, :200].astype(np.float32)
    stack = np.stack([ndimage.gaussian_filter(sharp, s) for s in (4, 0.1, 4)])
    source = viewer.add_image(stack, name="stack", scale=(2.0, 0.3, 0.3))
    widget = _factory("cytolens.best_plane")(napari_viewer=viewer)
    widget.option_widgets["method"].value = "brenner_gradient"
    (plane,) = _run(qtbot, widget)
    assert plane.name == "best plane (z=1)"
    np.testing.assert_allclose(plane.scale, (0.3, 0.3))
    assert source.ndim == 3


@pytest.mark.parametrize(
    ("key", "setup", "expected"),
    [
        ("segment_nuclei", "none", "needs image layer as 'image'; no layer is selected"),
        ("segment_nuclei", "3d", "needs a 2-D image (YX); got 3 dimensions"),
        ("track", "2d", "needs a movie with time first (TYX or TZYX); got 2 dimensions"),
        ("deconvolve", "psf2d", "needs a 3-D PSF like the image"),
    ],
)
def test_bad_input_is_a_notification(qtbot, viewer, monkeypatch, key, setup, expected) -> None:
    from napari.utils import notifications

    shown = []
    for level in ("warning", "error", "info"):
        monkeypatch.setattr(
            notifications, f"show_{level}", lambda m, lv=level: shown.append((lv, m))
        )
    if setup == "3d":
        viewer.add_image(np.zeros((3, 32, 32), np.float32), name="stack")
    elif setup == "2d":
        viewer.add_image(np.zeros((32, 32), np.float32), name="plane")
    elif setup == "psf2d":
        viewer.add_image(np.ones((8, 32, 32), np.float32), name="image")
        viewer.add_image(np.ones((9, 9), np.float32), name="psf")
    widget = _factory(f"cytolens.{key}")(napari_viewer=viewer)
    added = _run(qtbot, widget)
    assert added == []
    assert len(shown) == 1 and shown[0][0] == "warning"
    assert expected in shown[0][1] and widget.status.value == shown[0][1]
    assert widget.run_button.enabled  # ready for another try


def test_cancel_stops_a_long_job(qtbot, viewer, monkeypatch) -> None:
    from napari.utils import notifications

    shown = []
    monkeypatch.setattr(notifications, "show_info", shown.append)
    _add(viewer, samples.bead_sample())
    widget = _factory("cytolens.deconvolve")(napari_viewer=viewer)
    widget.option_widgets["method"].value = "richardson-lucy"
    widget.option_widgets["iterations"].value = 500
    n_layers = len(viewer.layers)
    widget.run()
    qtbot.waitUntil(lambda: widget.progress.value >= 1, timeout=60_000)
    assert widget.cancel_button.enabled
    widget.cancel()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert widget.progress.value < 500  # stopped early
    assert len(viewer.layers) == n_layers and shown == ["Deconvolve: cancelled"]


def test_ui_stays_responsive_during_a_long_job(qtbot, viewer) -> None:
    """A Qt timer keeps ticking (no pause > 0.2 s) while a multi-second deconvolution runs."""
    from qtpy.QtCore import QTimer

    yy, xx = np.mgrid[-8:9, -8:9]
    viewer.add_image(np.exp(-(yy**2 + xx**2) / 8.0).astype(np.float32), name="psf")
    image = np.random.default_rng(0).random((2048, 2048), np.float32) + 1
    viewer.add_image(image, name="image")
    widget = _factory("cytolens.deconvolve")(napari_viewer=viewer)
    widget.inputs["image"].value = viewer.layers["image"]
    widget.option_widgets["method"].value = "richardson-lucy"
    widget.option_widgets["iterations"].value = 25
    ticks: list[float] = []
    done: list[float] = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the job's FFTs leave a core to the event loop (CI runs 2 workers)
    start = time.perf_counter()
    worker = widget.run()
    worker.returned.connect(lambda _: done.append(time.perf_counter()))
    try:
        qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    finally:
        torch.set_num_threads(threads)
    timer.stop()
    duration = done[0] - start
    assert duration > 1.0, "the job must last long enough to test responsiveness"
    # while the job ran (adding its result layer afterwards is main-thread work by design)
    running = np.array([t for t in ticks if t <= done[0]])
    gaps = np.diff(np.r_[start, running])
    assert len(running) > duration / 0.2 and gaps.max() < 0.2, (duration, gaps.max())
