"""bioimage.io export: every shipped model with a ``network`` entry, reopened and re-run."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
import yaml

from cytolens.core.errors import InputError, ModelError
from cytolens.models import (
    ModelCard,
    build_network,
    list_models,
    load_card,
    save_model,
)
from cytolens.models import bioimageio as bx
from cytolens.models.bioimageio import ATOL, RTOL, export_bioimageio

#: 2-D models with a network entry; 3-D ones (network deconvolution, ZYX) and hybrid heads
#: (classical features computed outside the network, e.g. mitocheck-v1) are refused clearly.
EXPORTABLE = [
    n
    for n in list_models()
    if load_card(n).network
    and load_card(n).input_axes.upper() in ("YX", "YXC", "CYX")
    and not load_card(n).parameters.get("features")
]
SKIPPED = [n for n in list_models() if n not in EXPORTABLE]


@pytest.fixture(scope="module", params=EXPORTABLE)
def package(request, tmp_path_factory):
    """``(name, zip path, {member: bytes}, rdf)`` of each exported shipped model (once)."""
    torch.set_num_threads(1)
    name = request.param
    path = export_bioimageio(name, tmp_path_factory.mktemp(name) / f"{name}.zip")
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    return name, path, members, yaml.safe_load(members["rdf.yaml"])


def _preprocess(x: np.ndarray, step: dict) -> np.ndarray:
    """bioimage.io ``scale_range`` (per sample) or ``scale_linear``, written out independently."""
    kwargs = step["kwargs"]
    if step["id"] == "scale_linear":
        return (x * kwargs["gain"] + kwargs["offset"]).astype(np.float32)
    reduce = tuple({"channel": 1, "y": 2, "x": 3}[a] for a in kwargs["axes"])
    lo = np.percentile(x, kwargs["min_percentile"], axis=reduce, keepdims=True)
    hi = np.percentile(x, kwargs["max_percentile"], axis=reduce, keepdims=True)
    return ((x - lo) / (hi - lo + kwargs["eps"])).astype(np.float32)


def _outputs(net, x: np.ndarray) -> list[np.ndarray]:
    with torch.inference_mode():
        y = net(torch.from_numpy(x))
    return [t.numpy() for t in (y if isinstance(y, (tuple, list)) else (y,))]


def test_every_model_without_network_is_reported(capsys):
    # new models land with a card; those without `network` are skipped, not silently lost
    assert set(EXPORTABLE) >= {"focus-miq-v1", "nuclei-v1"}
    assert set(EXPORTABLE) | set(SKIPPED) == set(list_models())


def test_a_3d_model_is_refused_with_a_clear_error(tmp_path):
    three_d = [n for n in list_models() if load_card(n).input_axes.upper() == "ZYX"]
    if not three_d:
        pytest.skip("no 3-D model shipped")
    with pytest.raises(ModelError, match="input_axes 'ZYX' cannot be exported"):
        bx.export_bioimageio(three_d[0], tmp_path / "m.zip")
    assert not (tmp_path / "m.zip").exists()


def test_a_hybrid_head_is_refused_before_any_work(tmp_path, monkeypatch):
    hybrid = [n for n in list_models() if load_card(n).parameters.get("features")]
    if not hybrid:
        pytest.skip("no model with a hybrid head shipped")

    def no_build(*args, **kwargs):
        raise AssertionError("the network was built before the refusal")

    monkeypatch.setattr(bx, "build_network", no_build)
    n_features = len(load_card(hybrid[0]).parameters["features"])
    with pytest.raises(
        ModelError,
        match=rf"model '{hybrid[0]}' cannot be exported to bioimage.io: its head reads "
        rf"{n_features} classical features .* holds the network only",
    ):
        bx.export_bioimageio(hybrid[0], tmp_path / "m.zip")
    assert not (tmp_path / "m.zip").exists()


def test_rdf_fields_follow_the_card(package):
    name, _, members, rdf = package
    card = load_card(name)
    assert rdf["type"] == "model" and rdf["format_version"].startswith("0.5.")
    assert rdf["name"] == name and rdf["version"] == card.version
    assert rdf["license"] == "BSD-3-Clause"
    assert rdf["authors"] == [{"name": "cytolens developers"}]
    assert rdf["cite"] and all("doi" in c or "url" in c for c in rdf["cite"])
    (inp,) = rdf["inputs"]
    assert [a["type"] for a in inp["axes"]] == ["batch", "channel", "space", "space"]
    (pre,) = inp["preprocessing"]
    if card.normalization["kind"] == "dtype_range":  # 8-bit channels to [0, 1]
        assert pre == {"id": "scale_linear", "kwargs": {"gain": 1 / 255, "offset": 0.0}}
    else:
        assert pre["id"] == "scale_range"
        assert pre["kwargs"]["min_percentile"] == card.normalization["pmin"]
        assert pre["kwargs"]["max_percentile"] == card.normalization["pmax"]
    state = rdf["weights"]["pytorch_state_dict"]
    assert state["sha256"] == card.sha256
    _, _, cls = card.network["entry_point"].partition(":")
    assert state["architecture"]["callable"] == cls
    assert state["architecture"]["kwargs"] == card.network["kwargs"]
    assert f"class {cls}(" in members[state["architecture"]["source"]].decode()
    assert rdf["weights"]["torchscript"]["source"] in members
    readme = members["README.md"].decode()
    assert card.sha256 in readme and card.training_data[0][:40] in readme
    assert "## Validation" in readme and "## Metrics" in readme
    assert members["cover.png"][:8] == b"\x89PNG\r\n\x1a\n"
    for ref in [inp, *rdf["outputs"]]:
        assert ref["test_tensor"]["source"] in members


def test_fixed_and_tiled_sizes(package):
    name, _, _, rdf = package
    card = load_card(name)
    y_axis = rdf["inputs"][0]["axes"][2]
    if "patch_size" in card.parameters:
        assert y_axis["size"] == card.parameters["patch_size"]
    else:
        assert y_axis["size"]["min"] == y_axis["size"]["step"] > 0


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_test_tensors_reproduce_with_torchscript_and_build_network(package):
    name, _, members, rdf = package
    raw = np.load(io.BytesIO(members["test_input.npy"]))
    assert raw.dtype == np.float32 and raw.ndim == 4 and raw.shape[0] == 1
    assert raw.std() > 0  # a real sample, not a blank
    x = _preprocess(raw, rdf["inputs"][0]["preprocessing"][0])
    expected = [np.load(io.BytesIO(members[o["test_tensor"]["source"]])) for o in rdf["outputs"]]
    script = torch.jit.load(io.BytesIO(members["weights_torchscript.pt"]))
    for got_ts, got_sd, want in zip(
        _outputs(script, x), _outputs(build_network(name), x), expected, strict=True
    ):
        # float32 inference on the same CPU: the exporter's own test uses the same tolerance
        np.testing.assert_allclose(got_ts, want, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(got_sd, want, rtol=RTOL, atol=ATOL)
    assert np.abs(expected[0]).max() > 0


#: Loads a package's state-dict weights through its own architecture file, with every
#: import of cytolens refused, runs them on an input and saves the outputs.
_WITHOUT_CYTOLENS = """
import importlib.abc, importlib.util, io, sys, zipfile
import numpy as np, torch, yaml


class NoCytolens(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "cytolens":
            raise ImportError("cytolens is not installed here")


sys.meta_path.insert(0, NoCytolens())
zf = zipfile.ZipFile(sys.argv[1])
rdf = yaml.safe_load(zf.read("rdf.yaml"))
weights = rdf["weights"]["pytorch_state_dict"]
arch = weights["architecture"]
source = arch["source"].split("::")[0]
spec = importlib.util.spec_from_loader("arch", loader=None)
module = importlib.util.module_from_spec(spec)
exec(compile(zf.read(source), source, "exec"), module.__dict__)
net = getattr(module, arch["callable"])(**arch.get("kwargs", {}))
state = torch.load(io.BytesIO(zf.read(weights["source"])), map_location="cpu", weights_only=True)
net.load_state_dict(state)
with torch.inference_mode():
    y = net.eval()(torch.from_numpy(np.load(sys.argv[2])))
ys = y if isinstance(y, (tuple, list)) else (y,)
np.savez(sys.argv[3], *[t.numpy() for t in ys])
"""


def test_state_dict_weights_run_without_cytolens(package, tmp_path):
    """The architecture file is standalone: shared layers are inlined, not imported."""
    import subprocess
    import sys

    _, path, members, rdf = package
    raw = np.load(io.BytesIO(members["test_input.npy"]))
    x = _preprocess(raw, rdf["inputs"][0]["preprocessing"][0])
    np.save(tmp_path / "x.npy", x)
    script = tmp_path / "run.py"
    script.write_text(_WITHOUT_CYTOLENS)
    args = [str(path), str(tmp_path / "x.npy"), str(tmp_path / "y.npz")]
    proc = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    got = np.load(tmp_path / "y.npz")
    expected = [np.load(io.BytesIO(members[o["test_tensor"]["source"]])) for o in rdf["outputs"]]
    assert len(got.files) == len(expected)
    for k, want in enumerate(expected):  # the exporter's own tolerance
        np.testing.assert_allclose(got[f"arr_{k}"], want, rtol=RTOL, atol=ATOL)


def test_package_validates_with_bioimageio_spec(package):
    spec = pytest.importorskip("bioimageio.spec", reason="bioimageio.spec not installed")
    _, path, _, _ = package
    descr = spec.load_description(path, perform_io_checks=True)
    summary = descr.validation_summary
    errors = [e.msg for d in summary.details for e in d.errors]
    assert summary.status in ("passed", "valid-format"), errors


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_package_passes_bioimageio_core_test_model(package, request):
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("slow (about 10 s per model): run with -m slow")
    core = pytest.importorskip("bioimageio.core", reason="bioimageio.core not installed")
    _, path, _, _ = package
    summary = core.test_model(path)
    assert summary.status == "passed", [e.msg for d in summary.details for e in d.errors]


# --- a tiny model in a temporary root: the generic path and the failure modes ---


def _toy(tmp_path, *, network=True):
    net = __import__("cytolens.segment.network", fromlist=["UNet"]).UNet(1, 2, (4, 8))
    card = ModelCard(
        name="toy-v1",
        version="0.1.0",
        task="toy: two maps",
        architecture="UNet(1, 2, (4, 8))",
        input_axes="YX",
        network=(
            {"entry_point": "cytolens.segment.network:UNet", "kwargs": {"channels": [4, 8]}}
            if network
            else {}
        ),
        training_data=["none, see https://example.org/data"],
        training_command="-",
        normalization={"kind": "percentile", "pmin": 2.0, "pmax": 99.0},
        parameters={  # the segment contract (cytolens.models.schema.SegmentParameters)
            "diameter_px": 16.0,
            "fg_threshold": 0.5,
            "seed_threshold": 0.5,
            "min_size_px": 0.0,
            "tile_overlap": 4,
        },
    )
    save_model(net.state_dict(), card, root=tmp_path / "models")
    return tmp_path / "models"


def test_custom_test_input_and_root(tmp_path):
    root = _toy(tmp_path)
    image = np.random.default_rng(0).gamma(2, 100, (24, 40)).astype(np.uint16)
    out = export_bioimageio("toy-v1", tmp_path / "toy.zip", test_input=image, root=root)
    with zipfile.ZipFile(out) as zf:
        rdf = yaml.safe_load(zf.read("rdf.yaml"))
        raw = np.load(io.BytesIO(zf.read("test_input.npy")))
    np.testing.assert_array_equal(raw[0, 0], image.astype(np.float32))
    assert rdf["inputs"][0]["axes"][2]["size"] == {"min": 2, "step": 2}
    assert rdf["inputs"][0]["preprocessing"][0]["kwargs"]["min_percentile"] == 2.0
    assert rdf["cite"][-1]["url"] == "https://example.org/data"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_build_network_by_folder_and_missing_network(tmp_path):
    root = _toy(tmp_path)
    assert type(build_network(root / "toy-v1")).__name__ == "UNet"
    root = _toy(tmp_path / "b", network=False)
    with pytest.raises(ModelError, match="has no 'network' entry"):
        build_network("toy-v1", root=root)
    with pytest.raises(ModelError, match="has no 'network' entry"):
        export_bioimageio("toy-v1", tmp_path / "x.zip", root=root)


def test_bad_entry_point_is_named(tmp_path):
    root = _toy(tmp_path)
    card_path = root / "toy-v1" / "card.yaml"
    card = yaml.safe_load(card_path.read_text())
    card["network"]["entry_point"] = "cytolens.segment.network:Nope"
    card_path.write_text(yaml.safe_dump(card))
    with pytest.raises(ModelError, match=r"'cytolens\.segment\.network:Nope' cannot be imported"):
        build_network("toy-v1", root=root)


def test_bad_paths_names_and_inputs(tmp_path):
    root = _toy(tmp_path)
    with pytest.raises(ModelError, match="unknown model 'nope'; shipped models: toy-v1"):
        export_bioimageio("nope", tmp_path / "a.zip", root=root)
    (tmp_path / "folder.zip").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        export_bioimageio("toy-v1", tmp_path / "folder.zip", root=root)
    assert (tmp_path / "folder.zip").is_dir()  # left untouched
    with pytest.raises(InputError, match=r"ending in \.zip"):
        export_bioimageio("toy-v1", tmp_path / "a.tar", root=root)
    with pytest.raises(InputError, match="multiples of 2"):
        export_bioimageio("toy-v1", tmp_path / "a.zip", test_input=np.ones((9, 8)), root=root)
    with pytest.raises(InputError, match="expects axes 'YX'"):
        export_bioimageio("toy-v1", tmp_path / "a.zip", test_input=np.ones((2, 8, 8)), root=root)
    assert not (tmp_path / "a.zip").exists()


def test_failed_model_test_writes_nothing(tmp_path, monkeypatch):
    root = _toy(tmp_path)
    out = tmp_path / "toy.zip"
    out.write_bytes(b"previous")
    real_trace = torch.jit.trace

    def broken_trace(net, x, **kw):  # the traced network is off by 1e-3
        class Shifted(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = net

            def forward(self, t):
                return self.net(t) + 1e-3

        return real_trace(Shifted().eval(), x, **kw)

    monkeypatch.setattr(torch.jit, "trace", broken_trace)
    with pytest.raises(ModelError, match="torchscript output differs"):
        export_bioimageio("toy-v1", out, root=root)
    assert out.read_bytes() == b"previous"


def test_fixed_patch_model_rejects_other_sizes():
    with pytest.raises(InputError, match="takes 84x84 px"):
        bx._check_test_input(
            np.ones((64, 64)),
            load_card("focus-miq-v1"),
            bx._Layout(n_channels=1, fixed=True, side=84, step=84),
        )


def test_tolerances_respect_the_one_percent_rule():
    rows = bx._tolerances("m", ["a", "b", "c"], [np.full(3, 5.0), np.full(3, 0.02), -np.ones(3)])
    assert rows == [
        {"output_ids": ["a"], "relative_tolerance": 1e-3, "absolute_tolerance": 1e-3},
        {"output_ids": ["b"], "relative_tolerance": 1e-3, "absolute_tolerance": 2e-4},
    ]  # "c" (all negative) cannot satisfy atol <= 1% of its maximum: left to the runner
