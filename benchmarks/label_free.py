"""Benchmark: label-free prediction (in silico labeling) on the held-out blocks of the sample field.

In one run, on the same field and the same training pixels (everything outside
the two held-out blocks and their 32 px margin, :mod:`cytolens.label_free.insilico`):

- cytolens ``isl-v1`` (the shipped model, trained by ``scripts/train/isl.py``);
- (a) linear regression on the 13 normalized planes (scikit-learn);
- (b) a random forest on per-pixel filter features, the ilastik recipe
  (Gaussian, difference of Gaussians, gradient magnitude, Laplacian of
  Gaussian, structure-tensor and Hessian eigenvalues at sigma 1, 2, 4, 8 px)
  computed on the z-mean, the z-standard deviation and planes 0, 6 and 12,
  plus the 13 raw planes (scikit-learn ``RandomForestRegressor``, 60 trees,
  fitted on 40,000 sampled training pixels);
- (c) the single most in-focus plane (largest variance of the Laplacian on
  the training pixels), rescaled per target by least squares.

Figures: Pearson r and SSIM per target (DAPI, MAP2, NFH) on the held-out block
and r on the second block; nuclei segmented with ``cytolens.segment.nuclei``
on the predicted vs the real DAPI of the held-out block (the real-DAPI
segmentation is the reference; same diameter for both): detection F1 at
IoU 0.5 and relative count error; prediction time per megapixel on CPU.

Run from the repository root (a few minutes on 2 shared cores)::

    nice -n 10 .venv/bin/python benchmarks/label_free.py [--model PATH] [--threads 2]

Writes ``benchmarks/results/label_free.json`` and ``.md`` and a figure.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from harness import Benchmark

ROOT = Path(__file__).resolve().parents[1]
DATA = (
    Path(os.environ.get("CYTOLENS_SHARED_DATA", ROOT.parent / "shared" / "data"))
    / "label_free"
    / "insilico_sample"
)
SCALES = (1.0, 2.0, 4.0, 8.0)


def filter_features(plane: np.ndarray) -> list[np.ndarray]:
    """ilastik-style per-pixel features of one plane at :data:`SCALES`."""
    from scipy import ndimage as ndi
    from skimage.feature import (
        hessian_matrix,
        hessian_matrix_eigvals,
        structure_tensor,
        structure_tensor_eigenvalues,
    )

    out = []
    for s in SCALES:
        g = ndi.gaussian_filter(plane, s)
        out += [g, ndi.gaussian_filter(plane, 1.6 * s) - g]
        out.append(ndi.gaussian_gradient_magnitude(plane, s))
        out.append(ndi.gaussian_laplace(plane, s))
        st = structure_tensor(plane, sigma=s, order="rc")
        out += list(structure_tensor_eigenvalues(st))
        hm = hessian_matrix(plane, sigma=s, order="rc", use_gaussian_derivatives=False)
        out += list(hessian_matrix_eigvals(hm))
    return [o.astype(np.float32) for o in out]


def pearson_ssim(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    from skimage.metrics import structural_similarity

    from cytolens.label_free import pearson

    return pearson(pred, truth), round(
        float(structural_similarity(truth, pred.astype(np.float32), data_range=1.0)), 4
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="isl-v1")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import LinearRegression

    from cytolens.evaluate.segmentation import match_counts
    from cytolens.label_free import LabelFreeModel
    from cytolens.label_free.insilico import (
        HELDOUT_BLOCK,
        MARGIN,
        SECOND_BLOCK,
        block_slices,
        read_insilico_field,
    )
    from cytolens.segment import nuclei

    torch.set_num_threads(args.threads)
    if not DATA.is_dir():
        sys.exit(f"data not found: {DATA}")
    bench = Benchmark(
        "label_free",
        description="Label-free prediction (fluorescence from 13 phase-contrast planes) on the "
        "held-out blocks of the in silico labeling sample field: cytolens isl-v1 vs linear "
        "regression, an ilastik-style random forest and the best plane, trained on the same "
        "pixels; nuclei from predicted DAPI; CPU time per megapixel.",
    )
    stack, targets, names = read_insilico_field(DATA)
    model = LabelFreeModel.from_pretrained(args.model, device="cpu")
    h, w = stack.shape[1:]
    blocks = {"heldout": HELDOUT_BLOCK, "second": SECOND_BLOCK}

    # --- training pixels (outside both blocks + margin) and normalization
    train = np.ones((h, w), bool)
    for y0, y1, x0, x1 in blocks.values():
        train[max(0, y0 - MARGIN) : y1 + MARGIN, max(0, x0 - MARGIN) : x1 + MARGIN] = False
    lo, hi = model.limits(stack)
    x_norm = model.normalization.scale(stack, lo, hi)
    t_norm = np.empty(targets.shape, np.float32)
    for i in range(len(names)):
        a, b = np.percentile(targets[i][train], (1, 99.8))
        t_norm[i] = (targets[i] - a) / (b - a)

    # --- cytolens: the whole field (timed), then cut the blocks
    timing = bench.time(model.predict_maps, stack, repeat=1, warmup=1)
    maps = timing.result
    k = len(names)
    pred = {"cytolens": maps[:k]}
    bench.set("speed.cytolens_cpu_s_per_mpx", round(timing.median_s / (h * w / 1e6), 3))
    bench.set("speed.torch_threads", args.threads)

    # --- baselines, fitted on the same training pixels
    rng = np.random.default_rng(0)
    idx = np.flatnonzero(train.ravel())
    sample = rng.choice(idx, 200_000, replace=False)
    xs = x_norm.reshape(k and x_norm.shape[0], -1)
    ys = t_norm.reshape(k, -1)
    t0 = time.perf_counter()
    lin = LinearRegression().fit(xs[:, sample].T, ys[:, sample].T)
    pred["linear"] = lin.predict(xs.T).T.reshape(k, h, w).astype(np.float32)
    bench.set("fit_s.linear", round(time.perf_counter() - t0, 1))

    t0 = time.perf_counter()
    sources = [x_norm.mean(0), x_norm.std(0), x_norm[0], x_norm[6], x_norm[12]]
    feats = [f for src in sources for f in filter_features(src)] + list(x_norm)
    fmat = np.stack([f.ravel() for f in feats], axis=1)
    del feats
    rf_sample = rng.choice(idx, 40_000, replace=False)
    rf = RandomForestRegressor(
        n_estimators=60, min_samples_leaf=5, max_features=0.3, n_jobs=args.threads, random_state=0
    ).fit(fmat[rf_sample], ys[:, rf_sample].T)
    keep = np.zeros((h, w), bool)
    for b in blocks.values():
        keep[block_slices(b)] = True
    rf_pred = np.zeros((k, h * w), np.float32)
    rf_pred[:, keep.ravel()] = rf.predict(fmat[keep.ravel()]).T
    pred["random_forest"] = rf_pred.reshape(k, h, w)
    bench.set("fit_s.random_forest", round(time.perf_counter() - t0, 1))
    bench.set("random_forest.n_features", int(fmat.shape[1]))
    del fmat

    from scipy import ndimage as ndi

    sharp = [float(ndi.laplace(p)[train].var()) for p in x_norm]
    best = int(np.argmax(sharp))
    plane = x_norm[best].ravel()
    bp = np.empty((k, h * w), np.float32)
    for i in range(k):
        gain, off = np.polyfit(plane[sample], ys[i, sample], 1)
        bp[i] = gain * plane + off
    pred["best_plane"] = bp.reshape(k, h, w)
    bench.set("best_plane.index", best)

    # --- figures per block
    rows = []
    for bname, block in blocks.items():
        sl = (slice(None), *block_slices(block))
        for method, p in pred.items():
            row = {"block": bname, "method": method}
            for i, t in enumerate(names):
                r, s = pearson_ssim(p[sl][i], t_norm[sl][i])
                key = f"{bname}.{t}" if bname == "heldout" else f"second_block.{t}"
                bench.set(f"{key}.pearson.{method}", r)
                if bname == "heldout":
                    bench.set(f"{key}.ssim.{method}", s)
                row[f"{t} r"] = r
                row[f"{t} SSIM"] = s if bname == "heldout" else None
            rows.append(row)
    bench.table("Pearson r and SSIM per target (targets scaled by training percentiles)", rows)
    gaps = {
        t: round(
            bench.results["heldout"][t]["pearson"]["cytolens"]
            - bench.results["heldout"][t]["pearson"]["random_forest"],
            4,
        )
        for t in names
    }
    bench.set(
        "goals.dapi_r_at_least_0.85",
        bench.results["heldout"]["dapi"]["pearson"]["cytolens"] >= 0.85,
    )
    bench.set("goals.r_minus_random_forest", gaps)

    # --- nuclei from predicted DAPI vs real DAPI (held-out block; real = reference)
    nuc_rows = []
    for bname, block in blocks.items():
        sl = block_slices(block)
        real_dapi = targets[0][sl].astype(np.float32)
        ref_model = __import__("cytolens.segment", fromlist=["NucleusSegmenter"])
        seg = ref_model.NucleusSegmenter.from_pretrained(device="cpu")
        diameter, _ = seg.estimate_diameter(seg.normalize(real_dapi))
        real = nuclei(real_dapi, diameter=diameter, device="cpu")
        found = nuclei(pred["cytolens"][0][sl], diameter=diameter, device="cpu")
        c = match_counts(real, found, 0.5)[0]
        f1 = round(2 * c.tp / max(1, 2 * c.tp + c.fp + c.fn), 4)
        n_real, n_pred = int(real.max()), int(found.max())
        err = round((n_pred - n_real) / max(1, n_real), 4)
        prefix = "nuclei_from_prediction" if bname == "heldout" else "nuclei_second_block"
        bench.set(f"{prefix}.f1", f1)
        bench.set(f"{prefix}.count_error", err)
        bench.set(f"{prefix}.n_real", n_real)
        bench.set(f"{prefix}.n_predicted", n_pred)
        bench.set(f"{prefix}.diameter_px", round(float(diameter), 1))
        nuc_rows.append(
            {
                "block": bname,
                "nuclei (real DAPI)": n_real,
                "nuclei (predicted DAPI)": n_pred,
                "F1 @ IoU 0.5": f1,
                "count error": err,
            }
        )
    bench.table("Nuclei segmented on predicted vs real DAPI (cytolens.segment.nuclei)", nuc_rows)

    # --- applicability of the field itself and of inputs unlike the training data
    from cytolens import data

    nuc = np.asarray(data.nuclei().data, np.float32)[:256, :256]
    cases = {
        "sample field (in domain, training + held-out)": stack,
        "held-out block only": stack[:, 512:896, 448:832],
        "fluorescence nuclei image repeated in 13 planes": np.repeat(nuc[None], 13, 0),
        "one phase plane repeated 13 times": np.repeat(stack[6:7], 13, 0),
        "planes in reverse order": stack[::-1],
        "field zoomed 2x (other magnification)": np.repeat(
            np.repeat(stack[:, :512, :512], 2, 1), 2, 2
        ),
    }
    app_rows = []
    for label, arr in cases.items():
        found = model.applicability(arr)
        app_rows.append({"input": label, **found})
    bench.set("applicability", app_rows)
    bench.table("Applicability (median over up to 16 windows of 128 px)", app_rows)

    bench.text(
        f"Held-out block rows/cols {HELDOUT_BLOCK}, second block {SECOND_BLOCK} (y0, y1, x0, x1), "
        f"{MARGIN} px margin; training pixels outside both. Model: `{model.name}`, "
        f"trained by `{model.card.training_command}`. cytolens prediction time "
        f"{bench.results['speed']['cytolens_cpu_s_per_mpx']} s per megapixel on CPU with "
        f"{args.threads} torch threads (shared machine). Best plane: z {best}."
    )
    figure(bench, stack, t_norm, pred, maps[k:], names, best)
    bench.write()


def figure(bench: Benchmark, stack, t_norm, pred, sigma, names, best) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cytolens.label_free.insilico import HELDOUT_BLOCK, block_slices

    sl = block_slices(HELDOUT_BLOCK)
    fig, axes = plt.subplots(len(names), 5, figsize=(15, 3 * len(names)))
    plane = stack[best][sl].astype(np.float32)
    for i, t in enumerate(names):
        panels = [
            (plane, f"phase z{best}"),
            (pred["cytolens"][i][sl], f"{t} predicted (isl-v1)"),
            (t_norm[i][sl], f"{t} real"),
            (pred["random_forest"][i][sl], f"{t} random forest"),
            (sigma[i][sl], f"{t} uncertainty (sigma)"),
        ]
        for ax, (img, title) in zip(axes[i], panels, strict=True):
            lo, hi = np.percentile(img, (1, 99.5))
            ax.imshow(img, cmap="gray" if "phase" in title else "magma", vmin=lo, vmax=hi)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    bench.figure(
        fig,
        "heldout",
        "Held-out block: transmitted-light plane, prediction, real stain, random-forest "
        "baseline and the model's per-pixel uncertainty, per target.",
    )


if __name__ == "__main__":
    main()
