"""Focus rating of one very large image: wall time and peak memory, in one run.

A real BBBC006 Hoechst field (in focus, 520x696) is tiled into a
``SIZE x SIZE`` uint16 TIFF (10000 and 20000 by default: 191 and 763 MiB of
pixels, 512 px TIFF tiles), written to a temporary folder. Each contender runs in its own Python
process so that its peak resident memory (``ru_maxrss``) is its own:

- **ours**: ``cytolens focus rate BIG.tif --out DIR`` (reads the file lazily,
  rates 84x84 patches band by band, writes the CSV, a shrunk overlay and the
  HTML report);
- **reference**: scikit-image's variance of the Laplacian of the same image,
  read whole with tifffile (one number per image, no patches, no outputs): the
  usual classical approach, for scale.

Run from the repository root (about 2 minutes on 2 CPU cores)::

    python benchmarks/focus_large.py [--sizes 10000,20000]

Writes ``benchmarks/results/focus_large.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Benchmark

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FIELD = SHARED / "focus/bbbc006_subset/BBBC006_z_aligned__a05__s1__w1_10.png"

# Each child prints one JSON line: its peak RSS (MiB) and what it computed.
OURS = """
import json, resource, sys
from cytolens.cli import main
try:
    main(["focus", "rate", sys.argv[1], "--out", sys.argv[2], "--device", "cpu"])
except SystemExit as exc:
    if exc.code:
        raise
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
REFERENCE = """
import json, resource, sys
import numpy as np, tifffile
from skimage.filters import laplace
image = tifffile.imread(sys.argv[1]).astype(np.float32)
value = float(laplace(image).var())
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "variance_of_laplacian": value}))
"""


def _run(code: str, *args: str) -> tuple[float, dict]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])


def _measure(field: np.ndarray, size: int, bench: Benchmark) -> list[dict]:
    import pandas as pd
    import tifffile

    reps = (-(-size // field.shape[0]), -(-size // field.shape[1]))
    image = np.tile(field, reps)[:size, :size]
    mib = image.nbytes / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.tif"
        tifffile.imwrite(path, image, tile=(512, 512))
        del image
        ours_s, ours = _run(OURS, str(path), str(Path(tmp) / "out"))
        table = pd.read_csv(Path(tmp) / "out" / "focus.csv")
        ref_s, ref = _run(REFERENCE, str(path))
    n_patches = int(table["n_patches"].iloc[0])
    runs = [
        (
            "cytolens focus rate (CLI, all outputs)",
            ours_s,
            ours,
            f"{n_patches} patches, verdict {table['verdict'].iloc[0]}",
        ),
        (
            "scikit-image variance of Laplacian (whole image)",
            ref_s,
            ref,
            f"one value ({ref['variance_of_laplacian']:.4g})",
        ),
    ]
    rows = [
        {
            "size": size,
            "image_mib": round(mib),
            "method": method,
            "wall_s": round(wall, 1),
            "peak_rss_mb": round(child["peak_rss_mb"]),
            "peak_over_image": round(child["peak_rss_mb"] / mib, 2),
            "result": result,
        }
        for method, wall, child, result in runs
    ]
    keys = ("wall_s", "peak_rss_mb", "peak_over_image")
    bench.set(f"sizes.{size}.image_mib", round(mib, 1))
    bench.set(f"sizes.{size}.ours", {k: rows[0][k] for k in keys})
    bench.set(f"sizes.{size}.ours.patches_per_s", round(n_patches / ours_s, 1))
    bench.set(f"sizes.{size}.reference", {k: rows[1][k] for k in keys})
    bench.set(
        f"sizes.{size}.peak_memory_ratio_ours_over_reference",
        round(ours["peak_rss_mb"] / ref["peak_rss_mb"], 3),
    )
    return rows


def main() -> None:
    from cytolens.io import imread

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes", default="10000,20000", help="sides of the square images, px, comma-separated"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    field = np.asarray(imread(FIELD).data)
    bench = Benchmark(
        "focus_large",
        description=(
            f"Focus rating of one large uint16 image ({' and '.join(map(str, sizes))} px square, "
            "a real BBBC006 field tiled, 512 px TIFF tiles): `cytolens focus rate` (lazy read, "
            "patch bands, shrunk overlay, report) against scikit-image's variance of the "
            "Laplacian of the image read whole. Each runs in its own process; peak memory is "
            "that process's maximum resident set."
        ),
    )
    rows = [row for size in sizes for row in _measure(field, size, bench)]
    bench.table("Large images: wall time (process start to exit) and peak memory", rows)
    bench.write()
    print(json.dumps(bench.results, indent=1))


if __name__ == "__main__":
    main()
