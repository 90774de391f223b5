"""Train the shipped HPA protein-localization model ``hpa-v1`` on CPU.

Reproduces ``src/cytolens/models/weights/hpa-v1`` (weights + model card)::

    nice -n 5 python scripts/train/hpa.py --threads 1     # the shipped run
    python scripts/train/hpa.py --steps 20 --folds 2 --out /tmp/hpa-try   # a smoke run

Data: ``../shared/data/classification/hpa`` (75 Kaggle-format samples of the
Human Protein Atlas; HPA data terms, CC BY-SA 3.0; 20 of 28 classes present,
most with fewer than 10 images). The split is fixed in
``src/cytolens/classify/hpa_split.json`` (written by this script when absent,
checked against it otherwise): iterative stratification
(:func:`cytolens.classify.train.stratified_split`, seed 0) into 75 % training
and 25 % *validation* images, so the frequent classes appear on both sides.
The validation images are never used for training or for choosing anything;
they only give the held-out metrics of the card and of ``benchmarks/hpa.py``.

Steps:

1. out-of-fold predictions: the training images are split again into
   ``--folds`` stratified folds; a network is trained on all but one fold and
   predicts the held-out fold (whole images at the working scale);
2. per-class thresholds maximizing F1 on those out-of-fold predictions
   (classes with fewer than 2 training positives get the one threshold that
   maximizes micro F1 over all classes);
3. the final network is trained the same way on all training images and
   scored on the validation images; weights, thresholds, per-class support and
   metrics go into the model card.

Each training run: ``--steps`` batches of ``--batch-size`` examples (random
128 px crops at half resolution, or masked cell crops with probability 0.25),
see :mod:`cytolens.classify.train`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
HPA = ROOT.parent / "shared" / "data" / "classification" / "hpa"
SPLIT_FILE = ROOT / "src" / "cytolens" / "classify" / "hpa_split.json"
NAME = "hpa-v1"
VAL_FRACTION = 0.25

logger = logging.getLogger("train.hpa")


def make_split(ids: list[str], targets: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """The fixed validation split (iterative stratification, seeded)."""
    from cytolens.classify.train import stratified_split

    part = stratified_split(targets, [1 - VAL_FRACTION, VAL_FRACTION], seed=seed)
    return {
        "dataset": "shared/data/classification/hpa (75 HPA Kaggle-format samples)",
        "rule": (
            "cytolens.classify.train.stratified_split(targets of labels.csv in file order, "
            f"[{1 - VAL_FRACTION}, {VAL_FRACTION}], seed={seed}): part 0 -> train, 1 -> validation"
        ),
        "seed": seed,
        "train": sorted(i for i, k in zip(ids, part, strict=True) if k == 0),
        "validation": sorted(i for i, k in zip(ids, part, strict=True) if k == 1),
    }


def scores(y: np.ndarray, probs: np.ndarray, thresholds: np.ndarray) -> dict[str, Any]:
    """:func:`cytolens.classify.train.score_predictions` plus the per-class table."""
    from cytolens.classify.hpa import CLASS_NAMES
    from cytolens.classify.train import score_predictions
    from cytolens.evaluate import per_class_f1

    s = score_predictions(y, probs, thresholds)
    table = per_class_f1(y, probs >= thresholds[None, :], class_names=CLASS_NAMES)
    s["per_class"] = {
        int(r["class"]): {
            "name": r["name"],
            "support": int(r["support"]),
            "f1": None if np.isnan(r["f1"]) else round(float(r["f1"]), 4),
        }
        for _, r in table.iterrows()
        if r["support"] > 0 or r["predicted"] > 0
    }
    return s


def _rounded(scores: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()}


def run_cv(
    ids: list[str], y: np.ndarray, cfg: Any, folds: int, seed: int, cache: dict[str, Any]
) -> np.ndarray:
    """Out-of-fold probabilities ``(n, 28)`` of ``folds`` stratified folds."""
    from cytolens.classify.train import predict_probabilities, stratified_split, train_network

    part = stratified_split(y, [1.0] * folds, seed=seed + 1)
    oof = np.zeros(y.shape, np.float32)
    for k in range(folds):
        tr, te = np.flatnonzero(part != k), np.flatnonzero(part == k)
        ds = dataset([ids[i] for i in tr], y[tr], cfg, cache)
        t0 = time.perf_counter()
        net = train_network(ds, cfg.model_copy(update={"seed": cfg.seed + 100 * (k + 1)}))
        oof[te] = predict_probabilities(net, dataset([ids[i] for i in te], y[te], cfg, cache))
        logger.info(
            "fold %d/%d: %d images, %.0f s", k + 1, folds, len(te), time.perf_counter() - t0
        )
    return oof


def dataset(ids: list[str], y: np.ndarray, cfg: Any, cache: dict[str, Any]) -> Any:
    """A training dataset over ``ids`` sharing prepared images through ``cache``."""
    from cytolens.classify.train import HPADataset

    return HPADataset(
        HPA / "images", ids, y, crop=cfg.crop, scale=cfg.scale, cell_fraction=cfg.cell_fraction,
        cache=cache, seed=cfg.seed,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--folds", type=int, default=5, help="folds for out-of-fold thresholds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="registry root (default: package)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    if not HPA.exists():
        sys.exit(f"{HPA} not found: the shared data folder must sit beside the repository")

    import torch

    from cytolens.classify.hpa import CLASS_NAMES, read_labels, targets_to_matrix
    from cytolens.classify.train import (
        TrainConfig,
        card_parameters,
        card_training,
        fit_thresholds,
        predict_probabilities,
        train_network,
    )
    from cytolens.core.files import pin_json
    from cytolens.models import make_card, save_model

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    labels = read_labels(HPA / "labels.csv")
    all_ids = list(labels["id"])
    y_all = targets_to_matrix(labels["classes"])
    split = pin_json(SPLIT_FILE, make_split(all_ids, y_all, args.seed))
    row = {i: k for k, i in enumerate(all_ids)}
    tr = np.array([row[i] for i in split["train"]])
    va = np.array([row[i] for i in split["validation"]])
    ids_tr, y_tr = [all_ids[i] for i in tr], y_all[tr]
    cfg = TrainConfig(
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        threads=args.threads,
    )  # fmt: skip
    cache: dict[str, Any] = {}

    logger.info("%d training, %d validation images", len(tr), len(va))
    oof = run_cv(ids_tr, y_tr, cfg, args.folds, args.seed, cache)
    thresholds, pooled = fit_thresholds(oof, y_tr)
    oof_scores = scores(y_tr, oof, thresholds)
    logger.info(
        "out-of-fold (thresholds fitted on them): macro F1 %.3f, nucleolar F1 %.3f",
        oof_scores["macro_f1"],
        oof_scores["nucleolar_f1"],
    )

    t0 = time.perf_counter()
    net = train_network(dataset(ids_tr, y_tr, cfg, cache), cfg)
    train_s = time.perf_counter() - t0
    ids_va, y_va = [all_ids[i] for i in va], y_all[va]
    p_va = predict_probabilities(net, dataset(ids_va, y_va, cfg, cache))
    val = scores(y_va, p_va, thresholds)
    logger.info(
        "validation: macro F1 %.3f (%d classes present), micro F1 %.3f, nucleolar F1 %.3f",
        val["macro_f1"],
        val["n_classes_present"],
        val["micro_f1"],
        val["nucleolar_f1"],
    )
    support = {
        CLASS_NAMES[c]: {"train": int(y_tr[:, c].sum()), "validation": int(y_va[:, c].sum())}
        for c in range(len(CLASS_NAMES))
    }
    n_params = sum(p.numel() for p in net.parameters())
    rule = (
        f"per class, max F1 on {args.folds}-fold out-of-fold predictions of the training "
        "images; classes with < 2 training positives get default_threshold (max micro F1)"
    )
    card = make_card(
        name=NAME,
        task=(
            "multi-label protein localization (28 HPA classes) from 4-channel Human Protein "
            "Atlas images, per image and per masked cell crop"
        ),
        architecture=(
            "HPANet: strided 3x3 conv stages (24, 32, 64, 128, 160) with BN + ReLU, average + "
            f"max global pooling, dropout 0.3, linear 28 ({n_params} parameters)"
        ),
        input_axes="CYX",
        network={
            "entry_point": "cytolens.classify.network:HPANet",
            "kwargs": {"in_channels": 4, "n_classes": 28},
        },
        training_data=[
            "75 Human Protein Atlas samples in the Kaggle 2018 format "
            "(akashpalrecha/HumanProteinAtlasClassification, commit "
            "c6100bac84c2bb3a8a9ea418de4c80b7547a0313; HPA data terms, CC BY-SA 3.0; cite "
            f"Ouyang et al. 2019): {len(tr)} training images, {len(va)} validation images held "
            "out (src/cytolens/classify/hpa_split.json). A TINY, SKEWED set: 20 of 28 classes "
            "present, most with fewer than 10 images; 8 classes never seen; see "
            "training.support. The full competition set has about 31,000 images: fine-tune "
            "with `cytolens classify train` for real use.",
        ],
        training_command="nice -n 5 python scripts/train/hpa.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in sorted(vars(args).items()) if k != "out"
        ),
        licence="BSD-3-Clause (weights); training data: HPA terms (CC BY-SA 3.0)",
        normalization={
            "kind": "dtype_range",
            "description": "channel / dtype max (uint8 / 255, uint16 / 65535); floats as [0, 1]; "
            "channels: red (microtubules), green (protein), blue (nucleus), yellow (ER)",
        },
        parameters=card_parameters(cfg, thresholds, pooled, rule),
        training=card_training(
            cfg,
            pooled,
            rule,
            support=support,
            split_file="src/cytolens/classify/hpa_split.json",
        ),
        metrics={
            "validation": _rounded(val),
            "out_of_fold_training": _rounded(
                {k: v for k, v in oof_scores.items() if k != "per_class"}
            ),
            "note": (
                f"validation = {len(va)} images, {val['n_classes_present']} classes present, "
                "most with 1-2 positives: per-class F1 is anecdotal; macro F1 is over classes "
                "present in the validation images"
            ),
            "train_s": round(train_s, 1),
            "train_threads": args.threads,
            "total_s": round(time.perf_counter() - t_start, 1),
        },
        description=(
            "Where the green protein sits: 28 probabilities with per-class thresholds. Trained "
            f"on only {len(tr)} images; classes with no or one training image cannot be "
            "predicted reliably (support in training.support)."
        ),
    )
    folder = save_model(net.state_dict(), card, root=args.out)
    size_mb = (folder / "weights.pt").stat().st_size / 2**20
    logger.info("saved %s (%.2f MB) in %.0f s", folder, size_mb, time.perf_counter() - t_start)


if __name__ == "__main__":
    main()
