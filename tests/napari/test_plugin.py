"""The optional napari plugin: manifest, reader, sample data, widgets; no napari/Qt needed."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

npe2 = pytest.importorskip("npe2")

from cytolens import data  # noqa: E402
from cytolens.io import imwrite  # noqa: E402
from cytolens.napari import MANIFEST  # noqa: E402
from cytolens.napari._reader import get_reader  # noqa: E402
from cytolens.napari._sample_data import bead_sample, nuclei_sample, tracking_sample  # noqa: E402
from cytolens.napari._widgets import (  # noqa: E402
    deconvolve_widget,
    rate_focus_widget,
    segment_nuclei_widget,
    track_widget,
)

HPA_ID = "000a9596-bbc4-11e8-b2bc-ac1f6b6435d0"


def _resolve(python_name: str):
    module, attr = python_name.split(":")
    return getattr(importlib.import_module(module), attr)


def test_manifest_validates_and_commands_resolve() -> None:
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    assert manifest.name == "cytolens"
    assert manifest.display_name == "cytolens"
    commands = manifest.contributions.commands
    assert len(commands) == 8
    for command in commands:
        assert callable(_resolve(command.python_name)), command.python_name
    ids = {c.id for c in commands}
    contrib = manifest.contributions
    referenced = [r.command for r in contrib.readers]
    referenced += [s.command for s in contrib.sample_data] + [w.command for w in contrib.widgets]
    assert set(referenced) <= ids
    assert {w.command for w in contrib.widgets} == {
        "cytolens.rate_focus",
        "cytolens.segment_nuclei",
        "cytolens.deconvolve",
        "cytolens.track",
    }
    assert all(w.autogenerate for w in contrib.widgets)
    manifest.validate_imports()


def test_manifest_loads_through_the_entry_point() -> None:
    """The entry point proposed for pyproject finds the manifest, named as the distribution."""
    from importlib import metadata

    try:
        dist = metadata.distribution("cytolens")
    except metadata.PackageNotFoundError:
        pytest.skip("cytolens is not installed (pip install -e .)")
    ep = metadata.EntryPoint(
        name="cytolens", value="cytolens.napari:napari.yaml", group="napari.manifest"
    )
    manifest = npe2.PluginManifest._from_entrypoint(ep, dist)
    assert manifest.name == "cytolens"


def test_import_is_light() -> None:
    code = (
        "import sys, cytolens.napari, cytolens.napari._reader, cytolens.napari._widgets, "
        "cytolens.napari._sample_data\n"
        "heavy = [m for m in ('torch', 'qtpy', 'PyQt5', 'PySide2', 'napari', 'magicgui') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize(
    "path", ["notes.txt", "missing.tif", ["a.tif", "b.tif"], "", "folder_without_suffix"]
)
def test_reader_returns_none_for_unsupported(path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an image")
    if isinstance(path, str) and path:
        path = str(tmp_path / path)
    assert get_reader(path) is None


def test_reader_tiff_with_pixel_sizes(tmp_path: Path) -> None:
    arr = np.arange(3 * 2 * 8 * 8, dtype=np.uint16).reshape(3, 2, 8, 8)
    path = imwrite(
        tmp_path / "stack.ome.tif",
        arr,
        axes="ZCYX",
        pixel_size_um={"Z": 2.0, "Y": 0.25, "X": 0.25},
        channel_names=("dapi", "gfp"),
    )
    reader = get_reader(str(path))
    assert reader is not None
    ((data_, kwargs, kind),) = reader(str(path))
    assert kind == "image"
    axes = kwargs["metadata"]["axes"]  # OME-TIFF stores channels first: CZYX
    assert sorted(axes) == sorted("ZCYX")
    c = kwargs["channel_axis"]
    assert axes[c] == "C"
    order = [axes.index(ax) for ax in "ZCYX"]
    np.testing.assert_array_equal(np.transpose(np.asarray(data_), order), arr)
    assert kwargs["name"] == ["dapi", "gfp"]
    assert kwargs["scale"] == (2.0, 0.25, 0.25)


def test_reader_png(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).integers(0, 255, (12, 10), dtype=np.uint8)
    path = imwrite(tmp_path / "plane.png", arr)
    ((data_, kwargs, kind),) = get_reader(str(path))(str(path))
    np.testing.assert_array_equal(data_, arr)
    assert kind == "image" and kwargs["name"] == "plane.png"
    assert kwargs["scale"] == (1.0, 1.0) and "channel_axis" not in kwargs


def test_reader_rgb_jpeg_is_colour() -> None:
    path = data.sample_path("blood_smear.jpg")
    ((data_, kwargs, _),) = get_reader(str(path))(str(path))
    assert data_.shape == (480, 640, 3) and kwargs["rgb"] is True
    assert "channel_axis" not in kwargs


def test_reader_hpa_set(shared_data: Path) -> None:
    green = shared_data / "classification/hpa/images" / f"{HPA_ID}_green.png"
    if not green.exists():
        pytest.skip(f"{green} is absent")
    ((data_, kwargs, kind),) = get_reader(str(green))(str(green))
    assert kind == "image" and data_.shape == (4, 512, 512)
    assert kwargs["channel_axis"] == 0
    assert kwargs["name"] == ["microtubules", "protein", "nucleus", "ER"]
    assert kwargs["colormap"] == ["red", "green", "blue", "yellow"]
    assert kwargs["scale"] == (1.0, 1.0)
    # A lone HPA channel file that is not green is read as a plain PNG.
    blue = green.with_name(f"{HPA_ID}_blue.png")
    ((plane, kw, _),) = get_reader(str(blue))(str(blue))
    assert plane.shape == (512, 512) and "channel_axis" not in kw


def test_sample_data_shapes() -> None:
    ((nuc, nkw, nkind),) = nuclei_sample()
    assert nuc.shape == (520, 696) and nkind == "image" and nkw["name"] == "nuclei"
    (bead, _, _), (psf, pkw, _) = bead_sample()
    assert bead.shape == psf.shape == (64, 64, 64) and pkw["name"] == "bead_psf"
    ((movie, tkw, _),) = tracking_sample()
    assert movie.shape == (20, 320, 320) and tkw["scale"] == (1.0, 0.125, 0.125)


def test_rate_focus_widget_on_nuclei() -> None:
    image = data.nuclei().data
    rects, kwargs, kind = rate_focus_widget(image, patch_size=84)
    n_patches = (520 // 84) * (696 // 84)
    assert kind == "shapes" and rects.shape == (n_patches, 4, 2)
    assert kwargs["shape_type"] == "rectangle"
    assert len(kwargs["edge_color"]) == n_patches
    assert len(kwargs["properties"]["level"]) == n_patches
    cert = kwargs["properties"]["certainty"]
    assert np.all((cert >= 0) & (cert <= 1))
    # the same colours as the PNG overlay: level hue, certainty as opacity
    from cytolens.focus.overlay import level_rgba

    expected = level_rgba(kwargs["properties"]["level"], 11, cert)
    np.testing.assert_allclose(kwargs["edge_color"], expected)
    assert kwargs["metadata"]["verdict"] == "in focus" and kwargs["name"] == "focus: in focus"
    # Rectangles tile the image from the top-left corner.
    assert rects[:, :, 0].min() == 0 and rects[:, :, 1].max() == (696 // 84) * 84


def test_rate_focus_widget_sees_blur() -> None:
    from scipy import ndimage

    image = data.nuclei().data.astype(np.float32)
    sharp = rate_focus_widget(image)[1]["properties"]["level"].mean()
    blurred = rate_focus_widget(ndimage.gaussian_filter(image, 6))[1]["properties"]["level"]
    assert blurred.mean() > sharp


@pytest.mark.parametrize("method", ["classical", "model"])
def test_segment_nuclei_widget(method: str) -> None:
    labels = segment_nuclei_widget(data.nuclei().data, method=method)
    assert labels.shape == (520, 696)
    assert len(np.unique(labels)) - 1 > 0


def test_segment_nuclei_widget_rejects_unknown_method() -> None:
    with pytest.raises(ValueError, match="nope"):
        segment_nuclei_widget(np.zeros((64, 64)), method="nope")


def test_deconvolve_widget_sharpens_a_blurred_point() -> None:
    from scipy import ndimage

    yy, xx = np.mgrid[-6:7, -6:7]
    psf = np.exp(-(yy**2 + xx**2) / (2 * 1.5**2)).astype(np.float32)
    truth = np.zeros((48, 48), np.float32)
    truth[24, 24] = 1000.0
    blurred = ndimage.convolve(truth, psf / psf.sum(), mode="constant") + 1.0
    out, kwargs, kind = deconvolve_widget(blurred, psf, iterations=3)
    assert kind == "image" and out.shape == blurred.shape
    assert out[24, 24] > 1.5 * blurred[24, 24]
    assert "3 it." in kwargs["name"]


def test_track_widget_on_moving_square() -> None:
    movie = np.zeros((4, 40, 40), np.uint16)
    for t in range(4):
        movie[t, 10:18, 4 + 3 * t : 12 + 3 * t] = 1000
    (tracks, tkw, tkind), (labels, _, lkind) = track_widget(movie)
    assert tkind == "tracks" and lkind == "labels"
    assert tracks.shape == (4, 4)  # track_id, t, y, x
    assert len(np.unique(tracks[:, 0])) == 1
    np.testing.assert_array_equal(tracks[:, 1], np.arange(4))
    np.testing.assert_allclose(np.diff(tracks[:, 3]), 3.0)
    assert labels.shape == movie.shape and tkw["graph"] == {}


def test_track_widget_on_sample_movie() -> None:
    (tracks, _, _), (labels, _, _) = track_widget(data.tracking().data[:5])
    assert tracks.shape[1] == 4 and len(np.unique(tracks[:, 0])) > 1
    assert set(np.unique(tracks[:, 1])) == set(range(5))
    ids = set(np.unique(labels)) - {0}
    assert ids == set(np.unique(tracks[:, 0]).astype(int))
