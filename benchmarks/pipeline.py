"""The pipeline runner against a plain Python loop: throughput, overhead, resume, streaming.

Run: ``python benchmarks/pipeline.py [--n 96]`` (about 6 minutes on 2 CPU cores
with the default 96 images and 8 volumes; ``--n 532`` takes every DSB2018 image). Writes
``benchmarks/results/pipeline.json`` and ``pipeline.md``.

Workloads: DSB2018 fluorescence images (``../shared/data/segmentation/dsb2018``)
through focus rating -> nuclei segmentation (the default model) -> measurement;
and 3-D deconvolution of several volumes (``decon3d``: the real flowdec
``bars-25pct`` observation tiled to 64 x 192 x 192 voxels, each volume with its
own Poisson noise, deconvolved with its real PSF by ``restore.deconvolve``).

- ``throughput.loop``: a plain Python loop, one image after the other,
  calling the same functions (each step's ``run``: the focus rating, nuclei
  and their applicability scores, the measurements) and writing the same
  outputs (images as OME-Zarr, one CSV per table), torch on 1 thread;
- ``throughput.in_process``: :func:`cytolens.pipeline.run_pipeline` without Dask;
- ``throughput.workers_1`` / ``workers_2``: on a dask.distributed LocalCluster
  of 1 or 2 worker processes x 1 thread (cluster start-up measured apart and
  left out of the throughput); peak resident memory per worker sampled every
  50 ms. The ratio to the loop is the runner's overhead (journal,
  provenance with input sha256, scheduling, atomic writes).
- Resume: ``cytolens run`` in a subprocess is killed with SIGKILL once about
  half the items are journaled, then rerun; recomputed items (journaled
  before the kill, computed again) and differences from an uninterrupted run
  (nuclei table and every label image) are counted.
- Streaming: images are copied into a watched folder at fixed rates by a
  thread while :func:`cytolens.pipeline.watch.watch` (in process) runs; the
  sustained throughput, the latency from a file's arrival to its results
  (median, 95th percentile) and whether the queue stays bounded (the number
  of files waiting or in flight at the end is no more than at mid-run + 2).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from cytolens.pipeline import make_steps, run_pipeline
from cytolens.pipeline.watch import watch
from harness import Benchmark

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "segmentation" / "dsb2018" / "images"
SPECS = [("focus.rate", {}), ("segment.nuclei", {}), ("segment.measure", {})]


def plain_loop(files: list[Path], out: Path, specs: list[tuple[str, dict]]) -> float:
    """The same work as the pipeline, written as a user would, one image after the other."""
    import torch

    from cytolens.io import imread, imwrite
    from cytolens.pipeline import Item

    torch.set_num_threads(1)
    steps = make_steps(specs)
    t0 = time.perf_counter()
    for f in files:
        item = Item(f, f.stem, imread(f))
        for step in steps:
            step.run(item)
        for kind, image in item.images.items():
            data = np.asarray(image.data)
            if kind == "labels":
                data = data.astype(np.uint16 if data.max() < 2**16 else np.uint32)
            size = image.pixel_size_um or None
            imwrite(out / kind / f"{f.stem}.ome.zarr", data, axes=image.axes, pixel_size_um=size)
        for name, table in item.tables.items():
            (out / name).mkdir(parents=True, exist_ok=True)
            table.to_csv(out / name / f"{f.stem}.csv", index=False)
    return time.perf_counter() - t0


class WorkerMemory:
    """Peak RSS of each child process (the dask workers) while running."""

    def __init__(self) -> None:
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()

    def __enter__(self) -> WorkerMemory:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            for child in me.children(recursive=True):
                try:
                    self.peaks[child.pid] = max(
                        self.peaks.get(child.pid, 0), child.memory_info().rss
                    )
                except psutil.Error:
                    pass
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def timed_run(
    files: list[Path], out: Path, workers: int | None, specs: list[tuple[str, dict]]
) -> dict[str, float]:
    """Run the pipeline; the items' wall time and the cluster start-up apart."""
    from distributed import LocalCluster

    startup = 0.0
    if workers:  # measure the cluster start-up alone, so throughput is about the items
        t0 = time.perf_counter()
        with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None):
            pass
        startup = time.perf_counter() - t0
    with WorkerMemory() as mem:
        t0 = time.perf_counter()
        res = run_pipeline(files, make_steps(specs), out, workers=workers, progress=False)
        total = time.perf_counter() - t0
    assert all(r["status"] == "done" for r in res.records), "an item failed"
    peak = max(mem.peaks.values(), default=0) / 2**20
    return {"seconds": total, "startup_s": startup, "peak_worker_mb": peak}


def resume_check(files: list[Path], tmp: Path) -> dict[str, object]:
    """SIGKILL a real run at about half, rerun, compare with an uninterrupted run."""
    folder = tmp / "resume_in"
    folder.mkdir()
    for f in files:
        shutil.copy(f, folder / f.name)
    yaml = "inputs: [resume_in]\nsteps:\n" + "".join(
        f"  - {name}: {json.dumps(params)}\n" for name, params in SPECS
    )
    (tmp / "p.yaml").write_text(yaml)
    cmd = [sys.executable, "-m", "cytolens", "run", "p.yaml", "--json"]
    proc = subprocess.Popen([*cmd, "--out", "killed"], cwd=tmp, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    journal = tmp / "killed" / "journal.jsonl"
    half = len(files) // 2
    while proc.poll() is None:
        if journal.is_file() and journal.read_text().count("\n") >= half:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = journal.read_text().count("\n")
    temps = [str(p) for p in (tmp / "killed").rglob(".*") if ".tmp" in p.name]
    rerun = json.loads(subprocess.run([*cmd, "--out", "killed"], cwd=tmp, capture_output=True,
                                      text=True, check=True).stdout)  # fmt: skip
    whole = json.loads(subprocess.run([*cmd, "--out", "whole"], cwd=tmp, capture_output=True,
                                      text=True, check=True).stdout)  # fmt: skip
    computed_again = rerun["done"] - rerun["reused"]
    recomputed = computed_again - (len(files) - finished)
    a, b = tmp / "killed", tmp / "whole"
    same_table = pd.read_csv(a / "nuclei.csv").equals(pd.read_csv(b / "nuclei.csv"))
    from cytolens.io import imread

    def pixels(path: Path) -> np.ndarray:
        return np.asarray(imread(path).data)

    diffs = sum(
        not np.array_equal(pixels(p), pixels(b / "labels" / p.name))
        for p in sorted((a / "labels").iterdir())
    )
    return {
        "items": len(files),
        "journaled_before_kill": finished,
        "temporaries_after_kill": len(temps),
        "computed_on_rerun": computed_again,
        "recomputed": recomputed,
        "label_images_different": diffs,
        "identical": bool(same_table and diffs == 0 and whole["done"] == len(files)),
    }


def streaming(files: list[Path], tmp: Path, rate: float) -> dict[str, object]:
    """Copy ``files`` into a watched folder at ``rate`` per second; watch in this process."""
    folder, out = tmp / f"acq_{rate}", tmp / f"watch_{rate}"
    folder.mkdir()
    queue: list[int] = []

    def feed() -> None:
        for f in files:
            shutil.copy(f, folder / f.name)
            time.sleep(1.0 / rate)

    thread = threading.Thread(target=feed)
    t0 = time.perf_counter()
    thread.start()
    res, st = watch(
        folder, make_steps(SPECS), out, settle_s=0.3, poll_s=0.05, max_items=len(files),
        status=lambda s: queue.append(s.waiting + s.in_flight),
    )  # fmt: skip
    thread.join()
    seconds = time.perf_counter() - t0
    lat = np.array(st.latencies_s)
    mid = queue[len(queue) // 2] if queue else 0
    feeding = queue[: max(1, int(len(queue) * 0.9))]  # before the last files arrived
    return {
        "rate_in": rate,
        "items": len(res.records),
        "throughput": round(len(res.records) / seconds, 3),
        "latency_median_s": round(float(np.median(lat)), 3),
        "latency_p95_s": round(float(np.percentile(lat, 95)), 3),
        "queue_max": max(queue, default=0),
        "queue_mid": mid,
        "queue_bounded": bool(max(feeding[-5:], default=0) <= mid + 2),
    }


def throughput(
    bench: Benchmark, key: str, files: list[Path], specs: list[tuple[str, dict]], tmp: Path
) -> list[dict[str, object]]:
    """Loop, in process, 1 and 2 workers on ``files``; results under ``key`` (``""``: top level)."""
    pre = f"{key}." if key else ""
    # warm-up: imports, model loading and caches, so the first mode is not penalized
    run_pipeline(files[:2], make_steps(specs), tmp / f"{key}warm", progress=False)
    loop_s = plain_loop(files, tmp / f"{key}loop", specs)
    runs = {"in_process": timed_run(files, tmp / f"{key}in_process", None, specs)}
    runs["workers_1"] = timed_run(files, tmp / f"{key}w1", 1, specs)
    runs["workers_2"] = timed_run(files, tmp / f"{key}w2", 2, specs)
    n = len(files)
    bench.set(f"{pre}items", n)
    bench.set(f"{pre}throughput.loop", round(n / loop_s, 3))
    rows = [{"mode": "plain loop", "items/s": n / loop_s, "seconds": loop_s,
             "cluster start-up s": None, "peak MB per worker": None}]  # fmt: skip
    for mode, r in runs.items():
        items_s = r["seconds"] - r["startup_s"]
        bench.set(f"{pre}throughput.{mode}", round(n / items_s, 3))
        bench.set(f"{pre}seconds.{mode}", round(r["seconds"], 2))
        bench.set(f"{pre}cluster_startup_s.{mode}", round(r["startup_s"], 2))
        bench.set(f"{pre}peak_worker_mb.{mode}", round(r["peak_worker_mb"], 1))
        rows.append({"mode": mode, "items/s": n / items_s, "seconds": r["seconds"],
                     "cluster start-up s": r["startup_s"],
                     "peak MB per worker": r["peak_worker_mb"]})  # fmt: skip
    w1 = (runs["workers_1"]["seconds"] - runs["workers_1"]["startup_s"]) / n
    bench.set(f"{pre}overhead_per_task_s", round(w1 - loop_s / n, 4))
    bench.set(f"{pre}ratio.workers_1_vs_loop", round(loop_s / n / w1, 3))
    w2 = (runs["workers_2"]["seconds"] - runs["workers_2"]["startup_s"]) / n
    bench.set(f"{pre}ratio.workers_2_vs_workers_1", round(w1 / w2, 3))
    return rows


def decon_volumes(folder: Path, n: int) -> tuple[list[Path], Path]:
    """``n`` volumes of 64 x 192 x 192 voxels from the real bars observation, and its PSF."""
    from cytolens.io import imread, imwrite

    bars = ROOT.parent / "shared" / "data" / "deconvolution" / "flowdec" / "bars-25pct"
    observed = np.clip(np.asarray(imread(bars / "data.tif").data, np.float32), 0, None)
    big = np.tile(observed, (2, 3, 3))
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    files = []
    for i in range(n):
        path = folder / f"volume_{i:02d}.tif"
        imwrite(path, rng.poisson(big).astype(np.float32), axes="ZYX")
        files.append(path)
    return files, bars / "kernel.tif"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=96, help="DSB2018 images (532 = all)")
    parser.add_argument("--volumes", type=int, default=8, help="3-D deconvolution volumes")
    parser.add_argument("--rates", default="1,2", help="streaming rates, images/s")
    args = parser.parse_args()
    files = sorted(DATA.glob("*.png"))[: args.n]
    bench = Benchmark("pipeline", description=__doc__.split("\n\n")[1].replace("\n", " "))
    tmp = Path(tempfile.mkdtemp(prefix="cytolens-pipeline-"))
    try:
        n = len(files)
        bench.set("images", n)
        rows = throughput(bench, "", files, SPECS, tmp)
        bench.table(f"Throughput on {n} DSB2018 images (focus -> nuclei -> measure)", rows)
        volumes, psf = decon_volumes(tmp / "volumes", args.volumes)
        specs = [("restore.deconvolve", {"psf": str(psf)})]
        rows = throughput(bench, "decon3d", volumes, specs, tmp)
        bench.table(
            f"Throughput on {len(volumes)} volumes of 64 x 192 x 192 voxels (restore.deconvolve)",
            rows,
        )
        resume = resume_check(files[: min(n, 24)], tmp)
        for key, value in resume.items():
            bench.set(f"resume.{key}", value)
        bench.table("Resume after SIGKILL", [resume])
        stream_rows = []
        for rate in (float(r) for r in args.rates.split(",")):
            row = streaming(files[: min(n, 30)], tmp, rate)
            stream_rows.append(row)
        best = max(
            (r for r in stream_rows if r["queue_bounded"]), key=lambda r: r["rate_in"],
            default=stream_rows[-1],
        )  # fmt: skip
        for key in ("rate_in", "throughput", "latency_median_s", "latency_p95_s",
                    "queue_bounded"):  # fmt: skip
            bench.set(f"watch.{key}", best[key])
        bench.set("watch.runs", stream_rows)
        bench.table("Streaming into a watched folder", stream_rows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    bench.write()


if __name__ == "__main__":
    main()
