"""Nucleus segmentation: the shipped model against the classical baseline on DSB2018.

On the validation split of ``src/cytolens/segment/dsb2018_split.json`` (15 %
of DSB2018 stage 1 per modality, never used in training), in one process:

- ``cytolens.segment.nuclei`` (the default model, diameter estimated, as a
  user runs it), the same with the true median diameter given, and
  ``cytolens.segment.nuclei_classical`` (Otsu + distance-transform watershed,
  diameter estimated);
- per modality: the DSB2018 score (mean AP over IoU 0.50:0.05:0.95), AP@0.5
  and F1@0.5, averaged over images;
- speed: seconds per megapixel (of the input image) on the CPU for both
  methods over the whole validation split, and on one large mosaic;
- pictures of the worst failures of the model.

Run: ``python benchmarks/segmentation.py`` (writes results/segmentation.json and .md);
``--limit 2`` scores only two images per modality (a smoke run).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from cytolens.evaluate import DSB_THRESHOLDS, segmentation_scores
from cytolens.io import imread
from cytolens.segment import NucleusSegmenter, nuclei_classical
from cytolens.segment.model import DEFAULT_MODEL
from harness import Benchmark

ROOT = Path(__file__).resolve().parents[1]
DSB = ROOT.parent / "shared" / "data" / "segmentation" / "dsb2018"
SPLIT = ROOT / "src" / "cytolens" / "segment" / "dsb2018_split.json"
GOAL = {"ap50": 0.85, "dsb_score": 0.60}
N_FAILURES = 4
#: Sections run after the validation split, each a module ``segmentation_<part>.py`` here.
PARTS = {
    "speed": "Speed",
    "large": "Large images in bounded memory",
    "ctc": "End to end on Cell Tracking Challenge movies",
    "stardist": "Trained peer: StarDist on the same training split",
    "cells": "Whole cells",
}


def _truth(sample_id: str) -> np.ndarray:
    import tifffile

    return tifffile.imread(DSB / "labels" / f"{sample_id}.tif")


def _median_diameter(labels: np.ndarray) -> float:
    sizes = np.bincount(labels.ravel())[1:]
    return float(np.sqrt(4 * np.median(sizes[sizes > 0]) / np.pi))


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    return round(float(np.mean([r[key] for r in rows])), 4)


def _failure_figure(cases: list[dict[str, Any]]) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from cytolens.report import overlay_outlines

    fig, axes = plt.subplots(len(cases), 3, figsize=(11, 3.7 * len(cases)), squeeze=False)
    for row, case in zip(axes, cases, strict=True):
        shown = case["image"]
        panels = {
            f"truth ({case['truth'].max()} nuclei)": case["truth"],
            f"model: AP50 {case['model']['ap50']:.2f}, DSB {case['model']['dsb_score']:.2f}": case[
                "pred"
            ],
            f"baseline: AP50 {case['baseline']['ap50']:.2f}, "
            f"DSB {case['baseline']['dsb_score']:.2f}": case["base"],
        }
        for ax, (title, labels) in zip(row, panels.items(), strict=True):
            ax.imshow(overlay_outlines(shown, labels), interpolation="nearest")
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        row[0].set_ylabel(case["modality"])
        row[0].text(
            0,
            -0.08,
            f"{case['modality']} {case['id'][:10]}, {shown.shape[1]}x{shown.shape[0]}",
            transform=row[0].transAxes,
            fontsize=8,
            va="top",
        )
    fig.tight_layout()
    return fig


def _ap_curve_figure(curves: dict[str, dict[str, list[float]]]) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.4), squeeze=False)
    for ax, (modality, by_method) in zip(axes[0], curves.items(), strict=True):
        for method, values in by_method.items():
            ax.plot(DSB_THRESHOLDS, values, marker="o", ms=3, label=method)
        ax.set_title(modality)
        ax.set_xlabel("IoU threshold")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("AP = TP / (TP + FP + FN)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> None:
    import argparse

    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--limit", type=int, default=0, help="images per modality (0: all; for smoke runs)"
    )
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help="comma-separated parts run after the validation split (default: all; '' for none)",
    )
    parser.add_argument("--quick", action="store_true", help="the parts' quick modes")
    args = parser.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {unknown}; known: {list(PARTS)}")
    split = json.loads(SPLIT.read_text())
    if args.limit:
        split["validation"] = {m: ids[: args.limit] for m, ids in split["validation"].items()}
    bench = Benchmark(
        "segmentation",
        description=(
            "Nuclei on the DSB2018 validation split (never seen in training): the shipped model "
            f"{DEFAULT_MODEL} (cytolens.segment.nuclei) against the classical baseline "
            "(cytolens.segment.nuclei_classical: Otsu + distance-transform watershed), both with "
            "the nucleus size estimated from the image. CPU only."
        ),
    )
    segmenter = NucleusSegmenter.from_pretrained(DEFAULT_MODEL, device="cpu")
    bench.set("model.name", segmenter.card.name)
    bench.set("model.sha256", segmenter.card.sha256)
    bench.set("split.counts", split["counts"]["validation"])
    methods = {
        "model": lambda img, d: segmenter.segment(img),
        "model_given_diameter": lambda img, d: segmenter.segment(img, diameter=d),
        "baseline": lambda img, d: nuclei_classical(img),
    }
    segmenter.segment(np.zeros((64, 64), np.float32))  # warm-up (torch kernels)
    per_image: list[dict[str, Any]] = []
    seconds = {(m, mod): 0.0 for m in methods for mod in split["validation"]}
    mpx_by_modality = dict.fromkeys(split["validation"], 0.0)
    for modality, ids in split["validation"].items():
        for sample_id in ids:
            image = imread(DSB / "images" / f"{sample_id}.png")
            truth = _truth(sample_id)
            d = _median_diameter(truth)
            mpx_by_modality[modality] += truth.size / 1e6
            record: dict[str, Any] = {"id": sample_id, "modality": modality, "shape": truth.shape}
            for name, run in methods.items():
                pred, dt = _timed(run, image, d)
                seconds[name, modality] += dt
                record[name] = segmentation_scores(truth, pred)
                record[name + "_labels"] = pred
            per_image.append(record)
    rows, curves = [], {}
    for modality in [*split["validation"], "all"]:
        recs = [r for r in per_image if modality in ("all", r["modality"])]
        curves[modality] = {}
        for name in methods:
            scores = [r[name] for r in recs]
            summary = {
                "n_images": len(scores),
                "ap50": _mean(scores, "ap50"),
                "f1_50": _mean(scores, "f1_50"),
                "dsb_score": _mean(scores, "dsb_score"),
            }
            for key, value in summary.items():
                bench.set(f"{name}.{modality}.{key}", value)
            rows.append({"modality": modality, "method": name, **summary})
            curves[modality][name] = [
                float(np.mean([s["ap"][t] for s in scores])) for t in DSB_THRESHOLDS
            ]
    bench.table("Validation split: mean over images", rows)
    megapixels = sum(mpx_by_modality.values())
    sec = {
        name: round(sum(seconds[name, m] for m in mpx_by_modality) / megapixels, 3)
        for name in methods
    }
    bench.set("sec_per_mpx", sec)
    bench.set("validation_megapixels", round(megapixels, 2))
    for modality, mpx in mpx_by_modality.items():
        for name in methods:
            bench.set(
                f"sec_per_mpx_by_modality.{modality}.{name}",
                round(seconds[name, modality] / mpx, 3),
            )
    fluo = {k: bench.results[k]["fluorescence"] for k in ("model", "baseline")}
    bench.set(
        "goal_met.fluorescence",
        {key: fluo["model"][key] >= goal for key, goal in GOAL.items()},
    )

    # one large image: a 3 x 3 mosaic of the largest validation fluorescence image
    largest = max(
        (r for r in per_image if r["modality"] == "fluorescence"), key=lambda r: np.prod(r["shape"])
    )
    mosaic = np.tile(
        imread(DSB / "images" / f"{largest['id']}.png").data[..., :3].mean(axis=2), (3, 3)
    ).astype(np.float32)
    mpx = mosaic.size / 1e6
    big_model = bench.time(segmenter.segment, mosaic, repeat=1, warmup=0)
    big_base = bench.time(nuclei_classical, mosaic, repeat=1, warmup=0)
    bench.set("large_image.shape", list(mosaic.shape))
    for name, t in (("model", big_model), ("baseline", big_base)):
        bench.set(f"large_image.{name}.sec_per_mpx", round(t.median_s / mpx, 3))
        bench.set(f"large_image.{name}.peak_mb", round(t.peak_mb, 1))
        bench.set(f"large_image.{name}.nuclei", int(t.result.max()))
    bench.table(
        "Speed on the CPU (seconds per megapixel of input)",
        [
            {
                "data": f"validation split ({megapixels:.1f} Mpx, {len(per_image)} images)",
                "model": sec["model"],
                "model, diameter given": sec["model_given_diameter"],
                "baseline": sec["baseline"],
            },
            *(
                {
                    "data": f"validation {modality} ({mpx_by_modality[modality]:.1f} Mpx)",
                    "model": round(seconds["model", modality] / mpx_by_modality[modality], 3),
                    "model, diameter given": round(
                        seconds["model_given_diameter", modality] / mpx_by_modality[modality], 3
                    ),
                    "baseline": round(seconds["baseline", modality] / mpx_by_modality[modality], 3),
                }
                for modality in mpx_by_modality
            ),
            {
                "data": f"mosaic {mosaic.shape[1]}x{mosaic.shape[0]} ({mpx:.1f} Mpx)",
                "model": round(big_model.median_s / mpx, 3),
                "model, diameter given": None,
                "baseline": round(big_base.median_s / mpx, 3),
            },
        ],
    )
    bench.text(
        f"Threads: torch {torch.get_num_threads()}. Peak memory added on the mosaic: model "
        f"{big_model.peak_mb:.0f} MB, baseline {big_base.peak_mb:.0f} MB. The model's time "
        "includes the size estimate (a classical first guess checked by up to three network "
        "probes of a 384 x 384 window). Images are rescaled so nuclei are 16 px wide before "
        "the network runs, so images of small nuclei cost more per input megapixel; a wrong "
        "size estimate on brightfield images (nuclei found too small) makes them the "
        "slowest."
    )
    m, b = fluo["model"], fluo["baseline"]
    bench.text(
        f"Fluorescence (goal AP@0.5 >= {GOAL['ap50']}, DSB score >= {GOAL['dsb_score']}): model "
        f"AP@0.5 {m['ap50']:.3f}, DSB score {m['dsb_score']:.3f}; baseline AP@0.5 "
        f"{b['ap50']:.3f}, DSB score {b['dsb_score']:.3f}. A trained peer, StarDist (Schmidt et "
        "al. 2018) trained on the same split under a CPU budget, is in its own section below "
        "(part 'stardist'); Cellpose's weights cannot be downloaded here."
    )
    bench.figure(
        _ap_curve_figure(curves),
        "ap_curves",
        "AP over IoU thresholds, mean over validation images, per modality.",
    )
    worst = sorted(
        (r for r in per_image if r["modality"] == "fluorescence"),
        key=lambda r: r["model"]["dsb_score"],
    )[: N_FAILURES - 1]
    others = [
        min((r for r in per_image if r["modality"] == mod), key=lambda r: r["model"]["dsb_score"])
        for mod in split["validation"]
        if mod != "fluorescence"
    ]
    cases = []
    for r in [*worst, *others]:
        image = imread(DSB / "images" / f"{r['id']}.png").data
        cases.append(
            {
                **r,
                "image": image[..., :3] if image.ndim == 3 else image,
                "truth": _truth(r["id"]),
                "pred": r["model_labels"],
                "base": r["baseline_labels"],
            }
        )
    bench.figure(
        _failure_figure(cases),
        "failures",
        "Failure cases: the validation images where the model scores lowest (fluorescence, "
        "then the worst brightfield and histology images), with the true, model and baseline "
        "outlines.",
    )
    bench.set(
        "failures",
        [
            {"id": c["id"], "modality": c["modality"], "model_dsb_score": c["model"]["dsb_score"]}
            for c in cases
        ],
    )
    for part in parts:
        _run_part(bench, part, quick=args.quick)
    json_path, md_path = bench.write()
    print(f"wrote {json_path} and {md_path}")


def save_part(part: str, result: dict[str, Any], *, note: str = "") -> None:
    """Write one part run alone as ``results/segmentation_<part>.json`` and ``.md``.

    For a part's own ``__main__`` (its extra options, a quick look); the full
    run merges every part into ``segmentation.json`` instead.
    """
    bench = Benchmark(
        f"segmentation_{part}",
        description=f"{PARTS[part]}: part '{part}' of benchmarks/segmentation.py, run alone.",
    )
    for key, value in result["json"].items():
        bench.set(key, value)
    if note:
        bench.text(note)
    bench.text(result["md"])
    json_path, md_path = bench.write()
    print(f"wrote {json_path} and {md_path}")


def _run_part(bench: Benchmark, part: str, *, quick: bool) -> None:
    """Run ``benchmarks/segmentation_<part>.py`` in this run and merge its keys and section."""
    import importlib

    start = time.perf_counter()
    try:
        result = importlib.import_module(f"segmentation_{part}").run(quick=quick)
    except Exception as exc:  # one broken part must not lose the others: recorded, not hidden
        import traceback

        traceback.print_exc()
        bench.set(f"parts.{part}.error", f"{type(exc).__name__}: {exc}")
        bench.text(f"## {PARTS[part]}\n\nThis part failed in this run: `{exc!r}`")
        return
    for key, value in result["json"].items():
        bench.set(key, value)
    bench.set(f"parts.{part}.seconds", round(time.perf_counter() - start, 1))
    md = result["md"].strip()
    if not md.startswith("#"):  # a part without its own heading gets one
        md = f"## {PARTS[part]}\n\n{md}"
    bench.text(md + ("\n\n(quick mode)" if quick else ""))


if __name__ == "__main__":
    main()
