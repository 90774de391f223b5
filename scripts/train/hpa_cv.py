"""Cross-validate an HPA training recipe: 5-fold CV over the 75 samples, as benchmarks/hpa.py does.

Used to choose the recipe of ``hpa-v1`` (the session notes quote its output)::

    python scripts/train/hpa_cv.py --steps 400 --crop 128 --cell-fraction 0.25 --threads 1
    python scripts/train/hpa_cv.py --steps 400 --no-balance
    python scripts/train/hpa_cv.py --widths 8,16,24,32,48      # a 10x smaller network
    python scripts/train/hpa_cv.py --inputs norm               # per-image percentile scaling
    python scripts/train/hpa_cv.py --inputs norm+masks         # + nucleus and cell masks

Prints one JSON line: mean and sd over folds of macro F1, micro F1 and the
nucleolar-group F1, each fold's thresholds tuned on the out-of-fold
predictions of the other folds (``benchmarks/hpa.py``'s rule), without and
with test-time augmentation (mean over the 8 flips and 90-degree rotations).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--cell-fraction", type=float, default=0.25)
    parser.add_argument("--no-balance", action="store_true")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--widths", default="24,32,64,128,160", help="HPANet stage widths")
    parser.add_argument(
        "--inputs",
        choices=("plain", "norm", "norm+masks"),
        default="plain",
        help="network inputs: the 4 channels as shipped; each scaled by its 99.5th percentile "
        "per image; or that plus nucleus and cell masks as channels 5 and 6",
    )
    args = parser.parse_args()

    import torch

    import hpa as bench  # benchmarks/hpa.py: data paths, scoring, cross-fitted thresholds
    from cytolens.classify.network import HPANet
    from cytolens.classify.train import HPADataset, TrainConfig, stratified_split, train_network

    dataset_class = HPADataset if args.inputs == "plain" else _variant_dataset(args.inputs)
    widths = tuple(int(w) for w in args.widths.split(","))
    torch.set_num_threads(args.threads)
    labels = bench.read_labels(bench.HPA / "labels.csv")
    ids, y = list(labels["id"]), bench.targets_to_matrix(labels["classes"])
    part = stratified_split(y, [1.0] * args.folds, seed=1)
    store: dict = {}
    oof, oof_tta = np.zeros(y.shape), np.zeros(y.shape)
    start = time.perf_counter()
    for k in range(args.folds):
        train, held = np.flatnonzero(part != k), np.flatnonzero(part == k)
        data = dataset_class(bench.HPA / "images", [ids[i] for i in train], y[train], cache=store,
                          crop=args.crop, cell_fraction=args.cell_fraction)  # fmt: skip
        cfg = TrainConfig(steps=args.steps, threads=args.threads, crop=args.crop,
                          cell_fraction=args.cell_fraction, balance=not args.no_balance,
                          seed=1000 + k)  # fmt: skip
        net = HPANet(in_channels=6 if args.inputs == "norm+masks" else 4, widths=widths)
        net = train_network(data, cfg, network=net).eval()
        plain = dataset_class(bench.HPA / "images", [ids[i] for i in held], y[held], cache=store,
                           augment=False)  # fmt: skip
        with torch.inference_mode():
            for j, i in enumerate(held):
                x = plain[j][0][None]
                oof[i] = torch.sigmoid(net(x))[0].numpy()
                views = [torch.rot90(x, r, (2, 3)) for r in range(4)]
                views += [v.flip(3) for v in views]
                oof_tta[i] = torch.sigmoid(net(torch.cat(views))).mean(0).numpy()
        print(f"fold {k + 1}/{args.folds}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    out: dict = {"settings": vars(args)}
    for name, probs in (("plain", oof), ("tta", oof_tta)):
        th = bench.cross_fitted(probs, y, part)
        folds = [bench.score(y[part == k], probs[part == k], th[part == k])
                 for k in range(args.folds)]  # fmt: skip
        out[name] = {m: bench.mean_sd([f[m] for f in folds])
                     for m in ("macro_f1", "micro_f1", "nucleolar_f1")}  # fmt: skip
    print(json.dumps(out))


def _variant_dataset(inputs: str) -> type:
    """An HPADataset whose images are percentile-scaled (and carry mask channels)."""
    from skimage.transform import resize

    from cytolens.classify.cells import as_cyx_float, segment_cells
    from cytolens.classify.train import HPADataset, downscale
    from cytolens.io import read_hpa

    class Variant(HPADataset):
        def load(self, index: int, *, with_cells: bool = False) -> tuple:
            key = self.ids[index]
            if key not in self.store:
                x = as_cyx_float(read_hpa(self.folder, key), name=key)
                nuclei, cells = segment_cells(x)
                xs = downscale(x, self.scale)
                hi = np.percentile(xs.reshape(len(xs), -1), 99.5, axis=1)[:, None, None]
                xs = np.clip(xs / np.maximum(hi, 1e-3), 0, 1.5).astype(np.float32)
                small = {"output_shape": xs.shape[1:], "order": 0, "preserve_range": True,
                         "anti_aliasing": False}  # fmt: skip
                cells = resize(cells, **small).astype(np.int32)
                if inputs == "norm+masks":
                    masks = [resize(nuclei > 0, **small), cells > 0]
                    xs = np.concatenate([xs, np.stack(masks).astype(np.float32)])
                self.store[key] = (xs, cells)
            return self.store[key]

    return Variant


if __name__ == "__main__":
    main()
