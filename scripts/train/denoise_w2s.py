"""Train the W2S denoisers on CPU: the shipped ``denoise-w2s-v1`` and the benchmark's models.

Reproduces ``src/cytolens/models/weights/denoise-w2s-v1`` (supervised, CARE-style,
channels 0-2) and, for ``benchmarks/denoising.py``, ``benchmarks/models/denoise-w2s-n2v``
(self-supervised, Noise2Void-style, noisy images only) and
``benchmarks/models/denoise-w2s-ch01`` (supervised on channels 0 and 1 only: the
brittleness test runs it on channel 2)::

    nice -n 10 python scripts/train/denoise_w2s.py supervised
    nice -n 10 python scripts/train/denoise_w2s.py n2v
    nice -n 10 python scripts/train/denoise_w2s.py ch01 --steps 400
    python scripts/train/denoise_w2s.py supervised --steps 5 --out /tmp/try   # smoke run

Data: ``../shared/data/denoising/w2s`` (W2S, Zhou et al. 2020, 8-bit copy; research use,
hosting repository GPL-3: the images are never copied into the package). 32 fields x 3
channels, 512 x 512. The split is **by field** and fixed: fields sorted by number,
index ``i % 4 == 3`` -> *test* (8 fields: never used in training or calibration; the
benchmark's held-out set), ``i % 8 == 1`` -> *validation* (4 fields: validation loss and
the applicability calibration), the rest *train* (20 fields).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
W2S = ROOT.parent / "shared" / "data" / "denoising" / "w2s"
SHIPPED = ROOT / "src" / "cytolens" / "models" / "weights"
BENCH_MODELS = ROOT / "benchmarks" / "models"
DATA_NOTE = (
    "W2S (Zhou et al. 2020, ECCV Workshops), 8-bit copy from ND-HowardGroup/"
    "Instant-Image-Denoising c885aee; research use, cite Zhou et al. 2020; hosting "
    "repository GPL-3 (images not bundled)"
)
RUNS = {
    # name, folder, supervised, channels
    "supervised": ("denoise-w2s-v1", SHIPPED, True, (0, 1, 2)),
    "n2v": ("denoise-w2s-n2v", BENCH_MODELS, False, (0, 1, 2)),
    "ch01": ("denoise-w2s-ch01", BENCH_MODELS, True, (0, 1)),
}


def split_fields(root: Path = W2S) -> dict[str, list[str]]:
    """The fixed split by field: ``{"train": [...], "val": [...], "test": [...]}``."""
    fields = sorted({p.name.split("_")[0] for p in (root / "noisy").glob("*_*.png")})
    out: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for i, f in enumerate(fields):
        out["test" if i % 4 == 3 else "val" if i % 8 == 1 else "train"].append(f)
    return out


def files(fields: list[str], channels: tuple[int, ...], kind: str, root: Path = W2S) -> list[Path]:
    """``root/<kind>/<field>_<ch>.png`` for the fields and channels."""
    return [root / kind / f"{f}_{c}.png" for f in fields for c in channels]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", choices=sorted(RUNS))
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="model folder (default: the shipped place)")
    parser.add_argument(
        "--refit-applicability",
        action="store_true",
        help="only fit the trained model's applicability reference again (weights unchanged)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from cytolens.restore.train_denoiser import refit_applicability, train_denoiser

    name, base, supervised, channels = RUNS[args.run]
    split = split_fields()
    train, val = split["train"], split["val"]
    out = args.out or base / name
    if args.refit_applicability:
        refit_applicability(out, files(train, channels, "noisy"), files(val, channels, "noisy"))
        print(f"refitted the applicability reference of {out}")
        return 0
    cmd = f"nice -n 10 python scripts/train/denoise_w2s.py {args.run}"
    if args.steps != 600:
        cmd += f" --steps {args.steps}"
    _, card = train_denoiser(
        files(train, channels, "noisy"),
        files(train, channels, "clean") if supervised else None,
        val_noisy=files(val, channels, "noisy"),
        val_clean=files(val, channels, "clean") if supervised else None,
        out=out,
        name=name,
        steps=args.steps,
        patch=64,
        batch=args.batch,
        threads=args.threads,
        training_data=[DATA_NOTE],
        training_command=cmd,
        training_notes={
            "split": "by field: sorted fields, i % 4 == 3 test, i % 8 == 1 validation, rest train",
            "channels": list(channels),
            "train_fields": train,
            "val_fields": val,
            "test_fields": split["test"],
        },
        progress=False,
    )
    print(f"wrote {out} (final val loss {card.training['final_val_loss']})")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
