"""The ``restore.deconvolve`` pipeline step: everything the command can say, and the same result.

``cytolens restore deconvolve`` builds this step from its options and runs it,
so the step must accept every option (a theoretical PSF, Wiener-Butterworth
and Richardson-Lucy parameters, the voxel size, chunks, the network method)
and give what :func:`cytolens.restore.deconvolve` gives when called with the
same values.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tests.clitools import cytolens
from typer.testing import CliRunner

from cytolens.core.errors import InputError
from cytolens.core.image import Image
from cytolens.io import imread, imwrite
from cytolens.pipeline import Item, make_step
from cytolens.pipeline.config import load_pipeline
from cytolens.pipeline.runner import run_pipeline
from cytolens.restore import deconvolve, gaussian_psf, load_psf, theoretical_psf
from cytolens.restore.cli import app
from cytolens.restore.steps import TheoreticalPSF

THEORETICAL = {"na": 1.0, "wavelength_um": 0.5}


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    """Blurred beads (16, 40, 40), float32, no camera offset."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(5)
    obj = np.zeros((16, 40, 40), np.float32)
    for _ in range(15):
        obj[tuple(int(rng.integers(3, s - 3)) for s in obj.shape)] = rng.uniform(200, 1000)
    return gaussian_filter(obj, (1.5, 1.2, 1.2)).astype(np.float32) + 1.0


@pytest.fixture
def psf_file(tmp_path: Path) -> Path:
    return imwrite(tmp_path / "psf.tif", gaussian_psf((7, 9, 9), (1.5, 1.2, 1.2)), axes="ZYX")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"psf": {"na": 1.4, "wavelength_um": 0.5}}, "na 1.4 must be below refractive_index 1.33"),
        ({"psf": {**THEORETICAL, "kind": "spinning"}}, "psf.theoretical.kind: Input should be"),
        ({"psf": {**THEORETICAL, "colour": 1}}, "colour: Extra inputs"),
        ({"psf": "nope.tif"}, "psf: Value error, nope.tif: no such file"),
        ({"psf": THEORETICAL, "model": "decon-llsm-v1"}, "model is for method network"),
        (
            {"psf": THEORETICAL, "method": "network", "tv": 0.01},
            "tv: Value error, method network is one",
        ),
        ({"psf": THEORETICAL, "beta": 1.5}, "beta: Value error, must be 'auto' or a number"),
        ({"psf": THEORETICAL, "acceleration": "fast"}, "acceleration"),
        ({"psf": THEORETICAL, "voxel_size_um": [0.1, 0, 0.1]}, "voxel_size_um.1"),
        ({"psf": THEORETICAL, "chunk_shape": [8, 8, 8, 8]}, "chunk_shape"),
        ({"psf": THEORETICAL, "background": float("nan")}, "background"),
    ],
)
def test_bad_parameters_are_refused_naming_the_key(params: dict, message: str) -> None:
    with pytest.raises(InputError, match=r"p\.yaml line 3, step restore\.deconvolve: ") as info:
        make_step("restore.deconvolve", params, where="p.yaml line 3")
    assert message in str(info.value)


def test_spec_round_trips_through_json(psf_file: Path) -> None:
    for psf in (str(psf_file), {**THEORETICAL, "kind": "confocal", "refractive_index": 1.515}):
        step = make_step(
            "restore.deconvolve",
            {"psf": psf, "method": "richardson-lucy", "beta": 0.01, "voxel_size_um": [0.2]},
        )
        params = json.loads(json.dumps(step.spec()["params"]))
        assert make_step("restore.deconvolve", params).params == step.params
    assert isinstance(step.params.psf, TheoreticalPSF) and step.params.psf.kind == "confocal"


@pytest.mark.parametrize(
    "options",
    [
        {"method": "wiener-butterworth", "alpha": 0.02, "beta": 0.05, "order": 6, "iterations": 3},
        {
            "method": "richardson-lucy",
            "iterations": 6,
            "acceleration": "biggs-andrews",
            "tv": 0.002,
        },
    ],
)
def test_run_gives_what_the_api_gives(volume: np.ndarray, options: dict) -> None:
    """Theoretical PSF at the stated voxel size (the file states none), which the output records."""
    step = make_step(
        "restore.deconvolve",
        {"psf": THEORETICAL, "voxel_size_um": [0.3, 0.1, 0.1], "device": "cpu", **options},
    )
    item = Item(Path("v.tif"), "v", Image(volume[None], "CZYX"))
    step.run(item)
    image = item.images["deconvolved"]
    assert item.image is image and image.axes == "ZYX"
    assert image.pixel_size_um == {"Z": 0.3, "Y": 0.1, "X": 0.1}
    kernel = theoretical_psf(
        TheoreticalPSF(**THEORETICAL).shape(volume.shape, (0.3, 0.1, 0.1)),
        voxel_size_um=(0.3, 0.1, 0.1),
        **THEORETICAL,
    )
    expected, history = deconvolve(volume, kernel, device="cpu", return_history=True, **options)
    np.testing.assert_array_equal(image.data, expected)
    assert item.row["iterations_run"] == options["iterations"] == len(history)
    assert item.row["final_relative_change"] == history[-1]["relative_change"]
    assert item.row["method"] == options["method"] and item.row["model"] is None
    assert item.row["psf"].startswith("theoretical widefield, NA 1.0, 0.5 um, shape (")


def test_voxel_size_replaces_the_files_and_chunks_give_no_history(
    volume: np.ndarray, psf_file: Path
) -> None:
    step = make_step(
        "restore.deconvolve",
        {"psf": str(psf_file), "voxel_size_um": [0.25], "chunk_shape": [16, 24, 24]},
    )
    image = Image(volume, "ZYX", {"Z": 0.5, "Y": 0.2, "X": 0.2})
    item = Item(Path("v.tif"), "v", image)
    step.run(item)
    assert item.image.pixel_size_um == {"Z": 0.25, "Y": 0.25, "X": 0.25}
    assert item.row["iterations_run"] == 2 and item.row["final_relative_change"] is None
    assert item.row["psf"] == "measured psf.tif, shape (7, 9, 9)"
    expected = deconvolve(volume, load_psf(psf_file), chunk_shape=(16, 24, 24))
    np.testing.assert_array_equal(item.image.data, expected)


@pytest.mark.parametrize(
    ("params", "image", "message"),
    [
        ({}, Image(np.ones((8, 24, 24), np.float32), "ZYX"), "pass"),
        (
            {"voxel_size_um": [0.1, 0.1]},
            Image(np.ones((8, 24, 24), np.float32), "ZYX"),
            "voxel_size_um 0.1,0.1 must give 3 values (Z, Y, X) or one",
        ),
        (
            {"voxel_size_um": [0.1]},
            Image(np.ones((2, 24, 24), np.float32), "CYX"),
            "deconvolution needs one channel and one time point",
        ),
        (
            {"voxel_size_um": [0.1], "tv": 0.2},
            Image(np.ones((8, 24, 24), np.float32), "ZYX"),
            "tv 0.2 must be below 0.167 for a 3D image",
        ),
        (
            {"voxel_size_um": [0.1], "chunk_shape": [8, 8]},
            Image(np.ones((8, 24, 24), np.float32), "ZYX"),
            "chunk_shape 8,8 must give 3 values",
        ),
    ],
)
def test_run_errors_name_the_key(params: dict, image: Image, message: str) -> None:
    step = make_step("restore.deconvolve", {"psf": THEORETICAL, **params})
    if message == "pass":  # no voxel size anywhere: a theoretical PSF cannot be sampled
        message = "does not state its voxel size along 'ZYX' (has {}); give voxel_size_um"
    with pytest.raises(InputError) as info:
        step.run(Item(Path("v.tif"), "v", image))
    assert message in str(info.value)


def test_psf_of_other_dimensionality_is_refused(psf_file: Path) -> None:
    step = make_step("restore.deconvolve", {"psf": str(psf_file)})
    with pytest.raises(InputError, match=r"psf .*psf\.tif: a 3D PSF .* for the 2D image"):
        step.run(Item(Path("p.tif"), "p", Image(np.ones((32, 32), np.float32), "YX")))


def test_pipeline_yaml_says_what_the_command_says(tmp_path: Path) -> None:
    """A theoretical confocal PSF, RL options and the voxel size, all in a YAML file."""
    (tmp_path / "p.yaml").write_text(
        "inputs: [cells.tif]\n"
        "steps:\n"
        "  - restore.deconvolve:\n"
        "      psf: {na: 1.2, wavelength_um: 0.52, refractive_index: 1.33, kind: confocal,\n"
        "            excitation_wavelength_um: 0.488}\n"
        "      method: richardson-lucy\n"
        "      iterations: 10\n"
        "      acceleration: biggs-andrews\n"
        "      tv: 0.002\n"
        "      voxel_size_um: [0.3, 0.1, 0.1]\n"
        "      chunk_shape: [64]\n"
    )
    (step,) = load_pipeline(tmp_path / "p.yaml").steps
    p = step.params
    assert (p.psf.kind, p.psf.excitation_wavelength_um, p.acceleration) == (
        "confocal",
        0.488,
        "biggs-andrews",
    )
    assert p.voxel_size_um == [0.3, 0.1, 0.1] and p.chunk_shape == [64]


def test_command_and_pipeline_write_the_same_image(
    volume: np.ndarray, psf_file: Path, tmp_path: Path
) -> None:
    """The command is a thin caller: the pipeline step with its options gives the same pixels."""
    image = imwrite(tmp_path / "cells.tif", (volume + 100).astype(np.uint16), axes="ZYX")
    out = tmp_path / "cli" / "cells.ome.zarr"
    args = ["--psf", str(psf_file), "--background", "100", "--alpha", "0.02", "--order", "6"]
    args += ["--voxel-size", "0.3,0.1,0.1", "--device", "cpu"]
    result = CliRunner().invoke(app, ["deconvolve", str(image), *args, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    params = {"psf": str(psf_file), "background": 100, "alpha": 0.02, "order": 6}
    params.update(voxel_size_um=[0.3, 0.1, 0.1], device="cpu")
    step = make_step("restore.deconvolve", params)
    run = run_pipeline([image], [step], tmp_path / "run", progress=False, report=False)
    (record,) = run.records
    assert record["status"] == "done", record
    cli, pipe = imread(out), imread(tmp_path / "run" / "deconvolved" / "cells.ome.zarr")
    np.testing.assert_array_equal(np.asarray(cli.data), np.asarray(pipe.data))
    assert cli.pixel_size_um == pipe.pixel_size_um == pytest.approx({"Z": 0.3, "Y": 0.1, "X": 0.1})
    for key in ("iterations_run", "final_relative_change", "psf", "method"):
        assert summary[key] == record["row"][key]


def test_command_voxel_size_reaches_the_ome_zarr(
    volume: np.ndarray, psf_file: Path, tmp_path: Path
) -> None:
    """Issue 16: --voxel-size was dropped when the file stated some sizes (here Y and X only)."""
    image = imwrite(tmp_path / "cells.tif", volume, axes="ZYX", pixel_size_um={"Y": 0.2, "X": 0.2})
    assert imread(image).pixel_size_um == {"Y": 0.2, "X": 0.2}
    out = tmp_path / "cells.ome.zarr"
    proc = cytolens(
        "restore", "deconvolve", image, "--psf", psf_file, "--voxel-size", "0.3,0.1,0.1",
        "--iterations", "1", "--out", out,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert imread(out).pixel_size_um == pytest.approx({"Z": 0.3, "Y": 0.1, "X": 0.1})
    attrs = json.dumps([json.loads(p.read_text()) for p in out.rglob("*.json")])
    attrs += json.dumps([json.loads(p.read_text()) for p in out.rglob(".zattrs")])
    assert '"scale": [0.3, 0.1, 0.1]' in attrs.replace("0.30000000000000004", "0.3")
