"""Cell phenotypes on MitoCheck: cytolens vs classical features (LR, RF), learning curve with a
self-supervised pretrained encoder vs from scratch, exploration scores, throughput.

One run measures everything; writes ``benchmarks/results/phenotypes.json`` and ``.md`` (+ PNGs).

- ``stratified``: the shipped ``mitocheck-v1`` (trained by ``scripts/train/mitocheck.py`` on
  the other crops: a CNN, then a hybrid head, a logistic regression on its 8-view averaged
  embedding + the classical features) on the stratified test split of
  ``src/cytolens/phenotype/mitocheck_split.json``; peers: scikit-image regionprops shape +
  intensity + Haralick/LBP texture features (:func:`cytolens.explore.classical_features`)
  with logistic regression and a random forest trained on the same training crops.
- ``grouped``: the same on the grouped split (no plate/well on both sides): the same recipe
  (CNN fine-tuned from the self-supervised encoder, then the hybrid head) is trained on the
  grouped training crops in this run; ``cytolens_cnn`` is its CNN alone (ablation).
- ``learning_curve``: 10/25/50/100 % of the stratified training labels, fine-tuned from the
  shipped self-supervised encoder (pretrained on the unlabeled training crops) vs from scratch.
- ``explore``: leave-one-out 5-NN accuracy and AMI (HDBSCAN clusters vs classes) of
  embeddings. ``learned``: the shipped model's embedding (what ``cytolens explore`` uses) of
  the held-out stratified test crops (their labels unused by training), ``classical`` on the
  same crops; ``*_grouped``: the grouped model on the grouped test crops (wells never seen);
  ``self_supervised_all`` / ``classical_all``: the label-free SimCLR encoder vs classical
  features on all crops.
- ``throughput``: cells/s from crops, and from a raw image including nucleus segmentation.

Usage: ``nice -n 10 .venv/bin/python benchmarks/phenotypes.py [--quick]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Benchmark

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "classification" / "mitocheck"
SPLIT = ROOT / "src" / "cytolens" / "phenotype" / "mitocheck_split.json"
SCORES = ("weighted_f1", "macro_f1", "balanced_accuracy", "accuracy", "ece")


def _index(cs: object, names: list[str]) -> np.ndarray:
    wanted = set(names)
    return np.array([i for i, f in enumerate(cs.files) if str(Path(f).relative_to(DATA)) in wanted])


def _scores(report: dict) -> dict:
    return {k: round(float(report[k]), 4) for k in SCORES}


def _peers(
    features: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    names: list[str],
    threads: int,
) -> dict:
    """Logistic regression and random forest on classical features."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from cytolens.phenotype.evaluation import classification_report

    out = {}
    models = {
        "features_lr": make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=1.0)),
        "features_rf": RandomForestClassifier(
            n_estimators=400, class_weight="balanced_subsample", random_state=0, n_jobs=threads
        ),
    }
    for key, model in models.items():
        model.fit(features[train], y[train])
        p = np.zeros((len(test), len(names)))
        p[:, model.classes_] = model.predict_proba(features[test])
        out[key] = classification_report(y[test], p, names)
    return out


def _curve_subset(y: np.ndarray, train: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A stratified ``fraction`` of the training crops (at least 2 per class)."""
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(y[train]):
        idx = train[y[train] == c]
        keep += rng.permutation(idx)[: max(2, round(fraction * len(idx)))].tolist()
    return np.sort(np.array(keep))


def main() -> None:
    import torch

    from cytolens.explore import classical_features, cluster_ami, explore_embeddings, knn_accuracy
    from cytolens.explore.report import thumbnail_map
    from cytolens.phenotype import PhenotypeClassifier, read_crop_set
    from cytolens.phenotype.crops import crop_group
    from cytolens.phenotype.evaluation import classification_report, confusion_figure
    from cytolens.phenotype.network import CropEncoder
    from cytolens.phenotype.train import (
        fit_hybrid_head,
        grouped_split,
        stratified_split,
        train_classifier,
    )

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer training steps (shared CPU)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fractions", default="0.1,0.25,0.5,1.0", help="learning-curve points")
    ap.add_argument("--grouped-steps", type=int, default=None, help="override the preset")
    ap.add_argument("--curve-steps", type=int, default=None, help="override the preset")
    args = ap.parse_args()
    fractions = [float(f) for f in args.fractions.split(",")]
    torch.set_num_threads(args.threads)
    steps = (
        {"grouped": 250, "curve": 100, "batch": 32}
        if args.quick
        else {"grouped": 500, "curve": 400, "batch": 48}
    )
    steps["grouped"] = args.grouped_steps or steps["grouped"]
    steps["curve"] = args.curve_steps or steps["curve"]
    bench = Benchmark("phenotypes", description=__doc__.splitlines()[0])
    cs = read_crop_set(DATA / "labels.csv")
    split = json.loads(SPLIT.read_text())
    y, names = cs.labels, cs.class_names
    t0 = time.perf_counter()
    feats = classical_features(cs.crops).to_numpy(np.float64)
    feat_s = time.perf_counter() - t0
    bench.set(
        "classical_features",
        {
            "n_features": feats.shape[1],
            "seconds": round(feat_s, 1),
            "cells_per_s": round(len(cs) / feat_s, 1),
        },
    )
    model = PhenotypeClassifier.load("mitocheck-v1", device="cpu")
    ssl_state = torch.load(
        model.folder / "pretrained_encoder.pt", map_location="cpu", weights_only=True
    )
    bench.set(
        "settings",
        {
            "quick": args.quick,
            "steps": steps,
            "threads": args.threads,
            "n_crops": len(cs),
            "classes": len(names),
            "model_card_training": model.card.training.get(
                "training_command", model.card.training_command
            ),
        },
    )

    # --------------------------------------------------------------- classification
    rows = []
    groups = np.array([crop_group(f) for f in cs.files])
    grouped_model = None
    for split_name in ("stratified", "grouped"):
        test = _index(cs, split[f"{split_name}_test"])
        train = np.setdiff1d(np.arange(len(cs)), test)
        extra = {}
        if split_name == "stratified":
            clf = model
            train_note = "shipped mitocheck-v1 (CNN + hybrid head)"
        else:
            tr = cs.subset(train)
            # validation: whole groups of the training side (for the temperature only)
            _, val = grouped_split(tr.labels, groups[train], 0.15, seed=0)
            t_fit = time.perf_counter()
            res = train_classifier(
                tr,
                val_index=val,
                encoder=ssl_state,
                steps=steps["grouped"],
                batch_size=steps["batch"],
                threads=args.threads,
                name="grouped",
            )
            cnn = res.classifier
            extra["cytolens_cnn"] = classification_report(
                y[test], cnn.probabilities(cnn.logits(cs.crops[test])), names
            )
            clf = grouped_model = fit_hybrid_head(res, tr).classifier
            bench.set("grouped.training_s", round(time.perf_counter() - t_fit, 1))
            train_note = (
                f"CNN fine-tuned {steps['grouped']} steps (batch {steps['batch']}) on the grouped "
                "training crops in this run, from the shipped self-supervised encoder (its "
                "label-free pretraining saw the stratified training crops, which include "
                "crops of the grouped test wells: transductive, no labels), then the hybrid head "
                "(logistic regression on the 8-view embedding + classical features)"
            )
        rep = classification_report(y[test], clf.probabilities(clf.logits(cs.crops[test])), names)
        peers = _peers(feats, y, train, test, names, args.threads)
        bench.set(f"{split_name}.n_test", len(test))
        bench.set(f"{split_name}.cytolens", _scores(rep) | {"model": train_note})
        for key, prep in [*extra.items(), *peers.items()]:
            bench.set(f"{split_name}.{key}", _scores(prep))
        per_class = rep["per_class"].assign(
            lr_f1=peers["features_lr"]["per_class"]["f1"],
            rf_f1=peers["features_rf"]["per_class"]["f1"],
        )
        bench.set(f"{split_name}.per_class", per_class.round(3).to_dict(orient="records"))
        for who, r in [("cytolens", rep), *extra.items(), *peers.items()]:
            rows.append({"split": split_name, "method": who, "n_test": len(test), **_scores(r)})
        bench.figure(
            confusion_figure(rep["confusion"], names, f"cytolens, {split_name} test split"),
            f"confusion_{split_name}",
            f"Confusion matrix, {split_name} split",
        )
        if split_name == "stratified":
            bench.table(
                "Per-class F1, stratified split (support = test crops)",
                per_class.round(3).to_dict(orient="records"),
            )
    bench.table("Classification (held-out test crops)", rows)

    # --------------------------------------------------------------- learning curve
    test = _index(cs, split["stratified_test"])
    train = np.setdiff1d(np.arange(len(cs)), test)
    curve = []
    for fraction in fractions:
        sub = _curve_subset(y, train, fraction, seed=0)
        subset = cs.subset(sub)
        _, val = stratified_split(subset.labels, 0.15, seed=0)
        row = {"fraction": fraction, "n_labels": len(sub)}
        for who, enc in (("pretrained", ssl_state), ("scratch", None)):
            res = train_classifier(
                subset,
                val_index=val,
                encoder=enc,
                steps=steps["curve"],
                batch_size=32,
                threads=args.threads,
                name="curve",
                lr=2e-3,
            )
            c = res.classifier
            r = classification_report(y[test], c.probabilities(c.logits(cs.crops[test])), names)
            row[f"{who}_weighted_f1"] = round(r["weighted_f1"], 4)
            row[f"{who}_macro_f1"] = round(r["macro_f1"], 4)
        curve.append(row)
    bench.set("learning_curve", curve)
    bench.table(f"Learning curve (stratified test split; {steps['curve']} steps per run)", curve)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for who in ("pretrained", "scratch"):
        ax.plot(
            [r["n_labels"] for r in curve],
            [r[f"{who}_weighted_f1"] for r in curve],
            "o-",
            label=who,
        )
    ax.set_xscale("log")
    ax.set_xlabel("training labels")
    ax.set_ylabel("weighted F1 (test)")
    ax.legend()
    fig.tight_layout()
    bench.figure(fig, "learning_curve", "Weighted F1 vs number of training labels")

    # --------------------------------------------------------------- exploration
    encoder = CropEncoder(1, tuple(model.card.network["kwargs"]["widths"]))
    encoder.load_state_dict(ssl_state)
    encoder.eval()
    with torch.inference_mode():
        x = torch.from_numpy(model.prepare(cs.crops))
        ssl_emb = torch.cat([encoder(x[i : i + 512]) for i in range(0, len(x), 512)]).numpy()
    strat_test = _index(cs, split["stratified_test"])
    grouped_test = _index(cs, split["grouped_test"])
    shipped_test = model.embed(cs.crops[strat_test])
    cases = {
        "learned": (shipped_test, strat_test),
        "classical": (feats[strat_test], strat_test),
        "learned_grouped": (grouped_model.embed(cs.crops[grouped_test]), grouped_test),
        "classical_grouped": (feats[grouped_test], grouped_test),
        "self_supervised_all": (ssl_emb, np.arange(len(cs))),
        "classical_all": (feats, np.arange(len(cs))),
    }
    explore = {}
    tables = {}
    for kind, (emb, idx) in cases.items():
        res = explore_embeddings(emb, method="pca")
        tables[kind] = res.table
        explore[kind] = {
            "n_crops": len(idx),
            "knn_accuracy": round(knn_accuracy(emb, y[idx], k=5), 4),
            "ami": round(cluster_ami(res.table["cluster"], y[idx]), 4),
            "n_clusters": res.n_clusters,
            "noise_fraction": round(float((res.table["cluster"] == -1).mean()), 4),
            "ami_kmeans16": round(
                cluster_ami(
                    explore_embeddings(emb, method="pca", clustering="kmeans", n_clusters=16).table[
                        "cluster"
                    ],
                    y[idx],
                ),
                4,
            ),
            "dim": int(emb.shape[1]),
        }
    bench.set(
        "explore",
        explore
        | {
            "map": "pca",
            "clustering": "HDBSCAN (min_cluster_size "
            "max(5, N/100)) on 20 PCA components of standardized "
            "embeddings",
            "learned_embedding": "mitocheck-v1 encoder embedding (8-view average; what "
            "cytolens explore uses) of the 524 held-out stratified test crops: the encoder was "
            "fine-tuned with the labels of the other crops, never these",
            "learned_grouped_embedding": "the grouped-split model of this run on the grouped "
            "test crops (plates/wells unseen in its supervised training)",
            "self_supervised_embedding": "SimCLR encoder (pretrained_encoder.pt), no labels, "
            "all crops",
        },
    )
    bench.table(
        "Exploration (labels used only to score; see the crop sets in the JSON)",
        [{"embedding": k, **v} for k, v in explore.items()],
    )
    table = tables["learned"].assign(phenotype=[names[i] for i in y[strat_test]])
    bench.figure(
        thumbnail_map(cs.crops[strat_test], table, color="phenotype", n_thumbnails=150),
        "map",
        "PCA map of the mitocheck-v1 embedding of the held-out test crops, coloured by known "
        "class, with thumbnails",
    )

    # --------------------------------------------------------------- throughput
    from cytolens import data
    from cytolens.phenotype import predict_cells
    from cytolens.segment import nuclei

    t = bench.time(model.predict, cs.crops, repeat=3, warmup=1)
    img = np.asarray(data.nuclei())
    lab = nuclei(img, device="cpu")

    def raw() -> object:
        return predict_cells(img, nuclei(img, device="cpu"), model=model)

    tr_ = bench.time(raw, repeat=2, warmup=1)
    bench.set(
        "throughput",
        {
            "crops_cells_per_s": round(len(cs) / t.median_s, 1),
            "raw_image_cells_per_s": round(int(lab.max()) / tr_.median_s, 1),
            "raw_image": f"cytolens.data.nuclei() {img.shape}, {int(lab.max())} nuclei "
            "(segment.nuclei + crops + classification)",
            "threads": args.threads,
        },
    )
    bench.text(
        "Numbers measured in this run on a shared CPU (`nice -n 10`, "
        f"{args.threads} torch threads)"
        + (", `--quick`: " + json.dumps(steps) if args.quick else "")
        + "."
    )
    bench.write()


if __name__ == "__main__":
    main()
