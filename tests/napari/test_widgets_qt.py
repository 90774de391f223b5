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

# PySide6 6.12 on Python 3.11 sometimes aborts the interpreter while the garbage collector
# frees Qt wrappers ("Fatal Python error: none_dealloc", a reference-count bug in the binding,
# seen once in a full parallel run); a test whose worker dies that way runs again
# (pytest-rerunfailures handles crashed xdist workers). A real failure fails every rerun.
pytestmark = pytest.mark.flaky(reruns=2)

import npe2  # noqa: E402
from tests.conftest import shared  # noqa: E402

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


def _bbbc006() -> np.ndarray:
    """A real in-focus BBBC006 field (520 x 696, uint16) from the shared data."""
    from cytolens.io import imread

    first = sorted(shared("focus/bbbc006_subset").glob("00_*_s1_*.tif"))[0]
    return np.asarray(imread(first).data)


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
    spec = SPECS[contribution.command.removeprefix("cytolens.")]
    for inp in spec.inputs:
        names = [c.name for c in widget.inputs[inp.name].choices if c is not None]
        # Image inputs list Image layers only, Labels inputs Labels layers only
        assert names == (["some labels"] if inp.kind == "labels" else ["nuclei"])
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
    # segment.measure on the layer's pixel size: 0.5 um per pixel
    np.testing.assert_allclose(labels.features["area_um2"], labels.features["area_px"] * 0.25)


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
        ("label_free", "2d", "needs a transmitted-light z-stack (ZYX); got 2 dimensions"),
        ("label_free", "3d", "stack has 3 planes along Z; model 'isl-v1' was trained on 13"),
        ("phenotype", "2d", "needs labels layer as 'labels'; no layer is selected"),
        ("phenotype", "empty labels", "needs a labels layer with cells; it is empty"),
        ("trust", "none", "needs image layer as 'image'; no layer is selected"),
        ("register", "2d+3d", "Register needs a 2-D moving image like the fixed one"),
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
    elif setup == "empty labels":
        viewer.add_image(np.zeros((32, 32), np.float32), name="plane")
        viewer.add_labels(np.zeros((32, 32), np.int32), name="labels")
    elif setup == "2d+3d":
        viewer.add_image(np.zeros((32, 32), np.float32), name="fixed")
        viewer.add_image(np.zeros((3, 32, 32), np.float32), name="moving")
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


# ------------------------------------------- widgets of label-free, phenotypes, trust, register
def test_label_free_widget_predicts_each_target(qtbot, viewer) -> None:
    from cytolens.label_free.insilico import HELDOUT_BLOCK, read_insilico_field

    stack, _, names = read_insilico_field(shared("label_free/insilico_sample"))
    y0, _, x0, _ = HELDOUT_BLOCK
    source = viewer.add_image(stack[:, y0 : y0 + 256, x0 : x0 + 256], name="phase z-stack")
    source.scale, source.translate, source.units = (2.0, 0.5, 0.5), (0, 3.0, 4.0), ("um",) * 3
    widget = _factory("cytolens.label_free")(napari_viewer=viewer)
    added = _run(qtbot, widget)
    assert [layer.name.split(" ")[0] for layer in added] == names == ["dapi", "map2", "nfh"]
    for layer in added:
        assert isinstance(layer, napari.layers.Image) and layer.data.shape == (256, 256)
        assert "isl-v1, ood" in layer.name and "OUT OF DOMAIN" not in layer.name
        assert layer.metadata["applicability"]["in_domain"] is True
        _check_geometry(layer, source, 2)
    # the held-out block: predicted DAPI follows the nuclei (bright where the stack says so)
    assert added[0].data.std() > 0.05


def _mitocheck_mosaic():
    """12 real MitoCheck crops (4 classes x 3) in a 4 x 3 grid, each cell labelled."""
    from skimage import filters, measure

    from cytolens.io import imread

    root = shared("classification/mitocheck/images")
    classes = ["Interphase", "Metaphase", "Apoptosis", "Prometaphase"]
    crops, truth = [], []
    for c in classes:
        for f in sorted((root / c).glob("*.png"))[:3]:
            crops.append(np.asarray(imread(f).data))
            truth.append(c)
    s = crops[0].shape[0]
    mosaic = np.zeros((len(classes) * s, 3 * s), crops[0].dtype)
    labels = np.zeros(mosaic.shape, np.int32)
    for k, crop in enumerate(crops):
        i, j = divmod(k, 3)
        window = (slice(i * s, (i + 1) * s), slice(j * s, (j + 1) * s))
        mosaic[window] = crop
        objects = measure.label(crop > filters.threshold_otsu(crop))
        centre = objects[s // 2, s // 2] or np.bincount(objects.ravel())[1:].argmax() + 1
        labels[window][objects == centre] = k + 1
    return mosaic, labels, truth


def test_phenotype_widget_classifies_real_cells(qtbot, viewer) -> None:
    from cytolens.phenotype import PhenotypeClassifier

    mosaic, labels, truth = _mitocheck_mosaic()
    source = viewer.add_image(mosaic, name="mitocheck cells", scale=(0.6, 0.6))
    viewer.add_labels(labels, name="cells", scale=(0.6, 0.6))
    widget = _factory("cytolens.phenotype")(napari_viewer=viewer)
    assert widget.inputs["labels"].value.name == "cells"
    (points,) = _run(qtbot, widget)
    assert isinstance(points, napari.layers.Points) and len(points.data) == 12
    assert points.name == "phenotypes (mitocheck-v1, 12 cells)"
    table = points.features
    assert table["label"].tolist() == list(range(1, 13))
    assert set(table["phenotype"]) <= set(PhenotypeClassifier.load(device="cpu").class_names)
    assert table["in_domain"].all()
    # the cells are real held-in-class crops: most calls match their folder (9 of 12 measured)
    assert (table["phenotype"] == truth).sum() >= 8
    # each point sits on its own cell, in the image's world coordinates
    _check_geometry(points, source, 2)
    ys, xs = np.round(points.data).astype(int).T
    assert (labels[ys, xs] == table["label"].to_numpy()).mean() > 0.8


def test_trust_widget_reports_applicability(qtbot, viewer, monkeypatch) -> None:
    from napari.utils import notifications

    shown = []
    monkeypatch.setattr(notifications, "show_info", shown.append)
    source = viewer.add_image(_bbbc006(), name="BBBC006")
    viewer.add_image(np.asarray(data.blood_smear().data[..., 0]), name="blood smear (red)")
    widget = _factory("cytolens.trust")(napari_viewer=viewer)
    models = list(widget.option_widgets["model"].choices)
    assert "nuclei-v1" in models and "isl-v1" in models
    widget.inputs["image"].value = source
    assert _run(qtbot, widget) == []  # a result, no layer
    scores = source.metadata["applicability"]["nuclei-v1"]
    assert scores["in_domain"] is True and 0 < scores["ood_score"] <= 1
    assert shown == [widget.status.value]
    assert widget.status.value.startswith("Check model: nuclei-v1: ood_score ")
    assert widget.status.value.endswith(", in domain")
    # a blood smear is no fluorescence nucleus image: outside nuclei-v1's domain
    blood = viewer.layers["blood smear (red)"]
    widget.inputs["image"].value = blood
    _run(qtbot, widget)
    assert blood.metadata["applicability"]["nuclei-v1"]["ood_score"] > 1
    assert "OUT OF DOMAIN" in widget.status.value


def test_segment_cells_widget_grows_cells_from_nuclei(qtbot, viewer) -> None:
    layers = {layer.name: layer for layer in _add(viewer, samples.hpa_sample())}
    tubulin, nucleus = layers["microtubules"], layers["nucleus"]
    for layer in (tubulin, nucleus):
        layer.scale, layer.translate, layer.units = (0.08, 0.08), (2.0, 3.0), ("um", "um")
    widget = _factory("cytolens.segment_cells")(napari_viewer=viewer)
    widget.inputs["image"].value, widget.inputs["nuclei"].value = tubulin, nucleus
    cells, nuclei = _run(qtbot, widget)
    assert isinstance(cells, napari.layers.Labels) and cells.name.startswith("cells (")
    assert isinstance(nuclei, napari.layers.Labels) and nuclei.name.startswith("nuclei (")
    _check_geometry(cells, tubulin, 2)
    n_cells, n_nuclei = int(cells.data.max()), int(nuclei.data.max())
    assert 5 <= n_cells <= n_nuclei  # every cell grows from a nucleus
    # cells are larger than their nuclei and hold them
    assert (cells.data > 0).sum() > 1.5 * (nuclei.data > 0).sum()
    inside = cells.data[nuclei.data > 0]
    assert (inside > 0).mean() > 0.95


def test_register_widget_aligns_a_moved_real_image(qtbot, viewer) -> None:
    from scipy import ndimage

    scene = _bbbc006().astype(np.float32)
    moved = ndimage.shift(ndimage.rotate(scene, 3.0, reshape=False, order=1), (6.0, -9.0), order=1)
    window = (slice(100, 420), slice(150, 550))
    fixed = viewer.add_image(scene[window], name="fixed", scale=(0.4, 0.4), translate=(5, 5))
    moving = viewer.add_image(moved[window], name="moving", scale=(0.4, 0.4), translate=(5, 5))
    widget = _factory("cytolens.register")(napari_viewer=viewer)
    assert widget.inputs["fixed"].value is fixed and widget.inputs["moving"].value is moving
    (out,) = _run(qtbot, widget)
    assert isinstance(out, napari.layers.Image) and out.name.startswith("registered (rigid, ncc")
    assert out.data.shape == fixed.data.shape
    _check_geometry(out, fixed, 2)
    matrix = np.array(out.metadata["transform"]["matrix"])
    angle = np.degrees(np.arctan2(matrix[0, 1], matrix[0, 0]))
    assert abs(abs(angle) - 3.0) < 0.3, angle
    inner = (slice(30, -30), slice(30, -30))
    before = np.corrcoef(fixed.data[inner].ravel(), moving.data[inner].ravel())[0, 1]
    after = np.corrcoef(fixed.data[inner].ravel(), out.data[inner].ravel())[0, 1]
    assert after > 0.99 and before < 0.9, (before, after)  # measured: 0.998 from 0.864
