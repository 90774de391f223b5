"""Train the shipped blood-cell detector ``detect-bccd-v1`` on CPU from BCCD.

Data: ../shared/data/detection/bccd (Shenggan/BCCD_Dataset, MIT; 292 blood
smear images 640x480 with Pascal VOC boxes of RBC, WBC and Platelets). The
validation split is fixed: ``numpy.random.default_rng(0).permutation`` of the
sorted image stems, the first 20 % -> validation (never seen in training);
the ids are written to ``src/cytolens/detect/bccd_split.json``.

    python scripts/train/detection.py            # ~40 min on 2 cores
    python scripts/train/detection.py --steps 50 --out /tmp/models   # smoke run

The network sees the images at half resolution (320x240; platelets are then
~20 px, white cells ~100 px). After training, the per-class score pivots
(raw score of best F1 on the *training* images, mapped to the default
threshold 0.7 at prediction) and the validation mAP go into the model card.
``--calibrate-only`` redoes that last step for the saved model.
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
SHARED = ROOT.parent / "shared" / "data" / "detection" / "bccd"
SPLIT_FILE = ROOT / "src" / "cytolens" / "detect" / "bccd_split.json"
NAME = "detect-bccd-v1"
CLASSES = ["RBC", "WBC", "Platelets"]
VAL_FRACTION = 0.2

logger = logging.getLogger("train.detection")


def make_split(seed: int = 0) -> dict[str, list[str]]:
    """The fixed validation split (written once, then read back)."""
    stems = sorted(p.stem for p in (SHARED / "Annotations").glob("*.xml"))
    order = np.random.default_rng(seed).permutation(len(stems))
    n_val = round(VAL_FRACTION * len(stems))
    val = sorted(stems[i] for i in order[:n_val])
    train = sorted(stems[i] for i in order[n_val:])
    return {
        "dataset": "BCCD (Shenggan/BCCD_Dataset, commit d272fb14, MIT)",
        "rule": f"numpy.random.default_rng({seed}).permutation of the sorted stems; first "
        f"round({VAL_FRACTION} * n) -> validation",
        "seed": seed,
        "validation": val,
        "train": train,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="registry root (default: package)")
    parser.add_argument(
        "--calibrate-only",
        action="store_true",
        help="skip training: refit the score pivots and validation metrics of the saved model",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    if not SHARED.exists():
        sys.exit(f"{SHARED} not found: the shared data folder must sit beside the repository")

    import pandas as pd

    from cytolens.core.files import pin_json
    from cytolens.detect.annotations import read_voc, validate_boxes
    from cytolens.detect.model import Detector
    from cytolens.detect.train import (
        NORMALIZATION,
        TrainConfig,
        card_parameters,
        card_training,
        fit_score_pivots,
        load_examples,
        train_detector,
    )
    from cytolens.evaluate.detection import detection_scores
    from cytolens.models import make_card, save_model

    t0 = time.perf_counter()
    split = pin_json(SPLIT_FILE, make_split(args.seed))
    from cytolens.io import imread
    from cytolens.models import build_network, load_card

    if args.calibrate_only:
        card = load_card(NAME, root=args.out)
        net = build_network(NAME, root=args.out)
        train_s = float(card.metrics.get("train_s", float("nan")))
        threads = card.metrics.get("train_threads", args.threads)
    else:
        table = pd.concat(
            [read_voc(SHARED / "Annotations" / f"{s}.xml") for s in split["train"]],
            ignore_index=True,
        )
        cfg = TrainConfig(
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            width=args.width,
            seed=args.seed,
            threads=args.threads,
        )
        examples = load_examples(
            table, SHARED / "JPEGImages", classes=CLASSES, channels=3, scale=cfg.scale
        )
        logger.info("%d training images, %d boxes", len(examples), len(table))
        t_train = time.perf_counter()
        net = train_detector(examples, CLASSES, config=cfg)
        train_s = time.perf_counter() - t_train
        threads = args.threads
        kwargs = {"in_channels": 3, "n_classes": len(CLASSES), "width": cfg.width}
        card = make_card(
            name=NAME,
            task="object detection: boxes of red cells, white cells and platelets in blood smears",
            architecture=(
                f"CenterNet (objects as points) on a 4-stage conv backbone, width {cfg.width}, "
                f"with a top-down path to stride 4; heads: class heatmap, log box size, centre "
                f"offset ({sum(p.numel() for p in net.parameters())} parameters)"
            ),
            input_axes="YXC",
            network={"entry_point": "cytolens.detect.network:CenterNet", "kwargs": kwargs},
            training_data=[
                "BCCD (Shenggan/BCCD_Dataset, commit d272fb14cdff6e473fafeeeba32aba5f560e9e43, "
                f"MIT): {len(split['train'])} training images; {len(split['validation'])} "
                "validation images held out (src/cytolens/detect/bccd_split.json)",
            ],
            training_command="python scripts/train/detection.py "
            + " ".join(
                f"--{k.replace('_', '-')} {v}"
                for k, v in sorted(vars(args).items())
                if k not in ("out", "calibrate_only")
            ),
            licence="BSD-3-Clause (weights); training data MIT",
            normalization=NORMALIZATION,
            parameters=card_parameters(CLASSES, cfg),
            training=card_training(cfg, split_file="src/cytolens/detect/bccd_split.json"),
            metrics={"train_s": round(train_s, 1)},
            description="Boxes with a class and a confidence; keep those above 0.7 (default).",
        )
    params = {k: v for k, v in card.parameters.items() if k != "score_pivots"}
    # through the public prediction path: raw scores (no pivots yet) on both splits
    det = Detector.from_network(net, card.model_copy(update={"parameters": params}))

    def run(stems: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
        truth, preds = [], []
        for stem in stems:
            t = validate_boxes(read_voc(SHARED / "Annotations" / f"{stem}.xml"), classes=CLASSES)
            t = t[0]
            truth.append(t)
            p = det.predict(imread(SHARED / "JPEGImages" / f"{stem}.jpg"), min_score=0.01)
            preds.append(p.assign(filename=t["filename"].iloc[0] if len(t) else f"{stem}.jpg"))
        return pd.concat(preds, ignore_index=True), pd.concat(truth, ignore_index=True)

    pivots = fit_score_pivots(*run(split["train"]), CLASSES)
    logger.info("score pivots (training images, best F1 at IoU 0.5): %s", pivots)
    scores = detection_scores(*run(split["validation"]))
    metrics = {
        "val_map50": round(scores["map50"], 4),
        "val_map50_95": round(scores["map50_95"], 4),
        "val_ap50_per_class": {c: round(v["ap50"], 4) for c, v in scores["per_class"].items()},
        "metrics_on": f"{len(split['validation'])} validation images (all boxes, min_score 0.01)",
        "train_s": round(train_s, 1),
        "total_s": round(time.perf_counter() - t0, 1),
        "train_threads": threads,
    }
    logger.info("validation: %s", json.dumps(metrics))
    final = card.model_copy(
        update={"metrics": metrics, "parameters": {**params, "score_pivots": pivots}}
    )
    folder = save_model(net.state_dict(), final, root=args.out)
    logger.info("wrote %s", folder)


if __name__ == "__main__":
    main()
