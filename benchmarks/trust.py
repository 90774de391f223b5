"""Trust benchmark: does each shipped model know when images are unlike its training data?

For every shipped model with an applicability reference, in one run:

- **ROC AUC** of ``ood_score`` separating its held-out in-domain *test* images
  (never used to fit or calibrate the reference; see
  ``scripts/train/applicability.py`` for the splits) from out-of-domain images
  of the other sets in ``../shared/data``; also the share of held-out
  in-domain images scored in domain and the share of each other set scored
  out of domain;
- **Spearman** correlation between ``ood_score`` and the per-image error where
  it can be measured: nuclei-v1, 1 - AP@0.5 per held-out DSB validation image
  (80); detect-bccd-v1, 1 - per-image AP@0.5 (mean over the classes present)
  on the 58 BCCD validation images;
- the whole-cell case: nuclei-v1's ``ood_score`` on whole-cell (cytoplasmic:
  HPA microtubule channel) images and which segmenter ``--segmenter auto``
  then uses.

Goals (issue 17): AUC >= 0.9 for every model; Spearman >= 0.4 for nuclei-v1
and the detector. ``--quick`` scores fewer out-of-domain images per set and
fewer images for the Spearman correlations (say so in the results).

Run: ``nice -n 10 python benchmarks/trust.py [--quick]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from cytolens.core.tables import BOX_COLUMNS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "scripts" / "train"))

import applicability as sets  # noqa: E402  (scripts/train/applicability.py: the splits)

from harness import Benchmark  # noqa: E402

MODELS = ("focus-miq-v1", "nuclei-v1", "detect-bccd-v1", "hpa-v1")
GOAL_AUC, GOAL_SPEARMAN = 0.9, 0.4


def score_items(predictor: Any, items: list[tuple[str, Any]], group: str) -> list[dict[str, Any]]:
    """Applicability of each image, end to end (``predictor.applicability``)."""
    rows = []
    for name, load in items:
        rows.append({"set": group, "image": name, **predictor.applicability(load())})
    return rows


def auc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """ROC AUC of the score for 'out of domain' (ties count half)."""
    from scipy.stats import rankdata

    ranks = rankdata(np.r_[in_scores, out_scores])
    n_in, n_out = len(in_scores), len(out_scores)
    return float((ranks[n_in:].sum() - n_out * (n_out + 1) / 2) / (n_in * n_out))


def nuclei_errors(predictor: Any, items: list[tuple[str, Any]], ids: list[str]) -> list[float]:
    """1 - AP@0.5 of nuclei-v1 on each DSB image (estimated diameter, as users run it)."""
    import tifffile

    from cytolens.evaluate.segmentation import average_precision

    errors = []
    for (_, load), i in zip(items, ids, strict=True):
        truth = tifffile.imread(sets.DSB / "labels" / f"{i}.tif")
        errors.append(1.0 - float(average_precision(truth, predictor.segment(load()), 0.5)))
    return errors


def detector_errors(predictor: Any, stems: list[str]) -> list[float]:
    """1 - per-image AP@0.5 (mean over the classes present in the image) on BCCD images."""
    from cytolens.detect.annotations import read_voc
    from cytolens.evaluate.detection import detection_ap

    errors = []
    for s in stems:
        image = sets.rgb(sets.read(sets.BCCD / "JPEGImages" / f"{s}.jpg"))
        truth = read_voc(sets.BCCD / "Annotations" / f"{s}.xml").assign(filename=s)
        pred = predictor.predict(image, min_score=0.01).assign(filename=s)
        aps = detection_ap(pred, truth[["filename", "class", *BOX_COLUMNS]])
        errors.append(1.0 - float(np.mean(list(aps.values()))))
    return errors


def spearman(scores: list[float], errors: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(scores, errors).statistic)


def plot_scores(rows_by_model: dict[str, list[dict[str, Any]]]) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows_by_model), figsize=(4.2 * len(rows_by_model), 4.2))
    for ax, (model, rows) in zip(np.atleast_1d(axes), rows_by_model.items(), strict=False):
        groups = list(dict.fromkeys(r["set"] for r in rows))
        data = [[max(r["ood_score"], 1e-2) for r in rows if r["set"] == g] for g in groups]
        ax.boxplot(data, orientation="horizontal", tick_labels=groups)
        ax.axvline(1.0, color="red", lw=1)
        ax.set_xscale("log")
        ax.set_title(model)
        ax.set_xlabel("ood_score (> 1: out of domain)")
    fig.tight_layout()
    return fig


def plot_errors(pairs: dict[str, tuple[list[float], list[float]]]) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 3.8), squeeze=False)
    for ax, (model, (scores, errors)) in zip(axes[0], pairs.items(), strict=False):
        ax.scatter(scores, errors, s=12)
        ax.set_xscale("log")
        ax.set_xlabel("ood_score")
        ax.set_ylabel("per-image error (1 - AP@0.5)")
        ax.set_title(f"{model}: Spearman {spearman(scores, errors):.2f}")
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 OOD images per set, 40 for errors")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    from cytolens.models import load

    torch.set_num_threads(args.threads)
    if not sets.DATA.is_dir():
        raise SystemExit(f"shared data not found at {sets.DATA}")
    if args.quick:
        sets.OOD_PER_SET = 8
    n_err = 40 if args.quick else None
    bench = Benchmark(
        "trust",
        "Applicability of the shipped models: ROC AUC of ood_score for held-out in-domain vs "
        "out-of-domain images of the other shared data sets, and Spearman(ood_score, per-image "
        "error). "
        + ("--quick: " if args.quick else "full run: ")
        + f"{sets.OOD_PER_SET} images per out-of-domain set"
        + (f", {n_err} images for the error correlations." if n_err else "."),
    )
    summary, all_rows, error_pairs = [], {}, {}
    for name in args.models:
        t0 = time.perf_counter()
        predictor = load(name, device="cpu")
        if not predictor.has_domain:
            bench.set(f"applicability.{name}.auc", None)
            bench.text(f"{name}: no applicability reference shipped; not measured.")
            continue
        test = []
        for item in sets.in_domain(name)["test"]:  # grouped by source: dsb, bbbc006, ...
            test += score_items(predictor, [item], f"held-out {item[0].split('/')[0]} (in domain)")
        rows = list(test)
        for group, items in sets.ood_sets(name).items():
            rows += score_items(predictor, items, group)
        s_in = np.array([r["ood_score"] for r in test])
        s_out = np.array([r["ood_score"] for r in rows[len(test) :]])
        key = f"applicability.{name}"
        bench.set(f"{key}.auc", round(auc(s_in, s_out), 4))
        bench.set(f"{key}.n_in_domain_test", len(s_in))
        bench.set(f"{key}.n_out_of_domain", len(s_out))
        bench.set(f"{key}.heldout_in_domain_fraction", round(float(np.mean(s_in <= 1)), 4))
        bench.set(f"{key}.ood_flagged_fraction", round(float(np.mean(s_out > 1)), 4))
        per_set = {}
        for group in dict.fromkeys(r["set"] for r in rows):
            sc = np.array([r["ood_score"] for r in rows if r["set"] == group])
            per_set[group] = {"n": len(sc), "median_ood_score": round(float(np.median(sc)), 3),
                              "flagged_out": round(float(np.mean(sc > 1)), 3)}  # fmt: skip
        bench.set(f"{key}.per_set", per_set)
        rho = None
        if name == "nuclei-v1":
            split = sets._dsb_split()["validation"]
            ids = split if n_err is None else sets.every(split, n_err)
            items = [
                it for it in sets.in_domain(name)["test"] if it[0][4:] in {i[:12] for i in ids}
            ]
            by_name = {r["image"]: r["ood_score"] for r in test}
            scores = [by_name[n] for n, _ in items]
            errors = nuclei_errors(predictor, items, ids)
            rho = spearman(scores, errors)
            error_pairs[name] = (scores, errors)
        elif name == "detect-bccd-v1":
            _, val = sets._bccd_split()
            stems = val if n_err is None else sets.every(val, n_err)
            scores = [
                predictor.applicability(sets.rgb(sets.read(sets.BCCD / "JPEGImages" / f"{s}.jpg")))[
                    "ood_score"
                ]
                for s in stems
            ]
            errors = detector_errors(predictor, stems)
            rho = spearman(scores, errors)
            error_pairs[name] = (scores, errors)
        bench.set(f"{key}.spearman_error", None if rho is None else round(rho, 4))
        if rho is not None:
            bench.set(f"{key}.n_error_images", len(error_pairs[name][0]))
        all_rows[name] = rows
        summary.append({
            "model": name,
            "AUC": round(auc(s_in, s_out), 3),
            "goal AUC >= 0.9": "met" if auc(s_in, s_out) >= GOAL_AUC else "NOT met",
            "held-out in domain": f"{np.mean(s_in <= 1):.0%} of {len(s_in)}",
            "OOD flagged": f"{np.mean(s_out > 1):.0%} of {len(s_out)}",
            "Spearman(score, error)": "not measurable" if rho is None else round(rho, 3),
            "seconds": round(time.perf_counter() - t0, 1),
        })  # fmt: skip
        bench.table(f"{name}: ood_score per set", [{"set": k, **v} for k, v in per_set.items()])
    if "nuclei-v1" in args.models:
        _whole_cell(bench)
    bench.table("Summary", summary)
    if all_rows:
        bench.figure(plot_scores(all_rows), "scores", "ood_score per set (log scale; red: limit).")
    if error_pairs:
        bench.figure(plot_errors(error_pairs), "errors", "ood_score vs per-image error.")
    json_path, md_path = bench.write()
    print(f"wrote {json_path} and {md_path}")


def _whole_cell(bench: Benchmark) -> None:
    """nuclei-v1 on whole-cell images (HPA microtubule channel): flagged, and what auto picks."""
    from cytolens.core.image import Image
    from cytolens.track.cli import nuclei_applicability

    items = sets.ood_sets("nuclei-v1")["hpa-red"][:8]
    frames = np.stack([load() for _, load in items[:3]])  # a 3-frame "movie" of whole cells
    worst = nuclei_applicability(Image(frames, "TYX", {}), "hpa-red movie")
    auto = "threshold" if worst.get("in_domain") is False else "nuclei"
    bench.set("whole_cell.movie", "3 HPA microtubule-channel (whole-cell) images as frames")
    bench.set("whole_cell.ood_score", worst.get("ood_score"))
    bench.set("whole_cell.auto_segmenter", auto)
    bench.set("whole_cell.warned", worst.get("in_domain") is False)
    bench.text(
        f"Whole-cell movie (3 HPA microtubule-channel images as frames): nuclei-v1 ood_score "
        f"{worst.get('ood_score')}; `cytolens track --segmenter auto` "
        + ("warns and uses the threshold baseline." if auto == "threshold" else "uses nuclei-v1.")
    )


if __name__ == "__main__":
    main()
