"""The optional napari plugin without Qt: manifest, reader, writer, sample data, widget jobs."""

from __future__ import annotations

import functools
import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

npe2 = pytest.importorskip("npe2")

from cytolens import data  # noqa: E402
from cytolens.core.errors import InputError  # noqa: E402
from cytolens.io import imread, imwrite  # noqa: E402
from cytolens.napari import MANIFEST  # noqa: E402
from cytolens.napari._jobs import (  # noqa: E402
    best_plane_layers,
    deconvolve_layers,
    phenotype_layers,
    rate_focus_layers,
    register_layers,
    segment_nuclei_layers,
    track_layers,
    trust_layers,
)
from cytolens.napari._reader import get_reader  # noqa: E402
from cytolens.napari._sample_data import bead_sample, nuclei_sample, tracking_sample  # noqa: E402
from cytolens.napari._writer import write_image, write_labels  # noqa: E402

HPA_ID = "000a9596-bbc4-11e8-b2bc-ac1f6b6435d0"


def _resolve(python_name: str):
    module, attr = python_name.split(":")
    return getattr(importlib.import_module(module), attr)


def test_manifest_validates_and_commands_resolve() -> None:
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    assert manifest.name == "cytolens" and manifest.display_name == "cytolens"
    contrib = manifest.contributions
    ids = {c.id for c in contrib.commands}
    referenced = [r.command for r in contrib.readers] + [w.command for w in contrib.writers]
    referenced += [s.command for s in contrib.sample_data] + [w.command for w in contrib.widgets]
    assert set(referenced) == ids
    for command in contrib.commands:
        if "_widgets:" not in command.python_name:  # widget classes need magicgui (Qt tests)
            assert callable(_resolve(command.python_name)), command.python_name
    # the reader claims only what cytolens adds, never every .tif/.png
    (reader,) = contrib.readers
    assert "*.tif" not in reader.filename_patterns and "*.png" not in reader.filename_patterns
    assert {w.layer_types[0] for w in contrib.writers} == {"image", "labels"}


def test_manifest_loads_through_the_entry_point() -> None:
    from importlib import metadata

    try:
        dist = metadata.distribution("cytolens")
    except metadata.PackageNotFoundError:
        pytest.skip("cytolens is not installed (pip install -e .)")
    ep = metadata.EntryPoint(
        name="cytolens", value="cytolens.napari:napari.yaml", group="napari.manifest"
    )
    assert npe2.PluginManifest._from_entrypoint(ep, dist).name == "cytolens"


def test_import_is_light() -> None:
    code = (
        "import sys, cytolens.napari, cytolens.napari._reader, cytolens.napari._widgets, "
        "cytolens.napari._sample_data, cytolens.napari._jobs, cytolens.napari._writer\n"
        "heavy = [m for m in ('torch', 'qtpy', 'PyQt5', 'PySide6', 'napari', 'magicgui') "
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


def test_reader_leaves_plain_files_to_napari(tmp_path: Path) -> None:
    plain = imwrite(tmp_path / "plane.png", np.zeros((8, 8), np.uint8))
    tif = imwrite(tmp_path / "plain.tif", np.zeros((8, 8), np.uint8))
    assert get_reader(str(plain)) is None and get_reader(str(tif)) is None
    assert get_reader(str(data.sample_path("blood_smear.jpg"))) is None


def test_reader_ome_tiff_with_pixel_sizes(tmp_path: Path) -> None:
    arr = np.arange(3 * 2 * 8 * 8, dtype=np.uint16).reshape(3, 2, 8, 8)
    path = imwrite(
        tmp_path / "stack.ome.tif",
        arr,
        axes="ZCYX",
        pixel_size_um={"Z": 2.0, "Y": 0.25, "X": 0.25},
        channel_names=("dapi", "gfp"),
    )
    ((data_, kwargs, kind),) = get_reader(str(path))(str(path))
    assert kind == "image"
    axes = kwargs["metadata"]["axes"]
    assert axes[kwargs["channel_axis"]] == "C"
    order = [axes.index(ax) for ax in "ZCYX"]
    np.testing.assert_array_equal(np.transpose(np.asarray(data_), order), arr)
    assert kwargs["name"] == ["dapi", "gfp"]
    assert kwargs["scale"] == (2.0, 0.25, 0.25) and kwargs["units"] == ("um", "um", "um")


def test_reader_ome_zarr_pyramid_and_labels(tmp_path: Path) -> None:
    import zarr
    from ome_zarr.writer import write_labels as ome_write_labels

    image = np.random.default_rng(0).integers(0, 200, (256, 256), dtype=np.uint8)
    path = imwrite(tmp_path / "a.ome.zarr", image, axes="YX", pixel_size_um=0.5)
    labels = np.zeros((256, 256), np.uint16)
    labels[10:40, 10:40], labels[100:150, 60:90] = 1, 2
    root = zarr.open_group(str(path), mode="r+")
    ome_write_labels(labels, root, name="nuclei", axes="yx")
    reader = get_reader(str(path))
    assert reader is not None
    (img, ikw, ikind), (lab, lkw, lkind) = reader(str(path))
    assert ikind == "image" and ikw["multiscale"] is True and len(img) > 1
    np.testing.assert_array_equal(np.asarray(img[0]), image)
    assert img[1].shape == (128, 128) and ikw["scale"] == (0.5, 0.5)
    assert lkind == "labels" and lkw["name"] == "nuclei" and lkw["scale"] == (0.5, 0.5)
    level0 = lab[0] if lkw["multiscale"] else lab
    np.testing.assert_array_equal(np.asarray(level0), labels)


def test_reader_ctc_folder(tmp_path: Path) -> None:
    import tifffile

    seq = tmp_path / "Fluo-Toy" / "01"
    seq.mkdir(parents=True)
    for t in range(3):
        tifffile.imwrite(seq / f"t{t:03d}.tif", np.full((8, 8), t, np.uint8))
    for folder in (seq, seq.parent):
        ((movie, kwargs, kind),) = get_reader(str(folder))(str(folder))
        assert kind == "image" and movie.shape == (3, 8, 8) and kwargs["name"] == "Fluo-Toy 01"


def test_reader_hpa_set() -> None:
    green = data.sample_path("hpa_nucleoli_green.png")
    ((data_, kwargs, kind),) = get_reader(str(green))(str(green))
    assert kind == "image" and data_.shape == (4, 512, 512)
    assert kwargs["name"] == ["microtubules", "protein", "nucleus", "ER"]
    assert kwargs["colormap"] == ["red", "green", "blue", "yellow"]
    blue = green.with_name("hpa_nucleoli_blue.png")
    assert get_reader(str(blue)) is None  # a lone channel is a plain PNG: napari's reader


@pytest.mark.parametrize("suffix", [".ome.tif", ".ome.zarr"])
def test_writer_keeps_pixel_sizes(tmp_path: Path, suffix: str) -> None:
    labels = np.zeros((4, 32, 32), np.uint16)
    labels[1:3, 5:9, 5:9] = 3
    meta = {"scale": (2.0, 0.5, 0.5), "units": ("um", "um", "um"), "name": "x"}
    (written,) = write_labels(str(tmp_path / f"labels{suffix}"), labels, meta)
    back = imread(written)
    assert back.axes == "ZYX" and back.pixel_size_um == {"Z": 2.0, "Y": 0.5, "X": 0.5}
    np.testing.assert_array_equal(np.asarray(back.data), labels)
    (img,) = write_image(str(tmp_path / f"img{suffix}"), labels[0].astype(np.float32), {})
    assert imread(img).pixel_size_um == {}


def test_sample_data_shapes() -> None:
    ((nuc, nkw, nkind),) = nuclei_sample()
    assert nuc.shape == (520, 696) and nkind == "image" and nkw["name"] == "nuclei"
    (bead, _, _), (psf, pkw, _) = bead_sample()
    assert bead.shape == psf.shape == (64, 64, 64) and pkw["name"] == "bead_psf"
    ((movie, tkw, _),) = tracking_sample()
    assert movie.shape == (20, 320, 320) and tkw["scale"] == (1.0, 0.125, 0.125)
    assert tkw["units"] == ("pixel", "um", "um")


def test_rate_focus_job_matches_the_png_overlay() -> None:
    from cytolens.focus.overlay import level_rgba

    ((rects, kwargs, kind),) = rate_focus_layers(data.nuclei().data, patch_size=84)
    n_patches = (520 // 84) * (696 // 84)
    assert kind == "shapes" and rects.shape == (n_patches, 4, 2)
    cert = kwargs["features"]["certainty"]
    expected = level_rgba(kwargs["features"]["level"], 11, cert)
    np.testing.assert_allclose(kwargs["edge_color"], expected)
    assert kwargs["metadata"]["verdict"] == "in focus"
    assert rects[:, :, 0].min() == 0 and rects[:, :, 1].max() == (696 // 84) * 84


@pytest.mark.parametrize(
    ("job", "args", "message"),
    [
        (rate_focus_layers, (np.zeros((2, 64, 64)),), "Rate focus needs a 2-D grey image"),
        (segment_nuclei_layers, (np.zeros((2, 64, 64)),), "Segment nuclei needs a 2-D image"),
        (track_layers, (np.zeros((64, 64)),), "Track nuclei needs a movie with time first"),
        (deconvolve_layers, (np.zeros((8, 8)), np.zeros((3, 3, 3))), "a 2-D PSF like the image"),
        (segment_nuclei_layers, (None,), "no layer is selected"),
        (phenotype_layers, (np.zeros((8, 8)), np.ones((9, 9), int)), "labels of the image's shape"),
        (register_layers, (np.zeros((8, 8)), None), "Register needs a 2-D moving image"),
        (
            functools.partial(trust_layers, model="decon-llsm-v1"),
            (np.zeros((64, 64)),),
            "'decon-llsm-v1' takes 3-D stacks \\(ZYX\\); got 2 dimensions",
        ),
    ],
)
def test_jobs_reject_bad_input_with_a_clear_message(job, args, message) -> None:
    with pytest.raises(InputError, match=message):
        job(*args)


def test_jobs_run_the_pipeline_steps_on_the_layer() -> None:
    """The widget's job and the ``segment.nuclei`` -> ``segment.measure`` steps agree."""
    from cytolens.pipeline import Item, make_steps

    image = data.nuclei()
    ((labels, kwargs, kind),) = segment_nuclei_layers(
        image.data, method="classical", pixel_size_um={"Y": 0.5, "X": 0.5, "Z": 2.0}
    )
    item = Item(data.sample_path("nuclei_bbbc006.png"), "n", image)
    for step in make_steps([("segment.nuclei", {"method": "classical"}), ("segment.measure", {})]):
        step.run(item)
    np.testing.assert_array_equal(labels, item.labels)
    assert kind == "labels" and kwargs["name"] == f"nuclei (classical, {item.row['nuclei']})"
    features = kwargs["features"]  # one row per label, areas in um2 from the layer's pixel size
    assert features["index"].tolist() == list(range(1, int(labels.max()) + 1))
    np.testing.assert_allclose(features["area_um2"], features["area_px"] * 0.25)
    assert kwargs["metadata"]["nuclei"] == item.row["nuclei"]


def test_step_parameters_are_validated_with_the_widget_title() -> None:
    with pytest.raises(InputError, match=r"Rate focus, step focus\.rate: patch_size"):
        rate_focus_layers(np.zeros((64, 64)), patch_size=8)


def test_layer_pixel_sizes_from_scale_and_units() -> None:
    pint = pytest.importorskip("pint")
    from cytolens.napari._widgets import layer_pixel_sizes

    ureg = pint.get_application_registry()

    class Layer:
        scale = (2.0, 0.5, 250.0)
        units = (ureg.um, ureg.um, ureg.nm)

    assert layer_pixel_sizes(Layer()) == pytest.approx({"X": 0.25, "Y": 0.5, "Z": 2.0})
    Layer.units = (ureg.s, ureg.pixel, ureg.um)  # only lengths count
    assert layer_pixel_sizes(Layer()) == {"X": 250.0}


def test_segment_nuclei_job_rejects_unknown_method() -> None:
    with pytest.raises(InputError, match="nope"):
        segment_nuclei_layers(np.zeros((64, 64)), method="nope")


def test_deconvolve_job_sharpens_a_blurred_point() -> None:
    from scipy import ndimage

    yy, xx = np.mgrid[-6:7, -6:7]
    psf = np.exp(-(yy**2 + xx**2) / (2 * 1.5**2)).astype(np.float32)
    truth = np.zeros((48, 48), np.float32)
    truth[24, 24] = 1000.0
    blurred = ndimage.convolve(truth, psf / psf.sum(), mode="constant") + 1.0
    ((out, kwargs, kind),) = deconvolve_layers(blurred, psf, iterations=3)
    assert kind == "image" and out.shape == blurred.shape
    assert out[24, 24] > 1.5 * blurred[24, 24] and "3 it." in kwargs["name"]


def test_track_job_on_moving_square_has_speeds() -> None:
    movie = np.zeros((4, 40, 40), np.uint16)
    for t in range(4):
        movie[t, 10:18, 4 + 3 * t : 12 + 3 * t] = 1000
    (tracks, tkw, tkind), (labels, _, lkind) = track_layers(movie, pixel_size_um=0.5)
    assert tkind == "tracks" and lkind == "labels" and tracks.shape == (4, 4)
    np.testing.assert_array_equal(tracks[:, 1], np.arange(4))
    np.testing.assert_allclose(np.diff(tracks[:, 3]), 3.0)
    # 3 px per frame at 0.5 um per pixel
    np.testing.assert_allclose(tkw["features"]["speed_um_per_frame"][1:], 1.5)
    assert labels.shape == movie.shape and tkw["graph"] == {}


def test_best_plane_and_track_jobs_run_their_steps() -> None:
    """``focus.best_plane`` and ``track`` behind the widgets: the step's table and row come back."""
    stack = np.zeros((3, 64, 64), np.float32)
    stack[2, ::8, ::8] = 1.0
    ((plane, kwargs, _),) = best_plane_layers(
        stack, method="brenner_gradient", pixel_size_um={"Z": 0.5, "Y": 0.1, "X": 0.1}
    )
    np.testing.assert_array_equal(plane, stack[2])
    assert kwargs["metadata"]["z"] == 2 and kwargs["metadata"]["z_um"] == 1.0
    assert kwargs["metadata"]["scores"]["z_px"].tolist() == [0, 1, 2]
    movie = np.zeros((3, 40, 40), np.uint16)
    for t in range(3):
        movie[t, 10:18, 4 + 3 * t : 12 + 3 * t] = 1000
    (_, tkw, _), (labels, _, _) = track_layers(movie)
    assert tkw["name"] == "tracks (1)" and tkw["metadata"]["segmenter"] == "threshold"
    assert labels.dtype == np.uint32 and tkw["metadata"]["frames"] == 3
