"""Nucleus segmentation: a trained StarDist peer against cytolens on DSB2018.

StarDist 2-D (PyPI ``stardist`` with ``tensorflow-cpu``) is trained on exactly
cytolens' DSB2018 training split (``src/cytolens/segment/dsb2018_split.json``,
tune ids for its validation loss and thresholds) with a stated CPU-time
budget, by ``benchmarks/peers/stardist_dsb.py`` in its own environment
``build/stardist-env`` (TensorFlow never enters cytolens' venv). This module
runs in cytolens' venv: it calls the peer in a subprocess (training only when
``build/stardist_dsb/training.json`` is missing), scores its labels on the
held-out validation images with ``cytolens.evaluate.segmentation_scores``
(the functions ``benchmarks/segmentation.py`` uses) and, in the same run,
scores and times cytolens' default model on the same images.

Create the peer environment once::

    python3 -m venv build/stardist-env
    build/stardist-env/bin/pip install tensorflow-cpu stardist csbdeep tifffile imageio

Run: ``python benchmarks/segmentation_stardist.py [--quick]`` (writes
results/segmentation_stardist.json and .md); ``--quick`` scores three images
per modality.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from segmentation import DSB, ROOT, SPLIT, _mean, _timed, _truth

PEER_ENV = ROOT / "build" / "stardist-env"
PEER_PY = PEER_ENV / "bin" / "python"
PEER = Path(__file__).resolve().parent / "peers" / "stardist_dsb.py"
MODEL_DIR = ROOT / "build" / "stardist_dsb"
THREADS = 2
TRAIN_BUDGET_CPU_MIN = 20.0
QUICK_LIMIT = 3
METRICS = ("ap50", "dsb_score", "f1_50")
ENV_COMMANDS = (
    "python3 -m venv build/stardist-env && build/stardist-env/bin/pip install "
    "tensorflow-cpu stardist csbdeep tifffile imageio"
)


def _peer(*args: str, log: Path | None = None) -> None:
    """Run the peer script in its environment (niced, ``THREADS`` threads)."""
    cmd = ["nice", "-n", "10", str(PEER_PY), str(PEER), *args, "--threads", str(THREADS)]
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("PYTHONPATH", None)
    if log is None:
        subprocess.run(cmd, check=True, cwd=ROOT, env=env)
        return
    with log.open("w") as fh:
        subprocess.run(cmd, check=True, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)


def _unavailable(reason: str) -> dict[str, Any]:
    return {
        "json": {"stardist.available": False, "stardist.reason": reason},
        "md": f"## Trained peer: StarDist\n\nNot run: {reason}",
        "figures": [],
    }


def _summaries(
    per_image: list[dict[str, Any]], modalities: list[str]
) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for method in ("stardist", "cytolens"):
        out[method] = {}
        for modality in [*modalities, "all"]:
            scores = [r[method] for r in per_image if modality in ("all", r["modality"])]
            out[method][modality] = {
                "n_images": len(scores),
                **{key: _mean(scores, key) for key in METRICS},
            }
    return out


def run(quick: bool = False) -> dict[str, Any]:
    """Train (if needed), run and score StarDist and cytolens' default model side by side.

    Returns ``{"json": {dotted key: value}, "md": str, "figures": []}``; keys
    ``stardist.<modality>.{ap50,dsb_score,f1_50,n_images}``,
    ``stardist.sec_per_mpx`` (wall), ``stardist.cpu_sec_per_mpx``,
    ``stardist.training`` and, measured in the same
    run on the same images, ``stardist.cytolens.<modality>.*`` and
    ``stardist.cytolens.sec_per_mpx``.
    """
    import torch

    from cytolens.evaluate import segmentation_scores
    from cytolens.io import imread
    from cytolens.segment import NucleusSegmenter
    from cytolens.segment.model import DEFAULT_MODEL

    if not PEER_PY.exists():
        return _unavailable(f"no peer environment at {PEER_ENV}; create it with `{ENV_COMMANDS}`")
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    training_file = MODEL_DIR / "training.json"
    if not training_file.exists():
        _peer(
            "train",
            "--budget-cpu-min",
            str(TRAIN_BUDGET_CPU_MIN),
            log=MODEL_DIR / "train.log",
        )
    training = json.loads(training_file.read_text())
    limit = QUICK_LIMIT if quick else 0
    pred_dir = MODEL_DIR / ("predictions_quick" if quick else "predictions")
    t0 = time.perf_counter()
    _peer("predict", "--limit", str(limit), "--pred-dir", str(pred_dir))
    predict_wall = time.perf_counter() - t0
    meta = json.loads((pred_dir / "predictions.json").read_text())
    peer_labels = np.load(pred_dir / "labels.npz")

    torch.set_num_threads(THREADS)
    segmenter = NucleusSegmenter.from_pretrained(DEFAULT_MODEL, device="cpu")
    segmenter.segment(np.zeros((64, 64), np.float32))  # warm-up (torch kernels)
    split = json.loads(SPLIT.read_text())
    modalities = list(split["validation"])
    per_image: list[dict[str, Any]] = []
    seconds = {"stardist": 0.0, "cytolens": 0.0}
    cpu_seconds = dict(seconds)
    megapixels = 0.0
    for row in meta["images"]:
        truth = _truth(row["id"])
        image = imread(DSB / "images" / f"{row['id']}.png")
        c0 = time.process_time()
        pred, dt = _timed(segmenter.segment, image)
        cpu_seconds["cytolens"] += time.process_time() - c0
        cpu_seconds["stardist"] += row["cpu_s"]
        seconds["cytolens"] += dt
        seconds["stardist"] += row["s"]
        megapixels += truth.size / 1e6
        per_image.append(
            {
                "id": row["id"],
                "modality": row["modality"],
                "stardist": segmentation_scores(truth, peer_labels[row["id"]]),
                "cytolens": segmentation_scores(truth, pred),
            }
        )
    summary = _summaries(per_image, modalities)
    sec = {m: round(s / megapixels, 3) for m, s in seconds.items()}
    cpu_sec = {m: round(s / megapixels, 3) for m, s in cpu_seconds.items()}
    keys: dict[str, Any] = {"stardist.available": True}
    for method, prefix in (("stardist", "stardist"), ("cytolens", "stardist.cytolens")):
        for modality, values in summary[method].items():
            for key, value in values.items():
                keys[f"{prefix}.{modality}.{key}"] = value
        keys[f"{prefix}.sec_per_mpx"] = sec[method]
        keys[f"{prefix}.cpu_sec_per_mpx"] = cpu_sec[method]
    keys["stardist.cytolens.model"] = f"{segmenter.card.name} ({segmenter.card.sha256[:12]})"
    keys["stardist.training"] = {
        k: training.get(k)
        for k in (
            "budget_cpu_min",
            "max_wall_min",
            "stopped_by",
            "threads",
            "epochs",
            "steps",
            "steps_per_epoch",
            "batch_size",
            "patch_size",
            "n_train_images",
            "n_tune_images",
            "training_cpu_s",
            "training_wall_s",
            "total_cpu_s",
            "total_wall_s",
            "loadavg_start",
            "loadavg_end",
            "thresholds",
            "input",
            "versions",
            "runs",
        )
    }
    keys["stardist.validation_megapixels"] = round(megapixels, 2)
    keys["stardist.quick"] = quick
    keys["stardist.loadavg_predict"] = meta["loadavg"]
    return {
        "json": keys,
        "md": _markdown(summary, sec, cpu_sec, training, meta, predict_wall),
        "figures": [],
    }


def _markdown(
    summary: dict[str, dict[str, dict[str, Any]]],
    sec: dict[str, float],
    cpu_sec: dict[str, float],
    training: dict[str, Any],
    meta: dict[str, Any],
    predict_wall: float,
) -> str:
    lines = [
        "## Trained peer: StarDist (same DSB2018 training split)",
        "",
        "| modality | images | StarDist AP@0.5 | cytolens AP@0.5 | StarDist DSB | cytolens DSB "
        "| StarDist F1@0.5 | cytolens F1@0.5 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for modality, sd in summary["stardist"].items():
        cy = summary["cytolens"][modality]
        lines.append(
            f"| {modality} | {sd['n_images']} | {sd['ap50']:.3f} | {cy['ap50']:.3f} "
            f"| {sd['dsb_score']:.3f} | {cy['dsb_score']:.3f} | {sd['f1_50']:.3f} "
            f"| {cy['f1_50']:.3f} |"
        )
    v = training.get("versions", {})
    lines += [
        "",
        f"Speed on the CPU ({THREADS} threads each, niced, same images): StarDist "
        f"{sec['stardist']} s/Mpx (normalization + `predict_instances`, after a warm-up), "
        f"cytolens {sec['cytolens']} s/Mpx (`NucleusSegmenter.segment`, size estimate "
        f"included); ratio StarDist / cytolens {sec['stardist'] / sec['cytolens']:.2f}. "
        f"CPU time (all threads; less sensitive to the shared machine's load): StarDist "
        f"{cpu_sec['stardist']} CPU-s/Mpx, cytolens {cpu_sec['cytolens']} CPU-s/Mpx, ratio "
        f"{cpu_sec['stardist'] / cpu_sec['cytolens']:.2f}. The two ran one after the other "
        "(StarDist in its own process first), not interleaved. "
        f"Load average during StarDist prediction: {meta['loadavg']}; the whole prediction "
        f"subprocess took {predict_wall:.0f} s wall (TensorFlow start-up included).",
        "",
        f"Training (StarDist {v.get('stardist')}, csbdeep {v.get('csbdeep')}, "
        f"tensorflow-cpu {v.get('tensorflow-cpu')}, keras {v.get('keras')}): "
        f"`Config2D(n_rays=32, grid=(2, 2))` as in StarDist's DSB2018 example, patches "
        f"{training['patch_size']}, batch {training['batch_size']}, flips/rot90 + intensity "
        f"augmentation; input {training['input']}. {training['n_train_images']} train images "
        f"(the train ids of `dsb2018_split.json`, all modalities), {training['n_tune_images']} "
        f"tune images for StarDist's validation loss and `optimize_thresholds` "
        f"(prob {training['thresholds']['prob']:.3f}, nms {training['thresholds']['nms']}). "
        f"Budget {training['budget_cpu_min']} CPU-minutes (TensorFlow {training['threads']} "
        f"threads, nice -n 10), wall cap {training.get('max_wall_min') or 'none'} min; "
        f"stopped by: {training.get('stopped_by')}, after {training['epochs']} epochs of "
        f"{training['steps_per_epoch']} steps ({training['steps']} steps): "
        f"{training['training_cpu_s'] / 60:.1f} CPU-min in {training['training_wall_s'] / 60:.1f} "
        f"min wall; with threshold optimization {training['total_cpu_s'] / 60:.1f} CPU-min in "
        f"{training['total_wall_s'] / 60:.1f} min wall"
        + (
            f", in {len(training['runs'])} runs (each resumed from the previous run's last "
            "weights, `train --resume`; constant learning rate, Adam state restarted), "
            f"stopped by: {', '.join(r['stopped_by'] for r in training['runs'])}"
            if len(training.get("runs", [])) > 1
            else ""
        )
        + ". Load average at start "
        f"{training['loadavg_start']}, at end {training['loadavg_end']} (2 shared cores). "
        "StarDist's example trains 400 epochs x 100 steps on a GPU; this budget is a small "
        "fraction of that, so these figures are StarDist under cytolens' CPU budget, not "
        "StarDist's best.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import argparse

    from segmentation import save_part

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_LIMIT} images per modality")
    args = parser.parse_args(argv)
    save_part("stardist", run(quick=args.quick))


if __name__ == "__main__":
    sys.exit(main())
