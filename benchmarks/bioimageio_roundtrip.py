"""Benchmark: bioimage.io both ways (the round-trip part of issue 17's trust evaluation).

For every shipped model with a ``network`` entry: export it
(:func:`cytolens.models.bioimageio.export_bioimageio`), validate it with
``bioimageio.spec``, run ``bioimageio.core.test_model`` on it (the reference
tool), and run it back with :func:`cytolens.models.check_package` /
:func:`cytolens.models.run_package` (state-dict and torchscript weights),
comparing with cytolens' own network on the package's test input (max abs
difference). Then a third-party package: the CAREamics Noise2Void package of
``scripts/make_careamics_package.py`` (built first when absent): cytolens runs
its torchscript weights here, and its state-dict weights (architecture from the
careamics library) where CAREamics is importable, against its test tensors.

bioimageio.core and CAREamics cannot share cytolens' environment (pins on
torchvision and bioimageio.spec, see the script's docstring): they run in a
subprocess with ``build/careamics-env`` in front of the path. Run from the
repository root (about 2-4 minutes on 2 cores)::

    .venv/bin/python benchmarks/bioimageio_roundtrip.py

Writes ``benchmarks/results/bioimageio_roundtrip.json`` and ``.md``.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
import yaml

from cytolens.core.errors import ModelError
from cytolens.models import build_network, list_models, load_card
from cytolens.models.bioimageio import _normalize, export_bioimageio
from cytolens.models.runner import check_package, load_package
from harness import Benchmark

ROOT = Path(__file__).resolve().parents[1]
SIDE_ENV = ROOT / "build" / "careamics-env"
CAREAMICS = ROOT / "build" / "careamics"

#: Runs in the side environment: bioimageio.core's test of one package, as JSON.
_CORE_TEST = """
import json, sys
from bioimageio.core import test_model
s = test_model(sys.argv[1])
errors = [f"{'.'.join(map(str, e.loc))}: {e.msg}" for d in s.details for e in d.errors]
print(json.dumps({"status": s.status, "errors": errors[:3]}))
"""

#: Runs in the side environment: cytolens on CAREamics' state dict (careamics importable),
#: and on torchscript weights added by bioimageio.core's own converter.
_CAREAMICS_SIDE = """
import json, sys, tempfile
sys.path.insert(0, sys.argv[2])
import make_careamics_package as m
m._stub_torchvision()
from bioimageio.core.weight_converters import add_weights
from bioimageio.spec import load_model_description, save_bioimageio_package
from cytolens.models.runner import check_package
out = {}
r = check_package(sys.argv[1], device="cpu", weight_format="pytorch_state_dict")
out["state_dict"] = {"max_abs_diff": r.max_abs_diff, "passed": r.passed}
with tempfile.TemporaryDirectory() as tmp:
    d = add_weights(load_model_description(sys.argv[1]), output_path=tmp + "/pkg",
                    target_format="torchscript")
    z = save_bioimageio_package(d, output_path=tmp + "/conv.zip")
    r = check_package(z, device="cpu", weight_format="torchscript")
    out["core_converter_torchscript"] = {"max_abs_diff": r.max_abs_diff, "passed": r.passed}
print(json.dumps(out))
"""


def _side(code: str, *args: str, timeout: int = 900) -> dict | None:
    """Run ``code`` with the side environment first on the path; its last JSON line."""
    if not SIDE_ENV.is_dir():
        return None
    env = {**os.environ, "PYTHONPATH": str(SIDE_ENV), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _own_prediction_diff(name: str, path: Path, fmt: str) -> float:
    """Max abs diff: run_package on the raw test image vs cytolens' own network."""
    with zipfile.ZipFile(path) as zf:
        raw = np.load(io.BytesIO(zf.read("test_input.npy")))[0]
        rdf = yaml.safe_load(zf.read("rdf.yaml"))
    model = load_package(path, device="cpu", weight_format=fmt)
    got = model.predict(raw, axes="CYX")
    x = _normalize(raw[None], load_card(name), raw.shape[0])
    with torch.inference_mode():
        want = build_network(name)(torch.from_numpy(x))
    wants = want if isinstance(want, (tuple, list)) else (want,)
    return max(
        float(np.abs(got[o["id"]] - w[0].numpy()).max())
        for o, w in zip(rdf["outputs"], wants, strict=True)
    )


def main() -> None:
    torch.set_num_threads(2)
    bench = Benchmark(
        "bioimageio_roundtrip",
        "Export -> bioimageio.core test -> `cytolens models run` for every shipped model; "
        "a CAREamics package run by cytolens against its own test tensors.",
    )
    import bioimageio.spec as spec

    rows = []
    work = Path(tempfile.mkdtemp(prefix="bmz-roundtrip-"))
    not_exported = []
    for name in [n for n in list_models() if load_card(n).network]:
        try:
            path = export_bioimageio(name, work / f"{name}.zip")
        except ModelError as exc:  # a 3-D model, or a hybrid head (mitocheck-v1): refused
            bench.set(f"bioimageio.{name}.exported", False)
            bench.set(f"bioimageio.{name}.export_refused", str(exc))
            not_exported.append({"model": name, "export refused": str(exc)})
            continue
        summary = spec.load_description(path, perform_io_checks=True).validation_summary
        core = _side(_CORE_TEST, str(path))
        row = {
            "model": name,
            "spec_status": summary.status,
            "core_status": None if core is None else core.get("status", core.get("error")),
        }
        bench.set(f"bioimageio.{name}.spec_status", summary.status)
        bench.set(
            f"bioimageio.{name}.core_test_passed",
            None if core is None else core.get("status") == "passed",
        )
        if core and core.get("errors"):
            bench.set(f"bioimageio.{name}.core_errors", core["errors"])
        for fmt in ("pytorch_state_dict", "torchscript"):
            t0 = time.perf_counter()
            check = check_package(path, device="cpu", weight_format=fmt)
            seconds = time.perf_counter() - t0
            own = _own_prediction_diff(name, path, fmt)
            key = f"bioimageio.{name}.run.{fmt}"
            bench.set(f"{key}.test_max_abs_diff", check.max_abs_diff)
            bench.set(f"{key}.test_passed", check.passed)
            bench.set(f"{key}.own_prediction_max_abs_diff", own)
            bench.set(f"{key}.check_s", round(seconds, 3))
            row[f"{fmt} test diff"] = check.max_abs_diff
            row[f"{fmt} vs own net"] = own
        worst = max(row["pytorch_state_dict vs own net"], row["torchscript vs own net"])
        bench.set(f"bioimageio.{name}.run_max_abs_diff", worst)
        rows.append(row)
    bench.table("Shipped models: export, reference test, run back by cytolens", rows)
    if not_exported:
        bench.table("Shipped models the exporter refuses", not_exported)

    # --- third party: CAREamics ---
    ts_zip, raw_zip = CAREAMICS / "careamics-n2v-torchscript.zip", CAREAMICS / "careamics-n2v.zip"
    built = None
    if not ts_zip.is_file() and SIDE_ENV.is_dir():
        proc = subprocess.run(
            [sys.executable, "scripts/make_careamics_package.py", "--out", str(CAREAMICS)],
            capture_output=True,
            text=True,
            timeout=1800,
            env={**os.environ, "PYTHONPATH": str(SIDE_ENV), "CUDA_VISIBLE_DEVICES": ""},
            cwd=ROOT,
        )
        built = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
    if ts_zip.is_file():
        check = check_package(ts_zip, device="cpu", weight_format="torchscript")
        bench.set("third_party.package", "CAREamics 0.3.5 Noise2Void (careamics-n2v)")
        bench.set("third_party.reproduces_test_output", check.passed)
        bench.set("third_party.torchscript.max_abs_diff", check.max_abs_diff)
        bench.set("third_party.torchscript.tolerance", check.tolerances)
        side = _side(_CAREAMICS_SIDE, str(raw_zip), str(ROOT / "scripts"))
        if side is not None:
            bench.set("third_party.state_dict", side.get("state_dict", side))
            bench.set(
                "third_party.core_converter_torchscript", side.get("core_converter_torchscript")
            )
        if built is not None:
            bench.set("third_party.built", built)
        third = [
            {
                "weights": "torchscript (traced in eval mode by the build script)",
                "where": "cytolens env",
                "max abs diff": check.max_abs_diff,
                "passed": check.passed,
            }
        ]
        if side is not None and "state_dict" in side:
            third.append(
                {
                    "weights": "pytorch_state_dict (careamics.models.unet)",
                    "where": "side env (careamics importable)",
                    "max abs diff": side["state_dict"]["max_abs_diff"],
                    "passed": side["state_dict"]["passed"],
                }
            )
            conv = side["core_converter_torchscript"]
            third.append(
                {
                    "weights": "torchscript from bioimageio.core 0.11 add_weights",
                    "where": "side env",
                    "max abs diff": conv["max_abs_diff"],
                    "passed": conv["passed"],
                }
            )
        bench.table("Third-party package (CAREamics) run by cytolens vs its test tensors", third)
        bench.text(
            "bioimageio.core 0.11's `add_weights` traces the state-dict network without "
            "switching it to eval mode, so CAREamics' batch-norm layers run with batch "
            "statistics in the converted torchscript; cytolens' check flags it (last row). "
            "The build script therefore traces the network itself, in eval mode."
        )
    else:
        bench.set("third_party.reproduces_test_output", None)
        bench.text(
            f"No CAREamics package: {ts_zip} is absent and could not be built "
            f"(side environment {SIDE_ENV} missing)."
        )
    bench.text(
        "bioimageio.core 0.11.0 and CAREamics 0.3.5 run in a subprocess with "
        "`build/careamics-env` first on the path (bioimageio.spec 0.5.12.0 there; cytolens' "
        f"environment has bioimageio.spec {spec.__version__}). `test diff`: cytolens' "
        "output on the package's test input vs its test output; `vs own net`: vs cytolens' "
        "own network on the same input, normalized as the card says."
    )
    bench.write()


if __name__ == "__main__":
    main()
