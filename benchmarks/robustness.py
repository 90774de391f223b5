"""Bad input through the whole command line: clear errors, no tracebacks, no data loss.

Run: ``python benchmarks/robustness.py`` (a few minutes on 2 CPU cores). Writes
``benchmarks/results/robustness.json`` and ``robustness.md``.

Every case of the catalogue in ``benchmarks/robustness_cases/`` (one module
per area; the format is documented there) runs ``cytolens ...`` in a
subprocess, in a fresh folder, and is scored on its outcome:

- clear error: the expected exit code, no traceback, and a stderr line that
  names the file, option or value (the case's regex);
- traceback: "Traceback (most recent call last)" on stderr;
- silent wrong: the command succeeded where it should have refused, or its
  result fails the case's check, or it failed with an unclear message;
- data loss: a file the case set up (an input, or an unrelated file) was
  changed or removed;
- partial files: a temporary (``.*.tmp*``) or, after an error, any new
  file left behind.

``--against REF`` runs the same catalogue on the package source of a git
revision too (a temporary worktree on ``PYTHONPATH``), side by side in the
same run, so the change is measured against what it replaces.

Then the peak resident memory of 2D chunked deconvolution of a
12000x12000 uint16 image (the whole process tree of the command, sampled
every 20 ms) against the image's size.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from harness import Benchmark
from robustness_cases import Case

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SAMPLES = ROOT / "src" / "cytolens" / "data" / "samples"
AREAS = ("core", "restore", "focus_classify", "segment_track", "detect")
TEMP = re.compile(r"^\..*\.tmp(\.|$)")
OUTCOMES = ("clear_error", "ok", "traceback", "silent_wrong", "data_loss", "partial_files")


def load_cases(only: str | None = None) -> list[tuple[str, Case]]:
    """Every case of every area module that exists, as ``(area, case)``."""
    sys.path.insert(0, str(Path(__file__).parent))
    cases = []
    for area in AREAS:
        try:
            module = importlib.import_module(f"robustness_cases.{area}")
        except ModuleNotFoundError:
            continue
        cases += [
            (area, c) for c in module.CASES if only is None or re.search(only, f"{area}/{c.name}")
        ]
    return cases


def _snapshot(folder: Path) -> dict[str, str]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _fill(arg: str, tmp: Path) -> str:
    return arg.format(tmp=tmp, data=DATA, samples=SAMPLES)


def run_case(case: Case, command: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run one case in a fresh folder; return its outcome and evidence."""
    tmp = Path(tempfile.mkdtemp(prefix="cytolens-robust-"))
    try:
        if case.setup is not None:
            case.setup(tmp)
        before = _snapshot(tmp)
        argv = [_fill(a, tmp) for a in case.argv]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                [*command, *argv],
                cwd=tmp,
                env=env,
                capture_output=True,
                text=True,
                timeout=case.timeout,
            )
        except subprocess.TimeoutExpired:
            return {"outcome": "silent_wrong", "why": f"no answer after {case.timeout} s"}
        seconds = time.perf_counter() - t0
        after = _snapshot(tmp)
        stderr = proc.stderr.strip()
        last = stderr.splitlines()[-1] if stderr else ""
        lost = [f for f, h in before.items() if after.get(f) != h]
        new = [f for f in after if f not in before]
        temps = [f for f in new if any(TEMP.match(part) for part in Path(f).parts)]
        want = case.exit_code
        if want is None:
            want = 2 if case.expect == "error" else 0
        evidence = {"exit": proc.returncode, "stderr": last[:300], "seconds": round(seconds, 2)}
        if "Traceback (most recent call last)" in stderr:
            return {**evidence, "outcome": "traceback"}
        if lost:
            return {**evidence, "outcome": "data_loss", "why": f"changed or removed: {lost[:3]}"}
        if temps:
            return {**evidence, "outcome": "partial_files", "why": f"left: {temps[:3]}"}
        if case.expect == "error":
            left = [f for f in new if not any(Path(f).match(g) for g in case.allow_outputs)]
            if proc.returncode == 0:
                return {**evidence, "outcome": "silent_wrong", "why": "exit 0, expected an error"}
            if left:
                return {**evidence, "outcome": "partial_files", "why": f"error left {left[:3]}"}
            if proc.returncode != want or not re.search(case.message or ".", stderr):
                why = f"exit {proc.returncode} (want {want}); message not matching {case.message!r}"
                return {**evidence, "outcome": "silent_wrong", "why": why}
            return {**evidence, "outcome": "clear_error"}
        if proc.returncode != want:
            why = f"exit {proc.returncode}, want {want}"
            return {**evidence, "outcome": "silent_wrong", "why": why}
        problem = case.check(tmp, proc) if case.check is not None else None
        if problem:
            return {**evidence, "outcome": "silent_wrong", "why": problem}
        return {**evidence, "outcome": "ok"}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_catalogue(
    cases: list[tuple[str, Case]], command: list[str], env: dict[str, str], label: str
) -> list[dict[str, Any]]:
    rows = []
    for k, (area, case) in enumerate(cases, 1):
        if case.needs_data and not DATA.is_dir():
            rows.append({"area": area, "case": case.name, "outcome": "skipped"})
            continue
        res = run_case(case, command, env)
        rows.append({"area": area, "case": case.name, **res})
        print(f"[{label} {k}/{len(cases)}] {res['outcome']:<13} {case.name}", flush=True)
    return rows


def _counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts = {o: sum(r["outcome"] == o for r in rows) for o in OUTCOMES}
    counts["cases"] = sum(r["outcome"] != "skipped" for r in rows)
    return counts


def peak_rss(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, float, int]:
    """Run a command; return (exit code, seconds, peak RSS in bytes of its process tree)."""
    t0 = time.perf_counter()
    proc = psutil.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            try:
                procs = [proc, *proc.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    _, err = proc.communicate()
    stop.set()
    thread.join()
    if proc.returncode:
        print(err.decode()[-2000:], file=sys.stderr)
    return proc.returncode, time.perf_counter() - t0, peak


def _worktree(ref: str) -> tuple[Path, str]:
    where = Path(tempfile.mkdtemp(prefix="cytolens-ref-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(where), ref], cwd=ROOT, check=True,
                   capture_output=True)  # fmt: skip
    sha = subprocess.run(["git", "rev-parse", "--short", ref], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.strip()  # fmt: skip
    return where, sha


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", help="also run the catalogue on this git revision")
    parser.add_argument("--only", help="regex on AREA/NAME: run only the matching cases")
    parser.add_argument("--no-memory", action="store_true", help="skip the deconvolution RSS")
    args = parser.parse_args()

    bench = Benchmark("robustness", description=__doc__.split("\n\n")[1].replace("\n", " "))
    cases = load_cases(args.only)
    # the entry point as the installed `cytolens` script calls it (older trees lack __main__)
    command = [sys.executable, "-c", "import sys; from cytolens.cli import main; main()"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "200"}
    rows = run_catalogue(cases, command, env, "now")
    counts = _counts(rows)
    for key, value in counts.items():
        bench.set(key, value)
    bench.set("by_area", {a: _counts([r for r in rows if r["area"] == a]) for a in AREAS})

    baseline = None
    if args.against:
        tree, sha = _worktree(args.against)
        try:
            env_ref = {**env, "PYTHONPATH": str(tree / "src")}
            baseline = run_catalogue(cases, command, env_ref, sha)
            bench.set("against", {"revision": sha, **_counts(baseline)})
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                           capture_output=True)  # fmt: skip

    if not args.no_memory:
        from robustness_cases.restore import DECON_2D_IMAGE_BYTES, decon_2d_chunked_command

        tmp = Path(tempfile.mkdtemp(prefix="cytolens-decon-"))
        try:
            argv = [_fill(a, tmp) for a in decon_2d_chunked_command(tmp)]
            code, seconds, peak = peak_rss([*command, *argv], tmp, env)
            ratio = peak / DECON_2D_IMAGE_BYTES
            bench.set("decon_2d_chunked_exit", code)
            bench.set("decon_2d_chunked_seconds", round(seconds, 1))
            bench.set("decon_2d_chunked_peak_mb", round(peak / 2**20, 1))
            bench.set("decon_2d_image_mb", round(DECON_2D_IMAGE_BYTES / 2**20, 1))
            bench.set("decon_2d_chunked_peak_ratio", round(ratio, 2))
            bench.set("decon_2d_chunked_command", "cytolens " + " ".join(argv))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    bench.set("cases_detail", rows)
    summary = [{"run": "this tree", **counts}]
    if baseline is not None:
        summary.append({"run": f"git {args.against} ({sha})", **_counts(baseline)})
    bench.table("Outcomes over the catalogue", summary)
    bench.table(
        "By area (this tree)",
        [{"area": a, **_counts([r for r in rows if r["area"] == a])} for a in AREAS],
    )
    bad = [r for r in rows if r["outcome"] not in ("clear_error", "ok", "skipped")]
    if bad:
        bench.table("Cases that are not yet right", bad)
    detail = []
    for k, r in enumerate(rows):
        row = {"area": r["area"], "case": r["case"], "outcome": r["outcome"],
               "exit": r.get("exit"), "last stderr line": r.get("stderr", "")[:160]}  # fmt: skip
        if baseline is not None:
            row["before"] = baseline[k]["outcome"]
        detail.append(row)
    bench.table("Every case", detail)
    if "decon_2d_chunked_peak_ratio" in bench.results:
        res = bench.results
        bench.text(
            f"2D chunked deconvolution: `{res['decon_2d_chunked_command']}` peaked at "
            f"{res['decon_2d_chunked_peak_mb']} MB resident (whole process) for a "
            f"{res['decon_2d_image_mb']} MB image: {res['decon_2d_chunked_peak_ratio']}x "
            f"the image (goal: within 4x), {res['decon_2d_chunked_seconds']} s."
        )
    bench.write()


if __name__ == "__main__":
    main()
