"""Large-image nucleus segmentation: bounded memory, chunk-border agreement, speed.

Part of ``benchmarks/segmentation.py`` (``run(quick) -> {"json", "md", "figures"}``);
alone it writes ``benchmarks/results/segmentation_large.json`` and ``.md``.

1. **Large image**: real DSB2018 fluorescence fields (the 256 x 256 ones of the
   tune/train split, grey, uint8 scaled to uint16) tiled into a ``SIZE x SIZE``
   uint16 TIFF with 512 px TIFF tiles under ``build/segmentation_large/``,
   written tile by tile (never held whole). A child process segments it with
   :func:`cytolens.segment.chunked.segment_chunked` (the path ``nuclei`` and
   ``cytolens segment nuclei`` take above 4096 x 4096 px): input read lazily
   from the TIFF, diameter estimated on one window, labels written chunk by
   chunk into an OME-Zarr, nuclei measured per chunk, an overlay from a
   downsampled copy. Its peak resident memory (``ru_maxrss``) and wall time
   give ``large_image_<SIZE>.peak_mb`` and ``.sec_per_mpx``.
2. **Agreement**: a ``AGREE x AGREE`` mosaic of the same fields segmented
   whole (``prepare`` -> ``predict_maps`` -> ``instances``, the whole-plane
   path) and chunk by chunk with the same diameter; ``chunked_agreement`` is
   the fraction of whole-plane nuclei whose chunked mask is pixel-identical
   (a one-to-one match with IoU 1).
3. A picture of the corner where four chunks meet on the large image, labels
   outlined, chunk cores (solid) and the first chunk's halo (dashed) drawn:
   ``benchmarks/results/segmentation_chunk_border.png``.

Run from the repository root::

    python benchmarks/segmentation_large.py            # 20000 px image, 6000 px agreement
    python benchmarks/segmentation_large.py --quick    # 6000 px image, 2048 px agreement
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DSB = SHARED / "segmentation" / "dsb2018"
BUILD = ROOT / "build" / "segmentation_large"
RESULTS = ROOT / "benchmarks" / "results"
PICTURE = RESULTS / "segmentation_chunk_border.png"
THREADS = 2
#: --quick: sizes that finish in about 45 minutes on the shared, loaded 2-core machine.
QUICK_SIZE, QUICK_AGREE = 6000, 2048
#: Chunk read shape in the agreement run.
AGREE_CHUNK = 1024

CHILD = """
import json, resource, sys, time
import numpy as np, torch
torch.set_num_threads(int(sys.argv[4]))
from cytolens.io import imread, imwrite
from cytolens.report import overlay_outlines
from cytolens.segment.chunked import downsampled, segment_chunked, write_labels_ngff
from cytolens.segment.model import NucleusSegmenter
t0 = time.perf_counter()
image = imread(sys.argv[1], lazy=True)
seg = NucleusSegmenter.from_pretrained("nuclei-v1", device="cpu")
with write_labels_ngff(sys.argv[2], image.shape) as z:
    res = segment_chunked(seg, image, out=z, measure=True, preview_side=2048)
res.table.to_csv(sys.argv[3], index=False)
overlay = overlay_outlines(res.preview, downsampled(res.labels, res.preview_step))
imwrite(sys.argv[3].replace(".csv", "_overlay.png"), overlay, axes="YXC")
print(json.dumps({
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "seconds": time.perf_counter() - t0, "nuclei": res.n_objects, "diameter": res.diameter,
    "read_shape": list(res.read_shape), "halo": res.halo, "chunks": res.n_chunks,
    "cut": res.cut, "rows": len(res.table), "exact_percentiles": res.extra["exact_percentiles"],
}))
"""


def _fields() -> list[np.ndarray]:
    """Grey 256 x 256 DSB2018 fluorescence fields of the train/tune split (not validation)."""
    import pandas as pd

    from cytolens.core.plane import single_plane
    from cytolens.io import imread

    split = json.loads((ROOT / "src/cytolens/segment/dsb2018_split.json").read_text())
    held_out = set(split.get("validation", []))
    samples = pd.read_csv(DSB / "samples.csv")
    picks = samples[
        (samples.modality == "fluorescence")
        & (samples.height == 256)
        & (samples.width == 256)
        & ~samples.id.isin(held_out)
    ].id.tolist()[:48]
    return [
        np.asarray(single_plane(imread(DSB / "images" / f"{i}.png"))[0]).astype(np.uint8)
        for i in picks
    ]


def _field_at(fields: list[np.ndarray], fy: int, fx: int) -> np.ndarray:
    return fields[(fy * 7 + fx * 13 + (fy * fx) % 5) % len(fields)]


def _mosaic(fields: list[np.ndarray], size: int) -> np.ndarray:
    n = -(-size // 256)
    rows = [np.hstack([_field_at(fields, fy, fx) for fx in range(n)]) for fy in range(n)]
    return (np.vstack(rows)[:size, :size].astype(np.uint16)) * 257


def _write_big_tiff(fields: list[np.ndarray], size: int, path: Path) -> None:
    """A SIZE x SIZE uint16 tiled TIFF of the fields, written 512 px tile by tile."""
    import tifffile

    def tiles():
        for ty in range(-(-size // 512)):
            for tx in range(-(-size // 512)):
                tile = np.zeros((512, 512), np.uint16)
                for dy in (0, 1):
                    for dx in (0, 1):
                        fy, fx = 2 * ty + dy, 2 * tx + dx
                        block = _field_at(fields, fy, fx).astype(np.uint16) * 257
                        tile[dy * 256 : dy * 256 + 256, dx * 256 : dx * 256 + 256] = block
                yield tile

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial.tif")
    tifffile.imwrite(tmp, tiles(), shape=(size, size), dtype=np.uint16, tile=(512, 512))
    os.replace(tmp, path)


def _identical_fraction(a: np.ndarray, b: np.ndarray) -> tuple[float, int, int]:
    """Fraction of objects of ``a`` whose mask in ``b`` is the same set of pixels."""
    a64, b64 = a.astype(np.int64).ravel(), b.astype(np.int64).ravel()
    fg = (a64 > 0) | (b64 > 0)
    pairs, counts = np.unique(a64[fg] * (int(b64.max()) + 1) + b64[fg], return_counts=True)
    pa, pb = pairs // (int(b64.max()) + 1), pairs % (int(b64.max()) + 1)
    size_a = np.bincount(a64, minlength=int(a64.max()) + 1)
    size_b = np.bincount(b64, minlength=int(b64.max()) + 1)
    same = (pa > 0) & (pb > 0) & (counts == size_a[pa]) & (counts == size_b[pb])
    n_a = int((size_a[1:] > 0).sum())
    return float(same.sum()) / max(n_a, 1), n_a, int((size_b[1:] > 0).sum())


def _agreement(fields: list[np.ndarray], size: int) -> dict[str, Any]:
    import torch

    from cytolens.segment.chunked import segment_chunked
    from cytolens.segment.model import NucleusSegmenter

    torch.set_num_threads(THREADS)
    image = _mosaic(fields, size)
    seg = NucleusSegmenter.from_pretrained("nuclei-v1", device="cpu")
    t0 = time.perf_counter()
    # estimates the diameter on one window; chunks of AGREE_CHUNK px so that many nuclei
    # lie on chunk borders (the default budget would take a 2048 px image in one chunk)
    res = segment_chunked(seg, image, chunk_shape=AGREE_CHUNK)
    t_chunked = time.perf_counter() - t0
    d = res.diameter
    t0 = time.perf_counter()
    x, _ = seg.prepare(image)  # the whole-plane path, same diameter
    scale = seg.diameter / d
    whole = seg.instances(seg.predict_maps(x, scale=scale), scale=scale)
    t_whole = time.perf_counter() - t0
    del x
    fraction, n_whole, n_chunked = _identical_fraction(whole, res.labels)
    return {
        "size": size,
        "agreement": round(fraction, 5),
        "nuclei_whole": n_whole,
        "nuclei_chunked": n_chunked,
        "diameter_px": round(d, 2),
        "chunks": res.n_chunks,
        "read_shape": list(res.read_shape),
        "seconds_whole": round(t_whole, 1),
        "seconds_chunked": round(t_chunked, 1),
    }


def _picture(tiff: Path, labels_path: Path, info: dict[str, Any], size: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import tifffile
    import zarr

    from cytolens.core.tiling import iter_tiles
    from cytolens.report import overlay_outlines

    chunks = iter_tiles((size, size), tuple(info["read_shape"]), info["halo"])
    first = chunks[0]
    cy, cx = first.write[0].stop, first.write[1].stop  # where four chunk cores meet
    half = 200
    win = (slice(cy - half, cy + half), slice(cx - half, cx + half))
    store = tifffile.imread(tiff, aszarr=True)
    raw = np.asarray(zarr.open_array(store, mode="r")[win])
    store.close()
    labels = np.asarray(zarr.open_group(str(labels_path), mode="r")["s0"][win])
    rgb = overlay_outlines(raw.astype(np.float32), labels)
    fig, ax = plt.subplots(figsize=(6.4, 6.4), dpi=100)
    ax.imshow(rgb, interpolation="nearest")
    ax.axhline(half - 0.5, color="yellow", lw=1.2)
    ax.axvline(half - 0.5, color="yellow", lw=1.2)
    for offset in (-info["halo"], info["halo"]):  # the least context any chunk has
        ax.axhline(half + offset - 0.5, color="cyan", lw=0.8, ls="--")
        ax.axvline(half + offset - 0.5, color="cyan", lw=0.8, ls="--")
    ax.set_xlim(-0.5, 2 * half - 0.5)
    ax.set_ylim(2 * half - 0.5, -0.5)
    ax.set_title(
        f"where four chunks meet, at ({cy}, {cx}) of a {size} x {size} image\n"
        f"yellow: chunk cores (each nucleus kept by the core holding its centroid); "
        f"cyan: +/- {info['halo']} px halo",
        fontsize=8,
    )
    ax.set_axis_off()
    PICTURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PICTURE, bbox_inches="tight")
    plt.close(fig)
    return PICTURE


def _load() -> str:
    try:
        one, five, fifteen = os.getloadavg()
        return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} on {os.cpu_count()} CPUs"
    except OSError:
        return "load unknown"


def run(
    quick: bool = False,
    *,
    size: int | None = None,
    agree: int | None = None,
    reuse_large: bool = False,
) -> dict:
    """Measure the large-image figures; see the module notes."""
    if not DSB.exists():
        return {"json": {}, "md": f"segmentation_large: skipped, no data at {DSB}", "figures": []}
    size = size or (QUICK_SIZE if quick else 20000)
    agree = agree or (QUICK_AGREE if quick else 6000)
    fields = _fields()
    load_before = _load()
    tiff = BUILD / f"mosaic_{size}.tif"
    if not tiff.exists():
        _write_big_tiff(fields, size, tiff)
    labels_path = BUILD / f"labels_{size}.ome.zarr"
    table = BUILD / f"nuclei_{size}.csv"
    record = BUILD / f"large_{size}.json"
    if reuse_large and record.exists() and labels_path.exists():
        big = json.loads(record.read_text())  # measured by an earlier child run (md says when)
    else:
        if labels_path.exists():
            import shutil

            shutil.rmtree(labels_path)
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(tiff), str(labels_path), str(table), str(THREADS)],
            capture_output=True, text=True, check=False, cwd=ROOT,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"large-image child failed:\n{proc.stderr[-3000:]}")
        big = json.loads(proc.stdout.strip().splitlines()[-1])
        big["measured_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        big["load_at_start"] = load_before
        record.write_text(json.dumps(big))
    mpx = size * size / 1e6
    figure = _picture(tiff, labels_path, big, size)
    agreement = _agreement(fields, agree)
    key = f"large_image_{size}"
    results = {
        f"{key}.peak_mb": round(big["peak_rss_mb"], 1),
        f"{key}.sec_per_mpx": round(big["seconds"] / mpx, 3),
        f"{key}.seconds": round(big["seconds"], 1),
        f"{key}.nuclei": big["nuclei"],
        f"{key}.chunks": big["chunks"],
        f"{key}.diameter_px": round(big["diameter"], 2),
        f"{key}.cut": big["cut"],
        "chunked_agreement": agreement["agreement"],
        **{f"chunked_agreement_detail.{k}": v for k, v in agreement.items()},
    }
    command = "python benchmarks/segmentation_large.py" + (" --quick" if quick else "")
    command += " --reuse-large" if reuse_large else ""
    md = "\n".join(
        [
            "## Large images: chunked segmentation in bounded memory",
            "",
            f"Command: `{command}` ({THREADS} torch threads; {load_before} at the start: the "
            "machine is shared, so times are inflated). Large image measured "
            f"{big.get('measured_at', 'in this run')} ({big.get('load_at_start', load_before)}).",
            "",
            f"- {size} x {size} uint16 mosaic of real DSB2018 fluorescence fields (tiled TIFF, "
            "read lazily), segmented chunk by chunk in a child process into an OME-Zarr with "
            f"per-chunk measurements: **peak RSS {big['peak_rss_mb']:.0f} MB** (goal < 2000), "
            f"{big['seconds']:.0f} s = **{big['seconds'] / mpx:.2f} s/Mpx**, "
            f"{big['nuclei']} nuclei, {big['chunks']} chunks of {tuple(big['read_shape'])} px "
            f"(halo {big['halo']} px), diameter {big['diameter']:.1f} px (estimated), "
            f"{big['cut']} nuclei reaching a chunk edge.",
            f"- Chunked vs whole-plane on a {agreement['size']} x {agreement['size']} mosaic "
            f"(same diameter {agreement['diameter_px']} px): **{agreement['agreement']:.4f}** of "
            f"{agreement['nuclei_whole']} nuclei have pixel-identical masks (chunked finds "
            f"{agreement['nuclei_chunked']}; {agreement['chunks']} chunks); whole "
            f"{agreement['seconds_whole']} s, chunked {agreement['seconds_chunked']} s.",
            f"- Picture of a chunk corner: `{PICTURE.relative_to(ROOT)}`.",
            ""
            + (
                "- Quick run: the full figures come from "
                "`python benchmarks/segmentation_large.py` (20000 px, 6000 px agreement)."
                if quick
                else ""
            ),
        ]
    )
    return {"json": results, "md": md, "figures": [str(figure)]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6000 px image, 2048 px agreement")
    parser.add_argument("--size", type=int, default=None, help="side of the large image")
    parser.add_argument("--agree", type=int, default=None, help="side of the agreement image")
    parser.add_argument(
        "--reuse-large",
        action="store_true",
        help="reuse the large-image child's record under build/ (rerun the rest)",
    )
    args = parser.parse_args()
    from segmentation import save_part

    save_part(
        "large", run(args.quick, size=args.size, agree=args.agree, reuse_large=args.reuse_large)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
