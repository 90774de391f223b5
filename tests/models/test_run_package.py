"""Running bioimage.io packages made by any tool: ``run_package`` and ``cytolens models run``.

Packages under test: every shipped model exported by cytolens; a torchscript
package written here with plain torch + YAML (no cytolens), as another tool
would; the CAREamics Noise2Void package of ``scripts/make_careamics_package.py``
(when it has been built); and broken variants of them for the error paths.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tests.clitools import cytolens, one_error_line
from tests.models.test_bioimageio import EXPORTABLE  # the models the exporter takes

from cytolens.core.errors import AxesError, FileFormatError, MissingFileError, ModelError
from cytolens.models import build_network, load_card
from cytolens.models.bioimageio import ATOL, RTOL, export_bioimageio
from cytolens.models.runner import check_package, load_package, run_package

pytest.importorskip("bioimageio.spec", reason="bioimageio.spec not installed")
# torch.jit (trace, save, load) is deprecated in torch 2.13 but is bioimage.io's torch format
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")

ROOT = Path(__file__).resolve().parents[2]
CAREAMICS = ROOT / "build" / "careamics"


# --- a package made without cytolens -------------------------------------------------


class _Local(torch.nn.Module):
    """Two 3x3 convolutions (receptive radius 2 px) and a 1x1 head: 1 -> 2 channels."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.b = torch.nn.Conv2d(4, 2, 3, padding=1)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.a(x)))


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def make_torchscript_package(path: Path, **changes: object) -> Path:
    """A bioimage.io 0.5 zip: torchscript weights, zero-mean/unit-variance in, sigmoid out.

    Written with torch, numpy and YAML only, as another tool would; ``changes``
    replace top-level rdf fields (``None`` removes one) for the error tests.
    """
    net = _Local().eval()
    raw = np.random.default_rng(1).gamma(2.0, 50.0, (1, 1, 64, 48)).astype(np.float32)
    x = (raw - raw.mean()) / (raw.std() + 1e-6)
    with torch.no_grad():
        y = torch.sigmoid(net(torch.from_numpy(x))).numpy()
        script = io.BytesIO()
        torch.jit.save(torch.jit.trace(net, torch.from_numpy(x)), script)
    space = {"min": 16, "step": 8}
    rdf: dict[str, object] = {
        "type": "model",
        "format_version": "0.5.4",
        "name": "plain-torch-local",
        "description": "two convolutions, made without cytolens",
        "authors": [{"name": "someone else"}],
        "cite": [{"text": "none", "url": "https://example.org"}],
        "license": "MIT",
        "documentation": "README.md",
        "covers": [],
        "inputs": [
            {
                "id": "raw",
                "axes": [
                    {"type": "batch"},
                    {"type": "channel", "channel_names": ["dapi"]},
                    {"type": "space", "id": "y", "size": dict(space)},
                    {"type": "space", "id": "x", "size": dict(space)},
                ],
                "test_tensor": {"source": "in.npy"},
                "preprocessing": [
                    {"id": "zero_mean_unit_variance", "kwargs": {"axes": ["channel", "y", "x"]}}
                ],
            }
        ],
        "outputs": [
            {
                "id": "probs",
                "axes": [
                    {"type": "batch"},
                    {"type": "channel", "channel_names": ["fg", "bg"]},
                    {"type": "space", "id": "y", "size": {"tensor_id": "raw", "axis_id": "y"}},
                    {"type": "space", "id": "x", "size": {"tensor_id": "raw", "axis_id": "x"}},
                ],
                "test_tensor": {"source": "out.npy"},
                "postprocessing": [{"id": "sigmoid"}],
            }
        ],
        "weights": {"torchscript": {"source": "net.pt", "pytorch_version": "2.0"}},
    }
    for key, value in changes.items():
        if value is None:
            rdf.pop(key, None)
        else:
            rdf[key] = value
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("rdf.yaml", yaml.safe_dump(rdf, sort_keys=False))
        zf.writestr("README.md", "# plain torch\n")
        zf.writestr("net.pt", script.getvalue())
        zf.writestr("in.npy", _npy(raw))
        zf.writestr("out.npy", _npy(y))
        if "weights" in changes:
            zf.writestr("model.h5", b"not really keras")
    return path


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return make_torchscript_package(tmp_path_factory.mktemp("plain") / "plain.zip")


def _local_reference(image: np.ndarray) -> np.ndarray:
    """What the plain package computes, written out with torch (untiled, no padding)."""
    x = (image - image.mean()) / (image.std() + 1e-6)
    with torch.no_grad():
        y = _Local().eval()(torch.from_numpy(x[None, None].astype(np.float32)))
    return torch.sigmoid(y)[0].numpy()


def test_plain_torchscript_package_reproduces_its_test_tensors(plain):
    result = check_package(plain, device="cpu")
    assert result.weight_format == "torchscript"
    assert result.passed and result.max_abs_diff < 1e-5, result


def test_tiled_equals_untiled_and_sizes_are_padded(plain):
    model = load_package(plain, device="cpu")
    assert model.input_axes == "BCYX" and model.output_axes == {"probs": "CYX"}
    image = np.random.default_rng(2).gamma(2.0, 50.0, (200, 168)).astype(np.float32)
    whole = run_package(model, image, axes="YX", tile=1024)["probs"]
    tiled = run_package(model, image, axes="YX", tile=64, overlap=8)["probs"]
    assert whole.shape == tiled.shape == (2, 200, 168)
    # radius-2 network, 8 px overlap, halo cropped: tiles give the untiled result
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-6)
    np.testing.assert_allclose(whole, _local_reference(image), rtol=0, atol=1e-5)
    # 203 x 171 is no accepted size (16 + 8k): padded by reflection, cropped back
    odd = np.pad(image, ((0, 3), (0, 3)), mode="reflect")
    got = run_package(model, odd, axes="YX", tile=1024)["probs"]
    assert got.shape == (2, 203, 171)
    # away from the padded border, equal to the network on the image as it is
    np.testing.assert_allclose(got[:, :-3, :-3], _local_reference(odd)[:, :-3, :-3], atol=1e-5)


def test_dask_movie_and_channel_axes(plain):
    da = pytest.importorskip("dask.array")
    model = load_package(plain, device="cpu")
    movie = np.random.default_rng(3).gamma(2.0, 50.0, (2, 64, 80)).astype(np.float32)
    out = run_package(model, da.from_array(movie, chunks=(1, 32, 40)), axes="TYX", tile=48)
    assert out["probs"].shape == (2, 2, 64, 80) and model.axes_of("probs", image_axes="TYX") == (
        "TCYX"
    )
    # frames are separate samples: each normalized by its own statistics
    frame1 = run_package(model, movie[1], axes="YX", tile=48)["probs"]
    np.testing.assert_allclose(out["probs"][1], frame1, rtol=0, atol=1e-6)
    yxc = run_package(model, movie[0][..., None], axes="YXC")["probs"]  # one channel, moved
    np.testing.assert_allclose(yxc, out["probs"][0], rtol=0, atol=1e-5)


def test_axes_that_do_not_match_are_named(plain):
    model = load_package(plain, device="cpu")
    with pytest.raises(AxesError, match=r"3 channel\(s\); package 'plain-torch-local' expects 1"):
        run_package(model, np.ones((3, 32, 32), np.float32), axes="CYX")
    with pytest.raises(AxesError, match=r"image axis 'Z' \(length 4\) has no match"):
        run_package(model, np.ones((4, 32, 32), np.float32), axes="ZYX")
    with pytest.raises(AxesError, match="give axes="):
        run_package(model, np.ones((2, 4, 32, 32), np.float32))


# --- every shipped model, exported by cytolens and run back ---------------------------


@pytest.fixture(scope="module", params=EXPORTABLE)
def exported(request, tmp_path_factory):
    torch.set_num_threads(1)
    name = request.param
    return name, export_bioimageio(name, tmp_path_factory.mktemp(name) / f"{name}.zip")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_exported_packages_reproduce_cytolens_predictions(exported):
    name, path = exported
    for fmt in ("pytorch_state_dict", "torchscript"):
        result = check_package(path, device="cpu", weight_format=fmt)
        # the exporter's own test tolerance (torchscript vs state dict)
        assert result.passed and result.max_abs_diff <= ATOL + RTOL, (fmt, result)
    # the same on the raw test image, compared with cytolens' own network directly
    with zipfile.ZipFile(path) as zf:
        raw = np.load(io.BytesIO(zf.read("test_input.npy")))[0]
        rdf = yaml.safe_load(zf.read("rdf.yaml"))
    got = run_package(path, raw, axes="CYX", device="cpu")[rdf["outputs"][0]["id"]]
    from cytolens.models.bioimageio import _normalize

    x = _normalize(raw[None], load_card(name), raw.shape[0])
    with torch.inference_mode():
        want = build_network(name)(torch.from_numpy(x))
    want = (want[0] if isinstance(want, (tuple, list)) else want)[0].numpy()
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


# --- bad input -------------------------------------------------------------------------


def test_invalid_package_names_the_field(tmp_path):
    bad = make_torchscript_package(tmp_path / "bad.zip", inputs="not a list")
    with pytest.raises(ModelError, match=r"fails bioimage.io validation \(rdf.yaml\).*inputs"):
        load_package(bad, device="cpu")
    nameless = make_torchscript_package(tmp_path / "nameless.zip", name=None)
    with pytest.raises(ModelError, match=r"fails bioimage.io validation.*name"):
        load_package(nameless, device="cpu")


def test_unsupported_weight_format(tmp_path):
    keras = {"keras_hdf5": {"source": "model.h5", "tensorflow_version": "2.15"}}
    pkg = make_torchscript_package(tmp_path / "keras.zip", weights=keras)
    with pytest.raises(ModelError, match="has only keras_hdf5 weights; cytolens runs"):
        load_package(pkg, device="cpu")
    plain = make_torchscript_package(tmp_path / "p.zip")
    with pytest.raises(ModelError, match="no 'pytorch_state_dict' weights"):
        load_package(plain, device="cpu", weight_format="pytorch_state_dict")
    with pytest.raises(ModelError, match="'tensorflow_saved_model_bundle' is not supported"):
        load_package(plain, device="cpu", weight_format="tensorflow_saved_model_bundle")


def test_onnx_needs_onnxruntime(tmp_path, monkeypatch):
    onnx = {"onnx": {"source": "net.pt", "opset_version": 17}}
    pkg = make_torchscript_package(tmp_path / "onnx.zip", weights=onnx)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(ModelError, match="pip install onnxruntime"):
        load_package(pkg, device="cpu")


def test_not_a_package_and_damaged_files(tmp_path):
    with pytest.raises(MissingFileError, match="no such package"):
        load_package(tmp_path / "nope.zip")
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(FileFormatError, match=r"no rdf.yaml or bioimageio.yaml"):
        load_package(empty)
    (tmp_path / "text.zip").write_text("not a zip")
    with pytest.raises(FileFormatError, match="not a zip file"):
        load_package(tmp_path / "text.zip")
    weights = {"torchscript": {"source": "net.pt", "sha256": "0" * 64, "pytorch_version": "2.0"}}
    pkg = make_torchscript_package(tmp_path / "sha.zip", weights=weights)
    with pytest.raises(ModelError, match=r"sha256 .* does not match"):
        load_package(pkg, device="cpu")


def test_state_dict_from_a_missing_library(tmp_path):
    weights = {
        "pytorch_state_dict": {
            "source": "net.pt",
            "architecture": {"callable": "UNet", "import_from": "not_installed_lib.models"},
            "pytorch_version": "2.0",
        }
    }
    pkg = make_torchscript_package(tmp_path / "lib.zip", weights=weights)
    with pytest.raises(ModelError, match=r"'not_installed_lib\.models', which is not installed"):
        load_package(pkg, device="cpu")


# --- a package made by CAREamics ------------------------------------------------------


def test_careamics_package_reproduces_its_test_output():
    """Needs ``scripts/make_careamics_package.py`` run first (see its docstring)."""
    pkg = CAREAMICS / "careamics-n2v-torchscript.zip"
    if not pkg.is_file():
        pytest.skip(f"{pkg} absent: build it with scripts/make_careamics_package.py")
    result = check_package(pkg, device="cpu", weight_format="torchscript")
    assert result.passed and result.max_abs_diff < 1e-3, result
    # the package as CAREamics wrote it: state-dict weights from the careamics library
    try:
        import careamics  # noqa: F401
    except ImportError:
        with pytest.raises(ModelError, match=r"'careamics\.models\.unet', which is not installed"):
            load_package(CAREAMICS / "careamics-n2v.zip", device="cpu")


# --- the command line ----------------------------------------------------------------


def test_cli_runs_a_package(plain, tmp_path):
    tifffile = pytest.importorskip("tifffile")
    images = tmp_path / "in"
    images.mkdir()
    rng = np.random.default_rng(4)
    for name in ("a", "b"):
        tifffile.imwrite(images / f"{name}.tif", rng.gamma(2.0, 50.0, (70, 90)).astype(np.uint16))
    out = tmp_path / "out"
    proc = cytolens("models", "run", plain, images, "--out", out, "--device", "cpu", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["test_reproduced"]["passed"] and summary["weight_format"] == "torchscript"
    assert [r["outputs"] for r in summary["images"]] == [["a_probs.ome.tif"], ["b_probs.ome.tif"]]
    assert json.loads((out / "summary.json").read_text())["name"] == "plain-torch-local"
    assert (out / "report.html").is_file()
    from cytolens.io import imread

    written = imread(out / "a_probs.ome.tif")
    assert written.axes == "CYX" and written.shape == (2, 70, 90)
    expected = run_package(plain, tifffile.imread(images / "a.tif"), axes="YX", device="cpu")
    np.testing.assert_allclose(np.asarray(written.data), expected["probs"], rtol=0, atol=1e-6)


def test_cli_axes_mismatch_is_one_line(plain, tmp_path):
    tifffile = pytest.importorskip("tifffile")
    image = tmp_path / "rgb.tif"
    tifffile.imwrite(image, np.zeros((3, 32, 32), np.uint8))
    proc = cytolens(
        "models", "run", plain, image, "--out", tmp_path / "o", "--axes", "CYX", "--device", "cpu"
    )
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "rgb.tif" in line and "expects 1" in line


@pytest.mark.slow
def test_careamics_builds_and_runs(tmp_path, request):
    """CAREamics trains and exports a package (``build/careamics-env``, ~1-3 CPU-min)."""
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("slow (about 2 min): run with -m slow")
    env = ROOT / "build" / "careamics-env"
    if not (env / "careamics").is_dir():
        pytest.skip(f"{env} absent: see scripts/make_careamics_package.py for the install")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_careamics_package.py"), "--out", tmp_path],
        capture_output=True,
        text=True,
        timeout=900,
        env={"PYTHONPATH": str(env), "PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": ""},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["packages"]["careamics-n2v.zip"]["bioimageio_core_test"] == "passed"
    result = check_package(tmp_path / "careamics-n2v-torchscript.zip", device="cpu")
    assert result.passed, result
