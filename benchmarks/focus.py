"""Benchmark of focus rating: the shipped model against classical focus measures.

Run from the repository root (about 5-10 minutes on 2 CPU cores)::

    nice -n 10 python benchmarks/focus.py

Writes ``benchmarks/results/focus.json`` and ``focus.md`` (+ PNG figures).

What is measured, all in one run:

- **Simulated held-out data**: the held-out sources of the model card (3
  BBBC006 fields and the held-out DSB 2018 fluorescence images recorded in
  focus, never trained on), simulated at each exact level 0-10 with seeded
  random camera settings. Patch-level exact and within-one accuracy and
  binary F1 on patches with objects; image-level F1 of the verdict. The
  held-out DSB images the training script found recorded out of focus are
  scored apart and pooled (``sim_within_one_blurred_sources``,
  ``sim_within_one_all_sources``).
- **Real defocus** (never trained on): DFNN light-sheet single-field defocus
  series (mitochondria, microtubules) and the mitochondria z-stack. Spearman
  correlation of the image's certainty-weighted mean level with |defocus|;
  F1 of the out-of-focus class with the cut |defocus| > 0.3 um (about half
  the depth of field of an NA 1.1 water objective at 520 nm) as truth; the
  model's verdict needs no threshold (``real_f1``); for a like-for-like
  comparison, also with a threshold on its mean level fitted as for the
  classical measures (``real_f1_fitted_threshold``). Best-plane error of the stack (planes
  from the 0 um plane). Real BBBC006: held-out in-focus fields against the 20
  strongly blurred ``00_mcf-z-stacks`` fields (F1).
- **Classical measures** side by side: variance of Laplacian, Brenner
  gradient, normalized variance, power-spectrum log-log slope. They need a
  threshold and a direction: fitted (max F1) on simulated images of the *training* sources
  for the simulated and BBBC006 sets, and on the *other* DFNN series for each
  DFNN series (both series for the stack). Their Spearman is that of minus
  the measure (textbook direction: sharpness falls with defocus); a negative
  value means the measure moves the other way on that data.
- **Throughput**: patches per second for a 2048x2048 image on this CPU (and
  on CUDA when available).

The F1 positive class everywhere is "out of focus" (what QC must find):
levels 3-10 for simulated data.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import RESULTS, Benchmark

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DFNN = SHARED / "focus" / "dfnn_lightsheet_defocus"
BBBC = SHARED / "focus" / "bbbc006_subset"
DFNN_CUT_UM = 0.3

logger = logging.getLogger("bench.focus")


def _train_module() -> Any:
    """The training script as a module (it holds the data split and the simulation)."""
    spec = importlib.util.spec_from_file_location("train_focus", ROOT / "scripts/train/focus.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["train_focus"] = mod
    spec.loader.exec_module(mod)
    return mod


def _spearman(a: Any, b: Any) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def _fit_threshold(scores: np.ndarray, out_truth: np.ndarray, f1: Any) -> tuple[float, int]:
    """Threshold and direction maximizing F1 of 'out of focus' := sign * score < sign * t.

    ``sign`` is +1 when low scores mean blur (the textbook direction) and -1
    when the fitting data say the measure runs the other way.
    """
    s = np.sort(np.unique(scores[np.isfinite(scores)]))
    candidates = np.concatenate([[s[0] - 1], 0.5 * (s[1:] + s[:-1]), [s[-1] + 1]])
    best = max(
        ((t, sign) for t in candidates for sign in (1, -1)),
        key=lambda ts: (np.nan_to_num(f1(out_truth, ts[1] * scores < ts[1] * ts[0])), ts[1]),
    )
    return float(best[0]), int(best[1])


def _rate_images(fm: Any, images: list[np.ndarray]) -> pd.DataFrame:
    from cytolens.focus import rate_focus
    from cytolens.focus.classical import focus_measures

    rows = []
    for img in images:
        res = rate_focus(img, model=fm)
        rows.append(
            {
                "mean_level": res.mean_level,
                "out": res.in_focus is False,
                "verdict": res.verdict,
                "p_in_focus": res.p_in_focus,
                **focus_measures(img),
            }
        )
    return pd.DataFrame(rows)


def _read(path: Path) -> np.ndarray:
    from cytolens.io import imread

    return np.asarray(imread(path).data)


def simulated(
    bench: Benchmark, tm: Any, fm: Any, measures: list[str], max_dsb: int | None
) -> dict[str, tuple[float, int]]:
    """Held-out simulated evaluation, and classical thresholds fitted on training sources."""
    held = fm.card.training["heldout"]
    bank = tm.PSFBank()
    # the card's held-out DSB images, split by the training script's in-focus rule
    max_width = tm.max_in_focus_edge_width()
    ids = held["dsb2018"] + fm.card.training.get("heldout_blurred_sources", {}).get("dsb2018", [])
    in_focus = tm.in_focus_dsb(sorted(ids), max_width)
    blurred = sorted(set(ids) - set(in_focus))
    counts = {"bbbc006": len(held["bbbc006"]), "dsb2018_in_focus": len(in_focus)}
    bench.set("sim_sources", {**counts, "dsb2018_blurred": len(blurred), "max_edge_px": max_width})
    bbbc_held, dsb_held = tm.load_sources(held["bbbc006"], in_focus[:max_dsb])
    test_set = tm.evaluation_set(bbbc_held + dsb_held, seed=12345, bank=bank)
    table = tm.rate_set(fm, test_set)
    m = tm.sim_metrics(table, fm.in_focus_levels)
    for key in ("sim_exact", "sim_within_one", "sim_mae_expected_level"):
        bench.set(key, round(m[key], 4))
    obj = table[~table["true_blank"]]
    pin = obj[[f"p{k}" for k in range(fm.in_focus_levels)]].sum(axis=1)
    bench.set("sim_f1", round(tm.f1_score(obj["true_level"] >= fm.in_focus_levels, pin <= 0.5), 4))
    bench.set("sim_patches", {"object": len(obj), "blank": int(table["true_blank"].sum())})
    bench.set("sim_blank_median_certainty", round(m["blank_median_certainty"], 4))
    bench.set("sim_object_median_certainty", round(m["object_median_certainty"], 4))
    _calibration(bench, obj, fm)
    _blurred_sources(bench, tm, fm, table, bank, blurred[:max_dsb])

    # image level: ours (verdict) and classical measures (thresholds from training sources)
    from cytolens.focus.classical import focus_measures

    img_true = np.array([ev.level >= fm.in_focus_levels for ev in test_set])
    per_image = table.groupby("image_id").first()
    ours_out = per_image["image_verdict_in"].to_numpy() == False  # noqa: E712 (None = no content)
    bench.set("sim_image_f1", round(tm.f1_score(img_true, ours_out), 4))
    bench.set(
        "sim_image_spearman",
        round(
            _spearman(per_image["image_mean_level"].fillna(10), [ev.level for ev in test_set]), 4
        ),
    )
    fit_ids = tm.in_focus_dsb(tm.dsb_split()[0][:120], max_width)[: max_dsb or 60]
    fit_bbbc, fit_dsb = tm.load_sources(tm.BBBC_TRAIN, fit_ids)
    fit_set = tm.evaluation_set(fit_bbbc + fit_dsb, seed=777, bank=bank)
    fit_scores = pd.DataFrame([focus_measures(ev.image) for ev in fit_set])
    fit_true = np.array([ev.level >= fm.in_focus_levels for ev in fit_set])
    test_scores = pd.DataFrame([focus_measures(ev.image) for ev in test_set])
    thresholds = {}
    for name in measures:
        t, sign = _fit_threshold(fit_scores[name].to_numpy(), fit_true, tm.f1_score)
        thresholds[name] = (t, sign)
        bench.set(
            f"classical.{name}.sim_f1",
            round(tm.f1_score(img_true, sign * test_scores[name].to_numpy() < sign * t), 4),
        )
        bench.set(
            f"classical.{name}.sim_spearman",
            round(_spearman(-test_scores[name], [ev.level for ev in test_set]), 4),
        )
    bench.set(
        "classical_thresholds_sim",
        {m: {"threshold": t, "direction": sign} for m, (t, sign) in thresholds.items()},
    )
    _sim_figures(bench, table, test_set, fm)
    return thresholds


def _blurred_sources(
    bench: Benchmark, tm: Any, fm: Any, table: pd.DataFrame, bank: Any, blurred: list[str]
) -> None:
    """Held-out DSB images recorded out of focus: scored apart, and pooled with the rest.

    Their simulated "level 0" is already blurred, so their truth is off by
    about a level; the figures show what including them costs.
    """
    if not blurred:
        return
    _, sources = tm.load_sources([], blurred)
    extra = tm.rate_set(fm, tm.evaluation_set(sources, seed=12345, bank=bank))
    for key, part in (("blurred_sources", extra), ("all_sources", pd.concat([table, extra]))):
        m = tm.sim_metrics(part, fm.in_focus_levels)
        bench.set(f"sim_within_one_{key}", round(m["sim_within_one"], 4))
        bench.set(f"sim_exact_{key}", round(m["sim_exact"], 4))


def _calibration(bench: Benchmark, obj: pd.DataFrame, fm: Any) -> None:
    """Are the probabilities honest? ECE of level and in/out call; certainty vs accuracy."""
    import matplotlib.pyplot as plt

    from cytolens.evaluate import expected_calibration_error, reliability

    levels = obj[[f"p{k}" for k in range(fm.n_levels)]].to_numpy()
    truth = obj["true_level"].to_numpy()
    p_in = levels[:, : fm.in_focus_levels].sum(axis=1)
    binary = np.stack([p_in, 1 - p_in], axis=1)
    is_out = (truth >= fm.in_focus_levels).astype(int)
    bench.set("sim_ece_level", round(expected_calibration_error(levels, truth), 4))
    bench.set("sim_ece_in_out", round(expected_calibration_error(binary, is_out), 4))
    # certainty (1 - normalized entropy) is not a probability: show that it ranks reliability
    deciles = pd.qcut(obj["certainty"], 10, labels=False, duplicates="drop")
    within = (obj["level"] - obj["true_level"]).abs() <= 1
    by_certainty = within.groupby(deciles).mean()
    bench.set("sim_within_one_by_certainty_decile", [round(float(v), 4) for v in by_certainty])

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.8))
    for name, table in (
        ("level (11 classes)", reliability(levels, truth)),
        ("in / out of focus", reliability(binary, is_out)),
    ):
        ax1.plot(table["confidence"], table["accuracy"], "o-", label=name)
    ax1.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax1.set_xlabel("predicted probability of the chosen answer")
    ax1.set_ylabel("fraction right")
    ax1.legend(fontsize=8)
    ax1.set_title("reliability", fontsize=9)
    ax2.plot(np.arange(1, len(by_certainty) + 1), by_certainty.to_numpy(), "o-")
    ax2.set_xlabel("certainty decile (1 = least certain)")
    ax2.set_ylabel("within-one-level accuracy")
    ax2.set_title("certainty ranks reliability", fontsize=9)
    fig.tight_layout()
    bench.figure(
        fig,
        "sim_calibration",
        "Simulated held-out object patches: reliability of the level and in/out probabilities "
        "(diagonal = calibrated), and accuracy per certainty decile.",
    )


def _sim_figures(bench: Benchmark, table: pd.DataFrame, test_set: list, fm: Any) -> None:
    import matplotlib.pyplot as plt

    obj = table[~table["true_blank"]]
    n = fm.n_levels
    conf = np.zeros((n, n))
    for t, p in zip(obj["true_level"], obj["level"], strict=True):
        conf[t, p] += 1
    conf /= np.maximum(conf.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5, 4.3))
    im = ax.imshow(conf, cmap="Blues", vmin=0, vmax=1)
    ax.set_xlabel("predicted level")
    ax.set_ylabel("true level")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    fig.colorbar(im, ax=ax, fraction=0.046)
    bench.figure(
        fig,
        "sim_confusion",
        "Simulated held-out patches with objects: confusion matrix (rows normalized).",
    )

    # failure pictures: patches off by >= 2 levels
    bad = obj[(obj["level"] - obj["true_level"]).abs() >= 2]
    if len(bad):
        pick = bad.sample(min(12, len(bad)), random_state=0)
        fig, axes = plt.subplots(2, 6, figsize=(13, 4.8), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        from cytolens.report import to_display

        for ax, rec in zip(axes.flat, pick.itertuples(), strict=False):
            ev = test_set[int(rec.image_id)]
            ps = fm.patch_size
            y0, x0 = int(rec.y0_px), int(rec.x0_px)
            patch = ev.image[y0 : y0 + ps, x0 : x0 + ps]
            ax.imshow(to_display(patch), cmap="gray")
            ax.set_title(
                f"{ev.source[:14]}\ntrue {rec.true_level} pred {rec.level} c={rec.certainty:.2f}",
                fontsize=7,
            )
        fig.tight_layout()
        bench.figure(
            fig,
            "sim_failures",
            f"Simulated failures: {len(bad)} of {len(obj)} "
            "object patches are off by two or more levels; 12 at random.",
        )


def _dfnn_sets() -> dict[str, pd.DataFrame]:
    labels = pd.read_csv(DFNN / "labels.csv")
    sets = {}
    for (structure, kind), grp in labels.groupby(["structure", "kind"]):
        sets[f"dfnn_{structure}_{kind}"] = grp.sort_values("defocus_um").reset_index(drop=True)
    return sets


def real(bench: Benchmark, tm: Any, fm: Any, measures: list[str], sim_thresholds: dict) -> None:
    import matplotlib.pyplot as plt

    sets = _dfnn_sets()
    rated = {}
    for name, grp in sets.items():
        images = [_read(DFNN / f) for f in grp["file"]]
        r = _rate_images(fm, images)
        r["defocus_um"] = grp["defocus_um"].to_numpy()
        r["file"] = grp["file"].to_numpy()
        rated[name] = r
    singles = [n for n in rated if n.endswith("_single")]
    rows = []
    for name, r in rated.items():
        absd = r["defocus_um"].abs().to_numpy()
        truth = absd > DFNN_CUT_UM
        row = {
            "dataset": name,
            "images": len(r),
            "ours_spearman": _spearman(r["mean_level"].fillna(10), absd),
            "ours_f1": tm.f1_score(truth, r["out"].to_numpy()),
        }
        bench.set(f"real_spearman.{name}", round(row["ours_spearman"], 4))
        bench.set(f"real_f1.{name}", round(row["ours_f1"], 4))
        fit_on = [n for n in singles if n != name] if name in singles else singles
        fit = pd.concat([rated[n] for n in fit_on])
        # ours with a threshold fitted like the classical ones (mean level, other series)
        t, sign = _fit_threshold(
            -fit["mean_level"].fillna(10).to_numpy(),
            fit["defocus_um"].abs().to_numpy() > DFNN_CUT_UM,
            tm.f1_score,
        )
        row["ours_fitted_f1"] = tm.f1_score(truth, sign * -r["mean_level"].fillna(10) < sign * t)
        bench.set(f"real_f1_fitted_threshold.{name}", round(row["ours_fitted_f1"], 4))
        for m in measures:
            t, sign = _fit_threshold(
                fit[m].to_numpy(), fit["defocus_um"].abs().to_numpy() > DFNN_CUT_UM, tm.f1_score
            )
            f1 = tm.f1_score(truth, sign * r[m].to_numpy() < sign * t)
            rho = _spearman(-r[m], absd)
            bench.set(f"classical.{m}.real_f1.{name}", round(f1, 4))
            bench.set(f"classical.{m}.real_spearman.{name}", round(rho, 4))
            row[f"{m}_spearman"], row[f"{m}_f1"] = rho, f1
        rows.append(row)
        if name.endswith("_stack"):
            true_best = int(np.argmin(absd))
            from cytolens.focus import best_plane
            from cytolens.focus.overlay import save_plane_scores
            from cytolens.io import imread_stack

            stack = imread_stack([DFNN / f for f in r["file"]])
            ours, scores = best_plane(stack, model=fm)
            curve = save_plane_scores(
                RESULTS / f"focus_{name}_curve.png",
                scores,
                ours,
                in_focus_levels=fm.in_focus_levels,
                title=f"{name}: best plane {ours} (true {true_best}, 0.05 um apart)",
            )
            bench.text(
                f"![{name}: per-plane focus curve]({curve.name})\n\n"
                f"`cytolens focus best-plane` on the {len(r)} planes of {name}: mean level "
                f"and P(in focus) per plane; picked plane {ours}, true in-focus plane {true_best}."
            )
            bench.set(f"best_plane_error.{name}", abs(ours - true_best))
            bench.set(f"best_plane_defocus_um.{name}", float(r["defocus_um"].iloc[ours]))
            for m in measures:
                pick = int(np.nanargmax(r[m].to_numpy()))
                bench.set(f"classical.{m}.best_plane_error.{name}", abs(pick - true_best))
    bench.table(
        "Real defocus (DFNN light sheet): Spearman with |defocus| and F1 at "
        f"|defocus| > {DFNN_CUT_UM} um",
        [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()} for row in rows],
    )

    # figure: mean level and a classical measure against defocus
    fig, axes = plt.subplots(1, len(rated), figsize=(4.2 * len(rated), 3.4), squeeze=False)
    for ax, (name, r) in zip(axes.flat, rated.items(), strict=True):
        ax.plot(r["defocus_um"], r["mean_level"], "o-", label="ours: mean level")
        ax.set_xlabel("defocus (um)")
        ax.set_ylabel("mean level")
        ax.set_title(name, fontsize=9)
        ax2 = ax.twinx()
        v = r["variance_of_laplacian"]
        ax2.plot(r["defocus_um"], v / v.max(), "s--", color="C1", label="var. of Laplacian")
        ax2.set_ylabel("variance of Laplacian (rel.)")
        ax.axvspan(-DFNN_CUT_UM, DFNN_CUT_UM, color="g", alpha=0.08)
    fig.tight_layout()
    bench.figure(
        fig,
        "dfnn_levels",
        "DFNN: our certainty-weighted mean level (blue) and the "
        "variance of Laplacian (orange) against the set defocus; green band = in focus "
        "by the stated cut.",
    )
    _dfnn_failures(bench, rated, fm)
    _bbbc_real(bench, tm, fm, measures, sim_thresholds)


def _dfnn_failures(bench: Benchmark, rated: dict, fm: Any) -> None:
    """Overlays of the DFNN images whose verdict disagrees with the cut."""
    import matplotlib.pyplot as plt

    from cytolens.focus import overlay_rgb, rate_focus

    wrong = []
    for r in rated.values():
        truth = r["defocus_um"].abs() > DFNN_CUT_UM
        wrong += [rec for rec, t in zip(r.itertuples(), truth, strict=True) if rec.out != t]
    if not wrong:
        bench.text("No DFNN image is misjudged at the stated cut.")
        return
    pick = sorted(wrong, key=lambda rec: abs(rec.defocus_um))[:: max(1, len(wrong) // 4)][:4]
    fig, axes = plt.subplots(1, len(pick), figsize=(3.6 * len(pick), 5), squeeze=False)
    for ax, rec in zip(axes.flat, pick, strict=True):
        img = _read(DFNN / rec.file)
        ax.imshow(overlay_rgb(img, rate_focus(img, model=fm)))
        ax.set_title(
            f"{Path(rec.file).name[:22]}\n{rec.defocus_um:+.2f} um: {rec.verdict}, "
            f"level {rec.mean_level:.1f}",
            fontsize=8,
        )
        ax.axis("off")
    fig.tight_layout()
    bench.figure(
        fig,
        "dfnn_failures",
        f"DFNN failures: {len(wrong)} images judged against the "
        f"|defocus| > {DFNN_CUT_UM} um cut; up to four shown with their patch overlays.",
    )


def _bbbc_real(bench: Benchmark, tm: Any, fm: Any, measures: list[str], thresholds: dict) -> None:
    """Held-out in-focus BBBC006 fields vs the strongly blurred fields; sim-fitted thresholds."""
    held = fm.card.training["heldout"]["bbbc006"]
    files = [tm.bbbc_path(f) for f in held] + sorted(BBBC.glob("00_mcf-z-stacks-*.tif"))
    truth = np.array([f.name.startswith("00_mcf") for f in files])
    r = _rate_images(fm, [_read(f) for f in files])
    bench.set("real_f1.bbbc006", round(tm.f1_score(truth, r["out"].to_numpy()), 4))
    bench.set("real_accuracy.bbbc006", round(float((truth == r["out"].to_numpy()).mean()), 4))
    for m in measures:
        t, sign = thresholds[m]
        bench.set(
            f"classical.{m}.real_f1.bbbc006",
            round(tm.f1_score(truth, sign * r[m].to_numpy() < sign * t), 4),
        )


def throughput(bench: Benchmark, fm_cpu: Any, model: str) -> None:
    import torch

    from cytolens import data
    from cytolens.focus import FocusModel, rate_focus

    field = data.nuclei().data
    img = np.tile(field, (4, 3))[:2048, :2048]
    n_patches = (2048 // 84) ** 2
    t = bench.time(rate_focus, img, model=fm_cpu, repeat=3, warmup=1)
    bench.set("patches_per_s", round(n_patches / t.median_s, 1))
    bench.set(
        "throughput.cpu",
        {**t.as_dict(), "patches": n_patches, "torch_threads": torch.get_num_threads()},
    )
    if torch.cuda.is_available():
        fm_gpu = FocusModel.load(model, device="cuda")
        t = bench.time(rate_focus, img, model=fm_gpu, repeat=3, warmup=1)
        bench.set("patches_per_s_cuda", round(n_patches / t.median_s, 1))


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--max-dsb", type=int, default=None, help="limit held-out DSB images (quick check)"
    )
    parser.add_argument(
        "--model", default="focus-miq-v1", help="model name or folder (default: the shipped one)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not SHARED.exists():
        sys.exit(f"{SHARED} not found: the shared data folder must sit beside the repository")
    from cytolens.focus import FocusModel
    from cytolens.focus.classical import MEASURES

    bench = Benchmark("focus", description=__doc__.split("\n\n")[0])
    tm = _train_module()
    fm = FocusModel.load(args.model, device="cpu")
    measures = list(MEASURES)
    bench.set(
        "model",
        {
            "name": fm.name,
            "in_focus_levels": fm.in_focus_levels,
            "blank_certainty": fm.blank_certainty,
        },
    )
    logger.info("simulated held-out set")
    thresholds = simulated(bench, tm, fm, measures, args.max_dsb)
    logger.info("real sets")
    real(bench, tm, fm, measures, thresholds)
    logger.info("throughput")
    throughput(bench, fm, args.model)
    res = bench.results
    summary = [
        {
            "measure": f"ours ({fm.name}, no threshold)",
            "sim_f1": res["sim_image_f1"],
            **{f"f1 {k}": v for k, v in res["real_f1"].items()},
            **{f"rho {k}": v for k, v in res["real_spearman"].items()},
        }
    ]
    for m in measures:
        c = res["classical"][m]
        summary.append(
            {
                "measure": f"{m} (fitted threshold)",
                "sim_f1": c["sim_f1"],
                **{f"f1 {k}": v for k, v in c["real_f1"].items()},
                **{f"rho {k}": v for k, v in c["real_spearman"].items()},
            }
        )
    bench.table("Image-level F1 (out of focus = positive) and Spearman, ours vs classical", summary)
    bench.text(
        f"Simulated held-out patches with objects: exact level {res['sim_exact']:.3f}, within "
        f"one level {res['sim_within_one']:.3f}, patch F1 {res['sim_f1']:.3f} (in-focus "
        "sources; with the held-out DSB images recorded out of focus added: within one "
        f"level {res.get('sim_within_one_all_sources', float('nan')):.3f}, on those alone "
        f"{res.get('sim_within_one_blurred_sources', float('nan')):.3f}); calibration error "
        f"(ECE) {res['sim_ece_level']:.3f} for the level, {res['sim_ece_in_out']:.3f} for the "
        f"in/out call. Throughput "
        f"{res['patches_per_s']} patches/s for a 2048x2048 image on CPU."
    )
    json_path, md_path = bench.write()
    logger.info("wrote %s and %s", json_path, md_path)


if __name__ == "__main__":
    main()
