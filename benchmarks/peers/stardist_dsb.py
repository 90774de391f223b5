"""StarDist 2-D trained and run on cytolens' DSB2018 split (a peer for benchmarks).

Runs INSIDE a separate environment with TensorFlow (never in cytolens' own
venv, which holds torch)::

    python3 -m venv build/stardist-env
    build/stardist-env/bin/pip install tensorflow-cpu stardist csbdeep tifffile imageio
    nice -n 10 build/stardist-env/bin/python benchmarks/peers/stardist_dsb.py train \
        --budget-cpu-min 25 > build/stardist_dsb/train.log 2>&1 &
    build/stardist-env/bin/python benchmarks/peers/stardist_dsb.py predict

``train``: the configuration of the StarDist DSB2018 example notebook
(``Config2D(n_rays=32, grid=(2, 2))``, U-Net backbone defaults, patches of
256 x 256, batch 4, flips/rot90 + intensity augmentation, ``fill_label_holes``
on the masks, every image normalized to its 1-99.8 percentiles). Input: one
channel; RGB(A) images become the mean of R, G, B (alpha dropped), as
cytolens does. Training images: the ``train`` ids of
``src/cytolens/segment/dsb2018_split.json`` (all modalities, like cytolens);
the ``tune`` ids are StarDist's validation data (its per-epoch validation
loss and ``optimize_thresholds``, as cytolens tunes its thresholds on them).
The ``validation`` ids are never read by ``train``. Training stops when the
process has used ``--budget-cpu-min`` minutes of CPU time (user + system, all
threads; TensorFlow limited to ``--threads`` threads), checked after every
batch; a summary goes to ``build/stardist_dsb/training.json``.

``predict``: the saved model (best validation loss weights, tuned thresholds)
on every validation image (``--limit`` per modality), labels written to one
``labels.npz`` (key = image id) and per-image wall and CPU seconds
(normalization + ``predict_instances``, after one warm-up call) to
``predictions.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DSB = ROOT.parent / "shared" / "data" / "segmentation" / "dsb2018"
SPLIT = ROOT / "src" / "cytolens" / "segment" / "dsb2018_split.json"
OUT = ROOT / "build" / "stardist_dsb"
MODEL_NAME = "stardist_dsb2018"


def _set_threads(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(n)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def _read_image(sample_id: str):
    import imageio.v3 as iio
    import numpy as np

    img = np.asarray(iio.imread(DSB / "images" / f"{sample_id}.png"))
    if img.ndim == 3:
        img = img[..., :3].astype(np.float32).mean(axis=2)
    return img.astype(np.float32)


def _norm(img):
    from csbdeep.utils import normalize

    return normalize(img, 1, 99.8, axis=(0, 1)).astype("float32")


def _read_labels(sample_id: str):
    import tifffile
    from stardist import fill_label_holes

    return fill_label_holes(tifffile.imread(DSB / "labels" / f"{sample_id}.tif"))


def _ids(split: dict, part: str, limit: int = 0) -> list[tuple[str, str]]:
    return [
        (modality, i)
        for modality, ids in split[part].items()
        for i in (ids[:limit] if limit else ids)
    ]


def _augmenter(x, y):
    """Flips, rot90 and intensity scaling/offset, as in the StarDist example notebook.

    Uses NumPy's global random state, as StarDist's own patch sampler does
    (seeded once in :func:`train`).
    """
    import numpy as np

    perm = tuple(np.random.permutation(2))  # noqa: NPY002
    x, y = x.transpose(perm), y.transpose(perm)
    for ax in range(2):
        if np.random.rand() > 0.5:  # noqa: NPY002
            x, y = np.flip(x, axis=ax), np.flip(y, axis=ax)
    x = x * np.random.uniform(0.6, 2) + np.random.uniform(-0.2, 0.2)  # noqa: NPY002
    return x, y


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def train(args: argparse.Namespace) -> None:
    _set_threads(args.threads)
    import numpy as np
    import tensorflow as tf
    from stardist import calculate_extents
    from stardist.models import StarDist2D

    wall0, cpu0 = time.time(), _cpu_s()
    run_wall0 = wall0
    load0 = os.getloadavg()
    prev = json.loads((Path(args.out) / "training.json").read_text()) if args.resume else None
    runs = prev.get("runs", [prev]) if prev else []
    seed = args.seed + len(runs)  # a resumed run draws other patches
    np.random.seed(seed)  # noqa: NPY002
    tf.random.set_seed(seed)
    split = json.loads(SPLIT.read_text())
    train_ids, tune_ids = _ids(split, "train"), _ids(split, "tune")
    if args.limit:
        train_ids, tune_ids = train_ids[: args.limit], tune_ids[: max(2, args.limit // 4)]
    X = [_norm(_read_image(i)) for _, i in train_ids]
    Y = [_read_labels(i) for _, i in train_ids]
    Xv = [_norm(_read_image(i)) for _, i in tune_ids]
    Yv = [_read_labels(i) for _, i in tune_ids]
    print(f"data: {len(X)} train, {len(Xv)} tune images; {_cpu_s() - cpu0:.0f} CPU-s", flush=True)
    extents = np.median([calculate_extents(y) for y in Y], axis=0)
    if prev:  # continue from the last weights; CPU and wall time accumulate
        model = StarDist2D(None, name=MODEL_NAME, basedir=str(args.out))
        model.load_weights("weights_last.h5")
        conf = model.config
        cpu0 -= prev["training_cpu_s"]
        wall0 -= prev["training_wall_s"]
    else:
        conf = _config(args)
        model = StarDist2D(conf, name=MODEL_NAME, basedir=str(args.out))
    print(conf, flush=True)
    print(f"median object extents {extents}", flush=True)
    budget_s = args.budget_cpu_min * 60.0
    wall_cap_s = args.max_wall_min * 60.0 if args.max_wall_min else float("inf")
    state = {
        "steps": prev["steps"] if prev else 0,
        "epochs": prev["epochs"] if prev else 0,
        "stopped_by": "max epochs",
    }

    class Budget(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            state["steps"] += 1
            if _cpu_s() - cpu0 >= budget_s or time.time() - run_wall0 >= wall_cap_s:
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            state["epochs"] += 1
            used = _cpu_s() - cpu0
            print(
                f"epoch {state['epochs']}: {used / 60:.1f} of {args.budget_cpu_min} CPU-min, "
                f"wall {(time.time() - wall0) / 60:.1f} min, load {os.getloadavg()[0]:.2f}, "
                + ", ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items() if "loss" in k),
                flush=True,
            )
            if used >= budget_s or time.time() - run_wall0 >= wall_cap_s:
                state["stopped_by"] = "cpu budget" if used >= budget_s else "wall cap"
                self.model.stop_training = True

    model.prepare_for_training()
    model.callbacks.append(Budget())
    model.train(X, Y, validation_data=(Xv, Yv), augmenter=_augmenter)
    cpu_train, wall_train = _cpu_s() - cpu0, time.time() - wall0
    model.optimize_thresholds(Xv, Yv)
    run = {
        "seed": seed,
        "resumed": bool(prev),
        "budget_cpu_min": args.budget_cpu_min,
        "max_wall_min": args.max_wall_min,
        "stopped_by": state["stopped_by"],
        "epochs": state["epochs"],
        "training_cpu_s": round(cpu_train, 1),
        "training_wall_s": round(wall_train, 1),
        "run_wall_s": round(time.time() - run_wall0, 1),
        "loadavg_start": [round(v, 2) for v in load0],
        "loadavg_end": [round(v, 2) for v in os.getloadavg()],
    }
    summary = {
        "model": str(Path(args.out) / MODEL_NAME),
        "budget_cpu_min": args.budget_cpu_min,
        "max_wall_min": args.max_wall_min,
        "stopped_by": state["stopped_by"],
        "threads": args.threads,
        "epochs": state["epochs"],
        "steps": state["steps"],
        "steps_per_epoch": args.steps_per_epoch,
        "batch_size": conf.train_batch_size,
        "patch_size": list(conf.train_patch_size),
        "n_train_images": len(X),
        "n_tune_images": len(Xv),
        "training_cpu_s": round(cpu_train, 1),
        "training_wall_s": round(wall_train, 1),
        "total_cpu_s": round(
            _cpu_s() - cpu0 + (prev["total_cpu_s"] - prev["training_cpu_s"] if prev else 0), 1
        ),
        "total_wall_s": round(
            time.time() - wall0 + (prev["total_wall_s"] - prev["training_wall_s"] if prev else 0), 1
        ),
        "loadavg_start": [round(v, 2) for v in load0],
        "loadavg_end": [round(v, 2) for v in os.getloadavg()],
        "thresholds": dict(model.thresholds._asdict()),
        "input": "one channel: RGB(A) -> mean of R, G, B; percentile normalization 1-99.8",
        "versions": _versions(),
        "limit": args.limit,
        "runs": [*runs, run],
    }
    (Path(args.out) / "training.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2), flush=True)


def _config(args: argparse.Namespace):
    from stardist.models import Config2D

    return Config2D(
        n_rays=32,
        grid=(2, 2),
        n_channel_in=1,
        train_patch_size=(256, 256),
        train_batch_size=4,
        train_tensorboard=False,  # tensorboard is not installed in the peer env
        train_epochs=args.max_epochs,
        train_steps_per_epoch=args.steps_per_epoch,
    )


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("stardist", "csbdeep", "tensorflow-cpu", "keras", "numpy")}


def predict(args: argparse.Namespace) -> None:
    _set_threads(args.threads)
    import numpy as np
    from stardist.models import StarDist2D

    model = StarDist2D(None, name=MODEL_NAME, basedir=str(args.out))
    split = json.loads(SPLIT.read_text())
    ids = _ids(split, "validation", args.limit)
    model.predict_instances(_norm(_read_image(ids[0][1])))  # warm-up
    labels, rows = {}, []
    for modality, sample_id in ids:
        img = _read_image(sample_id)
        t0, c0 = time.perf_counter(), time.process_time()
        lab, _ = model.predict_instances(_norm(img))
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        labels[sample_id] = lab.astype(np.int32)
        rows.append(
            {"id": sample_id, "modality": modality, "shape": list(img.shape), "s": dt, "cpu_s": cpu}
        )
    dest = Path(args.pred_dir)
    dest.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(dest / "labels.npz.tmp.npz", **labels)
    os.replace(dest / "labels.npz.tmp.npz", dest / "labels.npz")
    meta = {
        "threads": args.threads,
        "thresholds": dict(model.thresholds._asdict()),
        "loadavg": [round(v, 2) for v in os.getloadavg()],
        "versions": _versions(),
        "images": rows,
    }
    (dest / "predictions.json").write_text(json.dumps(meta, indent=2))
    print(f"wrote {len(rows)} predictions to {dest}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("train", "predict"))
    parser.add_argument("--out", type=Path, default=OUT, help="model folder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget-cpu-min", type=float, default=25.0)
    parser.add_argument(
        "--max-wall-min", type=float, default=0.0, help="also stop after this wall time (0: no cap)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from weights_last.h5 of --out until the cumulative CPU budget is spent",
    )
    parser.add_argument("--steps-per-epoch", type=int, default=50)
    parser.add_argument("--max-epochs", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=0, help="images (smoke runs)")
    parser.add_argument("--pred-dir", type=Path, default=OUT / "predictions")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    {"train": train, "predict": predict}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
