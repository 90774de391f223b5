"""The runner on real DSB2018 images: outputs, provenance, resume, failures, YAML, a cluster."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

from cytolens.core.errors import InputError, OutputError
from cytolens.pipeline import load_pipeline, make_steps, run_pipeline

STEPS = [("segment.nuclei", {"method": "classical"}), ("segment.measure", {})]


@pytest.fixture
def images(shared_data, tmp_path_factory) -> Path:
    """Four real DSB2018 fluorescence images, copied so tests may change them."""
    src = sorted((shared_data / "segmentation/dsb2018/images").glob("*.png"))[:4]
    folder = tmp_path_factory.mktemp("dsb")
    for p in src:
        shutil.copy(p, folder / p.name)
    return folder


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cytolens", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_run_writes_tables_labels_provenance_and_crate(images, tmp_path):
    out = tmp_path / "run"
    res = run_pipeline([images], make_steps(STEPS), out, progress=False)
    assert [r["status"] for r in res.records] == ["done"] * 4
    items = pd.read_csv(out / "items.csv")
    nuclei = pd.read_csv(out / "nuclei.csv")
    assert len(nuclei) == items["nuclei"].sum() > 20
    # the same table as Parquet, with the CSV's values
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "nuclei.parquet"), nuclei, check_dtype=False
    )
    assert set(nuclei["image"]) == set(items["name"])
    first = res.records[0]
    labels = out / first["outputs"][0]
    attrs = dict(zarr.open_group(str(labels), mode="r").attrs)["cytolens"]
    source = images / f"{first['name']}.png"
    from cytolens.core.files import sha256

    assert attrs["input_sha256"] == sha256(source)
    assert [s["step"] for s in attrs["steps"]] == ["segment.nuclei", "segment.measure"]
    from cytolens.io import imread

    stored = np.asarray(imread(labels).data)
    assert stored.dtype == np.uint8 or stored.dtype == np.uint16  # smallest type that fits
    assert stored.max() == items.loc[items["name"] == first["name"], "nuclei"].item()
    from rocrate.rocrate import ROCrate

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a crate the reader warns about is not well formed
        crate = ROCrate(out)
    ids = {e.id for e in crate.get_entities()}
    assert {"nuclei.csv", "items.csv", "report.html", first["outputs"][0]} <= ids
    assert source.resolve().as_uri() in ids


def test_rerun_resumes_and_matches_an_uninterrupted_run(images, tmp_path):
    files = sorted(images.glob("*.png"))
    out = tmp_path / "run"
    run_pipeline(files[:2], make_steps(STEPS), out, progress=False)
    res = run_pipeline(files, make_steps(STEPS), out, progress=False)
    assert (res.reused, res.computed) == (2, 2)
    fresh = run_pipeline(files, make_steps(STEPS), tmp_path / "fresh", progress=False)
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "nuclei.csv"), pd.read_csv(fresh.out / "nuclei.csv")
    )
    # a changed input is redone, the others are not
    other = files[0].read_bytes()
    files[0].write_bytes(files[1].read_bytes())
    try:
        res = run_pipeline(files, make_steps(STEPS), out, progress=False)
        assert (res.reused, res.computed) == (3, 1)
    finally:
        files[0].write_bytes(other)


def test_sigkill_mid_run_then_resume(images, tmp_path):
    """A real SIGKILL of the process mid-run: no partial output, the rerun redoes only the rest."""
    for k in range(4):  # eight inputs, so the kill lands mid-run
        shutil.copy(sorted(images.glob("*.png"))[k], tmp_path / f"copy{k}.png")
    inputs = [str(images), str(tmp_path / "copy*.png")]
    yaml_text = f"inputs: {json.dumps(inputs)}\nsteps:\n  - segment.nuclei: {{}}\n"
    (tmp_path / "p.yaml").write_text(yaml_text)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cytolens", "run", "p.yaml", "--out", "o"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    journal = tmp_path / "o" / "journal.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if journal.is_file() and journal.read_text().count("\n") >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = journal.read_text().count("\n")
    assert 2 <= finished < 8, "the kill did not land mid-run"
    temps = [p for p in (tmp_path / "o").rglob(".*") if ".tmp" in p.name]
    assert temps == []  # nothing half-written under any name that counts
    done = _cli("run", "p.yaml", "--out", "o", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["reused"] == finished and summary["done"] == 8


def test_bad_input_fails_alone(images, tmp_path):
    folder = tmp_path / "in"
    shutil.copytree(images, folder)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "p.yaml").write_text("inputs: [in]\nsteps: [segment.nuclei, segment.measure]\n")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    proc = _cli("run", "p.yaml", "--out", "o", cwd=tmp_path)
    assert proc.returncode == 1
    assert "broken.png" in proc.stderr and "1 of 5 input(s) failed" in proc.stderr
    items = pd.read_csv(tmp_path / "o" / "items.csv")
    assert sorted(items["status"]) == ["done"] * 4 + ["failed"]
    failures = pd.read_csv(tmp_path / "o" / "failures.csv")
    assert failures["item"].str.endswith("broken.png").all()
    assert "broken.png" in (tmp_path / "o" / "report.html").read_text()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_output_folder_policy(images, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    with pytest.raises(OutputError, match="already holds 1 file"):
        run_pipeline([images], make_steps(STEPS), out, progress=False)
    with pytest.raises(OutputError, match="holds the input"):
        run_pipeline([images], make_steps(STEPS), images, overwrite=True, progress=False)
    out2 = tmp_path / "run2"
    first = run_pipeline([images], make_steps(STEPS), out2, progress=False)
    other = make_steps([("segment.nuclei", {"method": "classical", "diameter": 12.0})])
    with pytest.raises(OutputError, match="another pipeline"):
        run_pipeline([images], other, out2, progress=False)
    one = sorted(images.glob("*.png"))[:1]
    run_pipeline(one, other, out2, overwrite=True, progress=False)
    # the earlier run's outputs are removed, not left mixed with the new ones
    left = sorted(p.name for p in (out2 / "labels").iterdir())
    assert left == [f"{one[0].stem}.ome.zarr"]
    assert not (out2 / "nuclei.csv").exists()
    assert not (out2 / "nuclei.parquet").exists()
    assert len(first.records) == 4


def test_yaml_errors_name_line_and_key(tmp_path):
    head = "inputs: [a]\nsteps:\n  - "
    cases = {
        head + "segment.nucle\n": r"p\.yaml line 3, unknown step 'segment.nucle'",
        head + "segment.nuclei: {diam: 3}\n": r"line 3, step segment.nuclei: diam",
        head + "segment.measure\n": r"line 3, step segment.measure needs labels",
        head + "segment.nuclei: {diameter: -1}\n": r"diameter: Input should be greater",
        "inputs: [a]\nstep: []\n": r"line 2: unknown key 'step'",
        "inputs: [a\n": r"p\.yaml line \d+: not valid YAML",
        "steps: [focus.rate]\n": r"missing 'inputs'",
    }
    for text, message in cases.items():
        (tmp_path / "p.yaml").write_text(text)
        with pytest.raises(InputError, match=message):
            load_pipeline(tmp_path / "p.yaml")


def test_cli_yaml_error_is_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "p.yaml").write_text("inputs: [x]\nsteps:\n  - focus.rat\n")
    proc = _cli("run", "p.yaml", "--out", "o", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: p.yaml line 3, unknown step 'focus.rat'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.yaml"]


def test_local_dask_cluster_gives_the_same_results(images, tmp_path):
    files = sorted(images.glob("*.png"))[:2]
    local = run_pipeline(files, make_steps(STEPS), tmp_path / "local", progress=False)
    dist = run_pipeline(files, make_steps(STEPS), tmp_path / "dist", workers=2, progress=False)
    assert [r["status"] for r in dist.records] == ["done", "done"]
    pd.testing.assert_frame_equal(
        pd.read_csv(local.out / "nuclei.csv"), pd.read_csv(dist.out / "nuclei.csv")
    )


def test_local_workers_keep_glibc_malloc_thresholds(monkeypatch):
    # Dask's nanny sets MALLOC_TRIM_THRESHOLD_, which made the torch steps 1.6x slower; an
    # earlier cluster's nanny leaves it in this process's environment (as set here)
    from cytolens.pipeline.runner import Executor

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    with Executor(1, 1, None, "auto") as executor:
        env = executor._client.run(lambda: dict(os.environ))
    (worker_env,) = env.values()
    assert "MALLOC_TRIM_THRESHOLD_" not in worker_env
    assert worker_env["OMP_NUM_THREADS"] == "1"  # Dask's other settings are kept


def test_unreachable_scheduler(images, tmp_path):
    with pytest.raises(InputError, match=r"--scheduler tcp://127\.0\.0\.1:9: cannot connect"):
        run_pipeline(
            [images], make_steps(STEPS), tmp_path / "o", scheduler="tcp://127.0.0.1:9",
            progress=False,
        )  # fmt: skip


def test_cli_bad_options_are_one_line_before_any_work(tmp_path):
    (tmp_path / "p.yaml").write_text("inputs: [x.png]\nsteps: [segment.nuclei]\n")
    for args, option in (
        (["--workers", "0"], "--workers"),
        (["--memory-limit", "lots"], "--memory-limit"),
    ):
        proc = _cli("run", "p.yaml", "--out", "o", *args, cwd=tmp_path)
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and option in lines[0], proc.stderr
    proc = _cli("watch", "nowhere", "-p", "p.yaml", "--out", "o", cwd=tmp_path)
    assert proc.returncode == 2 and "nowhere: no such folder to watch" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.yaml"]


def test_yaml_psf_is_relative_to_the_yaml_folder(tmp_path, monkeypatch):
    from cytolens import data

    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copy(data.sample_path("bead_psf.tif"), folder / "psf.tif")
    (folder / "p.yaml").write_text(
        "inputs: [in]\nsteps:\n  - restore.deconvolve: {psf: psf.tif}\n"
        "  - segment.nuclei: {model: nuclei-v2}\n"
    )
    monkeypatch.chdir(tmp_path)  # not the YAML's folder
    steps = load_pipeline(folder / "p.yaml").steps
    assert steps[0].params.psf == str(folder / "psf.tif")
    assert steps[1].params.model == "nuclei-v2"  # a shipped name stays a name
