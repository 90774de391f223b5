"""Train the shipped MitoCheck phenotype model ``mitocheck-v1`` on CPU.

1. Fixed splits of ``../shared/data/classification/mitocheck`` (2,620 H2B-GFP nucleus
   crops, 16 classes): a stratified test split (20 % of each class, seed 0) and a grouped
   one (no plate/well on both sides), written to ``src/cytolens/phenotype/mitocheck_split.json``.
2. Self-supervised (SimCLR) pretraining of the crop encoder on the training crops of the
   stratified split, labels unused; saved as ``pretrained_encoder.pt`` beside the model.
3. Fine-tuning of the classifier from that encoder (class-balanced sampling, augmentation)
   on the training crops less a validation split (15 % of each class).
4. The hybrid head (:func:`cytolens.phenotype.train.fit_hybrid_head`): a logistic regression
   on the encoder embedding averaged over the 8 dihedral views + the classical shape,
   intensity and texture features, fitted on the same training crops and folded into the
   network's linear head; temperature calibration on the validation crops; test scores on
   the stratified test split (CNN alone and hybrid), the card and the applicability reference.
   The CNN's own head is kept as ``cnn_head.pt`` (to refit the hybrid head with ``--reuse-cnn``).

Usage::

    nice -n 10 .venv/bin/python scripts/train/mitocheck.py [--ssl-steps 500] [--steps 2000]
    # steps 1-3 kept from the model folder (same encoder), step 4 only:
    nice -n 10 .venv/bin/python scripts/train/mitocheck.py --reuse-cnn
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "classification" / "mitocheck"
SPLIT_FILE = ROOT / "src" / "cytolens" / "phenotype" / "mitocheck_split.json"
NAME = "mitocheck-v1"
VERSION = "1.1.0"
ENCODER_FILE = "pretrained_encoder.pt"
CNN_HEAD_FILE = "cnn_head.pt"
TRAINING_DATA = [
    "MitoCheck single-nucleus crops (Neumann et al. 2010, Nature) as published by "
    "WayScience/phenotypic_profiling_model (commit 19bb7644, CC-BY-4.0), 80 % sample of "
    "each class: 2,620 crops, 16 classes; training crops: the stratified split in "
    "src/cytolens/phenotype/mitocheck_split.json"
]

logger = logging.getLogger("train.mitocheck")


def make_splits(cs: object, seed: int = 0) -> dict:
    """The stratified and grouped test splits (file names relative to the data folder)."""
    from cytolens.phenotype.crops import crop_group
    from cytolens.phenotype.train import grouped_split, stratified_split

    rel = [str(Path(f).relative_to(DATA)) for f in cs.files]
    _, strat = stratified_split(cs.labels, 0.2, seed=seed)
    groups = [crop_group(f) for f in cs.files]
    _, grouped = grouped_split(cs.labels, groups, 0.2, seed=seed)
    return {
        "description": "test crops of MitoCheck (relative to shared/data/classification/"
        "mitocheck): 'stratified' holds out 20 % of each class (seed 0); 'grouped' holds "
        "out whole plate/well groups (no group on both sides), about 20 % of each class",
        "seed": seed,
        "stratified_test": [rel[i] for i in strat],
        "grouped_test": [rel[i] for i in grouped],
    }


def load_data() -> tuple[object, dict]:
    """The crop set and the fixed splits (made once, then read)."""
    from cytolens.phenotype.crops import read_crop_set

    cs = read_crop_set(DATA / "labels.csv")
    if SPLIT_FILE.is_file():
        split = json.loads(SPLIT_FILE.read_text())
    else:
        split = make_splits(cs)
        SPLIT_FILE.write_text(json.dumps(split, indent=1) + "\n")
    return cs, split


def test_index(cs: object, split: dict, key: str) -> np.ndarray:
    """Indices of the crops of ``split[key]``."""
    names = set(split[key])
    return np.array([i for i, f in enumerate(cs.files) if str(Path(f).relative_to(DATA)) in names])


def _test_scores(cs: object, test: np.ndarray, clf: object) -> dict:
    """Scores of ``clf`` on the test crops."""
    from cytolens.phenotype.evaluation import classification_report

    p = clf.probabilities(clf.logits(cs.crops[test]))
    scores = classification_report(cs.labels[test], p, cs.class_names)
    keys = ("accuracy", "weighted_f1", "macro_f1", "balanced_accuracy", "ece")
    return {k: round(float(scores[k]), 4) for k in keys} | {"n": len(test)}


def main(argv: list[str] | None = None) -> None:
    import torch

    from cytolens.core.files import atomic_path
    from cytolens.models import model_dir
    from cytolens.phenotype.model import PhenotypeClassifier
    from cytolens.phenotype.train import (
        PhenotypeTrainResult,
        fit_hybrid_head,
        pretrain_encoder,
        save_classifier,
        stratified_split,
        train_classifier,
    )

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ssl-steps", type=int, default=500)
    ap.add_argument("--ssl-batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the head")
    ap.add_argument(
        "--reuse-cnn",
        action="store_true",
        help="keep the encoders of the model folder (steps 1-3 of an earlier run), fit the head",
    )
    ap.add_argument("--root", type=Path, default=None, help="write the model here instead")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    cs, split = load_data()
    test = test_index(cs, split, "stratified_test")
    train_all = np.setdiff1d(np.arange(len(cs)), test)
    tr = cs.subset(train_all)
    logger.info("train %d, test %d crops", len(tr), len(test))
    _, val = stratified_split(tr.labels, 0.15, seed=args.seed)
    metrics: dict = {}
    if args.reuse_cnn:
        folder = model_dir(NAME, root=args.root)
        old = PhenotypeClassifier.load(folder, device="cpu")
        encoder = torch.load(folder / ENCODER_FILE, map_location="cpu", weights_only=True)
        ssl_record = old.card.training["ssl_pretraining"]
        record = {k: v for k, v in old.card.training.items() if k not in ("head", "cnn_command")}
        record["cnn_command"] = old.card.training.get("cnn_command", old.card.training_command)
        train_index = np.setdiff1d(np.arange(len(tr)), val)
        res = PhenotypeTrainResult(old, old.network.state_dict(), train_index, val, {}, record)
        if old.feature_names:  # already hybrid: the CNN's head and scores of the earlier run
            cnn_head = torch.load(folder / CNN_HEAD_FILE, map_location="cpu", weights_only=True)
            metrics["stratified_test_cnn"] = old.card.metrics.get("stratified_test_cnn")
        else:
            cnn_head = {k: v.clone() for k, v in old.network.head.state_dict().items()}
            metrics["stratified_test_cnn"] = _test_scores(cs, test, old)
    else:
        encoder, ssl_record = pretrain_encoder(
            tr.crops,
            steps=args.ssl_steps,
            batch_size=args.ssl_batch,
            seed=args.seed,
            threads=args.threads,
            progress=False,
        )
        logger.info("SSL pretraining: %.0f s", ssl_record["training_time_s"])
        res = train_classifier(
            tr,
            val_index=val,
            encoder=encoder,
            steps=args.steps,
            batch_size=args.batch,
            seed=args.seed,
            threads=args.threads,
            name=NAME,
        )
        cnn = res.classifier
        cnn_head = {k: v.clone() for k, v in cnn.network.head.state_dict().items()}
        metrics["stratified_test_cnn"] = _test_scores(cs, test, cnn)
        logger.info("CNN alone, test: %s", metrics["stratified_test_cnn"])
    t_head = time.perf_counter()
    res = fit_hybrid_head(res, tr, C=args.C, cnn_head=cnn_head, name=NAME)
    head_s = round(time.perf_counter() - t_head, 1)
    logger.info("validation: %s", res.validation)
    metrics["stratified_test"] = _test_scores(cs, test, res.classifier)
    metrics["validation"] = {k: round(float(v), 4) for k, v in res.validation.items()}
    logger.info("hybrid, test: %s", metrics["stratified_test"])
    command = "nice -n 10 .venv/bin/python scripts/train/mitocheck.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    training = dict(res.record) | {
        "split_file": "src/cytolens/phenotype/mitocheck_split.json (stratified_test held out)",
        "validation_split": "15 % of each class of the training crops (seed 0)",
        "ssl_pretraining": ssl_record,
        "pretrained_encoder_file": ENCODER_FILE,
        "cnn_head_file": CNN_HEAD_FILE,
        "head_time_s": head_s,
        "total_time_s": round(time.perf_counter() - started, 1),
        "training_time_note": "wall time with nice -n 10 on 2 shared CPU cores"
        + (" (this run: the head only; the CNN from cnn_command)" if args.reuse_cnn else ""),
    }
    card_updates = {
        "version": VERSION,
        "training_data": TRAINING_DATA,
        "training_command": command.strip(),
        "training": training,
        "metrics": metrics,
        "licence": "BSD-3-Clause (weights); training data CC-BY-4.0 (cite MitoCheck and "
        "WayScience/phenotypic_profiling_model)",
        "description": "Compact CNN for MitoCheck H2B-GFP nucleus phenotypes (16 classes) on "
        "64x64 crops (resized to 32x32), encoder pretrained self-supervised (SimCLR) on the "
        "training crops and fine-tuned; hybrid head: a logistic regression on its logits "
        "(embedding averaged over 8 flips/rotations) + 35 classical shape/intensity/texture "
        "features; calibrated probabilities (temperature).",
    }
    folder = save_classifier(res, tr, root=args.root, card_updates=card_updates)
    with atomic_path(folder / ENCODER_FILE) as tmp:
        torch.save(encoder, tmp)
    with atomic_path(folder / CNN_HEAD_FILE) as tmp:
        torch.save(cnn_head, tmp)
    assert folder == model_dir(NAME, root=args.root)
    logger.info("saved %s in %.0f s", folder, time.perf_counter() - started)


if __name__ == "__main__":
    main()
