"""Benchmark: the same cytolens calls on the CPU and on a CUDA GPU, side by side, in one run.

Times each torch-backed path of cytolens on ``device="cpu"`` and, when a CUDA
device is present, ``device="cuda"`` (after a warm-up call), and checks that
both give the same result (max relative difference). Without a GPU it records
the CPU figures and says that no GPU was measured.

Run from the repository root::

    .venv/bin/python benchmarks/gpu.py            # full sizes
    .venv/bin/python benchmarks/gpu.py --quick    # small sizes (a smoke run)

Writes ``benchmarks/results/gpu.json`` and ``.md`` (``gpu_quick.*`` with ``--quick``).
Data: ``../shared/data/deconvolution`` (or ``$CYTOLENS_SHARED_DATA``) for the
measured light-sheet PSF.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CYTOLENS_SHARED_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benchmarks" / "results"


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def timed(func: Callable[[], Any], device: str, repeat: int = 3) -> tuple[float, Any]:
    """Median wall time of ``repeat`` calls after one warm-up call, and the last result."""
    result = func()  # warm-up: kernels, caches, model load
    _sync(device)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = func()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), result


def rel_diff(a: Any, b: Any) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12))


def phantom(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Random bright points and short bars (a deconvolution test object)."""
    rng = np.random.default_rng(seed)
    img = np.zeros(shape, np.float32)
    idx = tuple(rng.integers(0, n, 400 * max(1, img.size // 2**21)) for n in shape)
    img[idx] = rng.uniform(200, 1000, len(idx[0]))
    return img


def cases(quick: bool) -> dict[str, Callable[[str], Any]]:
    """Name -> ``run(device)`` returning something comparable across devices."""
    from scipy.signal import fftconvolve

    from cytolens import data
    from cytolens.register import register
    from cytolens.register.synthetic import random_transform, textured_scene, warped_pair
    from cytolens.restore import deconvolve, gaussian_psf, load_psf

    llsm = DATA / "deconvolution" / "llsm_psf" / "psf.tif"
    psf = load_psf(llsm, crop=(31, 41, 41)) if llsm.is_file() else gaussian_psf((31, 41, 41), 2)
    shape = (32, 128, 128) if quick else (96, 384, 384)
    rng = np.random.default_rng(1)
    volume = rng.poisson(fftconvolve(phantom(shape), psf, mode="same").clip(0) + 5).astype(
        np.float32
    )
    nuclei = np.asarray(data.nuclei().data)
    if not quick:
        nuclei = np.tile(nuclei, (4, 4))
    out: dict[str, Callable[[str], Any]] = {
        f"deconvolve_wb_3d_{'x'.join(map(str, shape))}_2it": lambda dev: deconvolve(
            volume, psf, iterations=2, device=dev
        ),
        f"deconvolve_rl_3d_{'x'.join(map(str, shape))}_20it": lambda dev: deconvolve(
            volume, psf, method="richardson-lucy", iterations=20, device=dev
        ),
    }

    def segment(dev: str) -> Any:
        from cytolens.segment import nuclei as seg

        return np.asarray(seg(nuclei, device=dev)).max()  # nuclei found

    def focus(dev: str) -> Any:
        from cytolens.focus import rate_focus

        return rate_focus(nuclei, device=dev).probabilities

    reg_shape = (48, 64, 64) if quick else (96, 160, 160)
    scene = textured_scene(tuple(n + 24 for n in reg_shape), seed=3)
    truth = random_transform("rigid", reg_shape, rng=5)
    fixed, moving = warped_pair(scene, reg_shape, truth)

    def rigid(dev: str) -> Any:
        return register(fixed, moving, transform="rigid", device=dev).matrix

    out[f"register_rigid_3d_{'x'.join(map(str, reg_shape))}"] = rigid
    out[f"segment_nuclei_{nuclei.shape[0]}x{nuclei.shape[1]}"] = segment
    out[f"rate_focus_{nuclei.shape[0]}x{nuclei.shape[1]}"] = focus
    return out


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results: dict[str, Any] = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cpu_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if "cuda" in devices else None,
            "torch": torch.__version__,
            "python": sys.version.split()[0],
        },
        "cases": {},
    }
    for name, run in cases(args.quick).items():
        row: dict[str, Any] = {}
        outputs = {}
        for dev in devices:
            seconds, outputs[dev] = timed(lambda run=run, dev=dev: run(dev), dev, args.repeat)
            row[f"{dev}_s"] = round(seconds, 4)
            print(f"{name} {dev}: {seconds:.3f} s", flush=True)
        if "cuda" in devices:
            row["speedup_cuda_vs_cpu"] = round(row["cpu_s"] / row["cuda_s"], 1)
            row["max_rel_diff"] = rel_diff(outputs["cpu"], outputs["cuda"])
        results["cases"][name] = row
    stem = "gpu_quick" if args.quick else "gpu"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    m = results["machine"]
    lines = [
        "# CPU vs GPU: the same cytolens calls on both devices",
        "",
        f"Command: `python benchmarks/gpu.py{' --quick' if args.quick else ''}`. "
        f"Machine: {m['cpu']} with {m['cpu_threads']} torch threads; GPU: {m['gpu'] or 'none'}; "
        f"torch {m['torch']}. Median of {args.repeat} calls after a warm-up call.",
        "",
        "| case | CPU s | GPU s | GPU speed-up | max rel. diff |",
        "|---|---|---|---|---|",
    ]
    for name, row in results["cases"].items():
        lines.append(
            f"| {name} | {row['cpu_s']} | {row.get('cuda_s', 'not measured')} | "
            f"{row.get('speedup_cuda_vs_cpu', '-')} | {row.get('max_rel_diff', '-')} |"
        )
    if "cuda" not in devices:
        lines += ["", "No CUDA device on this machine: GPU columns not measured."]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
