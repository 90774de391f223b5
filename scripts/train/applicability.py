"""Fit and calibrate the applicability references of the shipped models.

For each shipped model (focus-miq-v1, nuclei-v1, nuclei-v2, detect-bccd-v1, hpa-v1) the
model's own :meth:`~cytolens.models.predictor.Predictor.features` (pooled
deep-layer activations on its normal input preparation) are computed on

- **fit** images: the model's training split;
- **calibration** images: held-out images of the training domain, which the
  network never trained on;

and :class:`cytolens.models.applicability.DomainReference` is fitted and
calibrated on them, saved as ``applicability.npz`` beside the weights, and
named in the card's ``applicability`` entry (weights and their sha256 are
untouched). The remaining held-out in-domain images (**test**) and the
out-of-domain sets of :func:`ood_sets` are never used here: they are the
test set of ``benchmarks/trust.py``.

Splits (all fixed, from the model cards / split files):

- nuclei-v1 and nuclei-v2: fit = ``train`` of ``src/cytolens/segment/dsb2018_split.json``
  (every 2nd image, 205), calibration = ``tune`` (43; used for threshold
  tuning, never for gradients), test = ``validation`` (80);
- focus-miq-v1: fit = DSB fluorescence training ids (every 2nd, 173) + BBBC006
  a02-a04, a06-a08, calibration = even positions of the 86 held-out DSB ids
  (43) + a01, test = odd positions (43) + a05, a09 + the BBBC006 z-planes of
  ``focus/bbbc006_subset/00_*.tif`` (real, strongly defocused). Every fit and
  calibration image is also used once defocused by the focus model's own
  training simulator at a seeded random level 0-10, since defocused images
  are its domain;
- detect-bccd-v1: fit = the 234 BCCD training images, calibration = even
  positions of the 58 validation images (29), test = odd positions (29);
- hpa-v1: fit = the 59 training samples, calibration = even positions of the
  16 validation samples (8), test = odd positions (8).

Run (about 5 CPU-minutes)::

    nice -n 10 python scripts/train/applicability.py [--models nuclei-v1 ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(Path(__file__).resolve().parent) not in sys.path:  # the other training scripts
    sys.path.insert(0, str(Path(__file__).resolve().parent))
DATA = ROOT.parent / "shared" / "data"
DSB = DATA / "segmentation" / "dsb2018"
BBBC = DATA / "focus" / "bbbc006_subset"
BCCD = DATA / "detection" / "bccd"
HPA = DATA / "classification" / "hpa"
SRC = ROOT / "src" / "cytolens"
MODELS = ("focus-miq-v1", "nuclei-v1", "nuclei-v2", "detect-bccd-v1", "hpa-v1")
#: Images per out-of-domain set (the first N in sorted order, or every k-th).
OOD_PER_SET = 20
#: Fit and calibration images of the focus model are also used once defocused by its training
#: simulator (scripts/train/focus.py) at a seeded random level in [0, FOCUS_MAX_LEVEL].
FOCUS_MAX_LEVEL = 10.0

logger = logging.getLogger("applicability")

Loader = Callable[[], Any]
Item = tuple[str, Loader]  # (name, load the image as the model takes it)


# --------------------------------------------------------------------------- readers
def read(path: Path) -> np.ndarray:
    """An image file as an array (PNG/JPEG via PIL, TIFF via tifffile)."""
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return np.asarray(tifffile.imread(path))
    from PIL import Image as PILImage

    return np.asarray(PILImage.open(path))


def grey(a: np.ndarray) -> np.ndarray:
    """One float32 plane: RGB(A) averaged, a single plane kept."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        a = a[..., :3].astype(np.float32).mean(-1)
    return np.asarray(a, np.float32)


def rgb(a: np.ndarray) -> np.ndarray:
    """``(Y, X, 3)``: grey repeated, alpha dropped."""
    a = np.asarray(a)
    if a.ndim == 2:
        return np.repeat(a[..., None], 3, -1)
    return a[..., :3]


def four(a: np.ndarray) -> np.ndarray:
    """``(4, Y, X)`` uint8-range float for the HPA model (grey x4; RGB + its mean)."""
    a = np.asarray(a, np.float32)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, -1)
    a = a[..., :3]
    a = a / max(float(a.max()), 1.0)
    return np.concatenate([a, a.mean(-1, keepdims=True)], -1).transpose(2, 0, 1)


def hpa_image(sample: str) -> np.ndarray:
    """An HPA sample ``(4, Y, X)`` uint8 in the model's channel order."""
    from cytolens.io import read_hpa

    return np.asarray(read_hpa(HPA / "images", sample).data)


def every(items: list[Any], n: int) -> list[Any]:
    """At most ``n`` items spread evenly (deterministic)."""
    if len(items) <= n:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


# --------------------------------------------------------------------------- splits
def _dsb_split() -> dict[str, list[str]]:
    split = json.loads((SRC / "segment" / "dsb2018_split.json").read_text())
    return {part: sorted(i for ids in split[part].values() for i in ids) for part in split
            if part in ("train", "tune", "validation")}  # fmt: skip


def _focus_dsb() -> tuple[list[str], list[str]]:
    from focus import dsb_split  # the focus model's own split

    return dsb_split()


def _bccd_split() -> tuple[list[str], list[str]]:
    split = json.loads((SRC / "detect" / "bccd_split.json").read_text())
    val = sorted(split["validation"])
    stems = sorted(p.stem for p in (BCCD / "JPEGImages").glob("*.jpg"))
    return [s for s in stems if s not in set(val)], val


def _hpa_split() -> tuple[list[str], list[str]]:
    split = json.loads((SRC / "classify" / "hpa_split.json").read_text())
    return sorted(split["train"]), sorted(split["validation"])


def _bbbc(field: str) -> Path:
    return BBBC / f"BBBC006_z_aligned__{field}__s1__w1_10.png"


_BANK: list[Any] = []


def _defocused(load: Loader, seed: int) -> Loader:
    """The image defocused as the focus model's training simulated it (a seeded random level)."""

    def defocused() -> Any:
        from focus import Camera, PSFBank, _make_source, simulate_image  # scripts/train/focus.py

        if not _BANK:
            _BANK.append(PSFBank())
        rng = np.random.default_rng(seed)
        level = float(rng.uniform(0, FOCUS_MAX_LEVEL))
        source = _make_source("x", load())
        return simulate_image(source.image, level, Camera.draw(rng), _BANK[0], rng)[0]

    return defocused


def in_domain(model: str) -> dict[str, list[Item]]:
    """``{"fit": [...], "calibration": [...], "test": [...]}`` images of a model's domain."""
    if model in ("nuclei-v1", "nuclei-v2"):
        split = _dsb_split()

        def dsb(i: str) -> Item:
            return f"dsb/{i[:12]}", lambda: read(DSB / "images" / f"{i}.png")

        return {
            "fit": [dsb(i) for i in split["train"][::2]],
            "calibration": [dsb(i) for i in split["tune"]],
            "test": [dsb(i) for i in split["validation"]],
        }
    if model == "focus-miq-v1":
        train, held = _focus_dsb()

        def fdsb(i: str) -> Item:
            return f"dsb/{i[:12]}", lambda: grey(read(DSB / "images" / f"{i}.png"))

        def field(f: str) -> Item:
            return f"bbbc006/{f}", lambda: grey(read(_bbbc(f)))

        fit = [fdsb(i) for i in train[::2]] + [
            field(f) for f in ("a02", "a03", "a04", "a06", "a07", "a08")
        ]
        calib = [fdsb(i) for i in held[::2]] + [field("a01")]
        planes = sorted(BBBC.glob("00_*.tif"))
        test = (
            [fdsb(i) for i in held[1::2]]
            + [field(f) for f in ("a05", "a09")]
            + [(f"bbbc006-z/{p.name[24:31]}", lambda p=p: grey(read(p))) for p in planes]
        )

        def with_defocus(items: list[Item], seed: int) -> list[Item]:
            out = list(items)
            for k, (name, load) in enumerate(items):
                out.append((f"{name}+defocus", _defocused(load, seed + k)))
            return out

        return {
            "fit": with_defocus(fit, 0),
            "calibration": with_defocus(calib, 10_000),
            "test": test,
        }
    if model == "detect-bccd-v1":
        train, val = _bccd_split()

        def bccd(s: str) -> Item:
            return f"bccd/{s}", lambda: rgb(read(BCCD / "JPEGImages" / f"{s}.jpg"))

        return {
            "fit": [bccd(s) for s in train],
            "calibration": [bccd(s) for s in val[::2]],
            "test": [bccd(s) for s in val[1::2]],
        }
    if model == "hpa-v1":
        train, val = _hpa_split()

        def hpa(s: str) -> Item:
            return f"hpa/{s[:8]}", lambda: hpa_image(s)

        return {
            "fit": [hpa(s) for s in train],
            "calibration": [hpa(s) for s in val[::2]],
            "test": [hpa(s) for s in val[1::2]],
        }
    raise KeyError(model)


def _raw_sets() -> dict[str, list[tuple[str, Loader]]]:
    """Images of every other set in ``shared/data``, raw (as read)."""
    import pandas as pd

    sets: dict[str, list[tuple[str, Loader]]] = {}
    w2s = sorted((DATA / "denoising" / "w2s" / "clean").glob("*.png"))
    sets["w2s"] = [(f"w2s/{p.stem}", lambda p=p: read(p)) for p in every(w2s, OOD_PER_SET)]
    mito = pd.read_csv(DATA / "classification" / "mitocheck" / "labels.csv")
    files = every(sorted(mito["file"]), OOD_PER_SET)
    root = DATA / "classification" / "mitocheck"
    sets["mitocheck"] = [
        (f"mitocheck/{Path(f).stem[:20]}", lambda f=f: read(root / f)) for f in files
    ]
    dfnn = sorted((DATA / "focus" / "dfnn_lightsheet_defocus").rglob("*.tif"))
    sets["dfnn-lightsheet"] = [
        (f"dfnn/{p.stem}", lambda p=p: read(p)) for p in every(dfnn, OOD_PER_SET)
    ]
    bccd = sorted((BCCD / "JPEGImages").glob("*.jpg"))
    sets["bccd"] = [(f"bccd/{p.stem}", lambda p=p: read(p)) for p in every(bccd, OOD_PER_SET)]
    samples = sorted(p.name[: -len("_blue.png")] for p in (HPA / "images").glob("*_blue.png"))
    for colour in ("red", "green"):
        sets[f"hpa-{colour}"] = [
            (f"hpa-{colour}/{s[:8]}", lambda s=s, c=colour: read(HPA / "images" / f"{s}_{c}.png"))
            for s in every(samples, OOD_PER_SET)
        ]
    sets["hpa-rgb"] = [
        (f"hpa-rgb/{s[:8]}", lambda s=s: hpa_image(s)[:3].transpose(1, 2, 0))
        for s in every(samples, OOD_PER_SET)
    ]
    table = pd.read_csv(DSB / "samples.csv")
    for modality in ("histology", "fluorescence", "brightfield"):
        ids = sorted(table.loc[table["modality"] == modality, "id"])
        sets[f"dsb-{modality}"] = [
            (f"dsb-{modality}/{i[:12]}", lambda i=i: read(DSB / "images" / f"{i}.png"))
            for i in every(ids, OOD_PER_SET)
        ]
    lf = sorted((DATA / "label_free" / "insilico_sample").glob("*.png"))
    sets["insilico-lf"] = [(f"insilico/{k}", lambda p=p: read(p)) for k, p in enumerate(lf)]
    return sets


def _four_from_insilico() -> list[tuple[str, Loader]]:
    lf = sorted((DATA / "label_free" / "insilico_sample").glob("*.png"))
    fluo = [p for p in lf if "CONFOCAL" in p.name]
    phase = [p for p in lf if "PHASE" in p.name]

    def stack(extra: Path) -> np.ndarray:
        chans = [grey(read(p)) for p in fluo[:3]] + [grey(read(extra))]
        return np.stack([c / max(float(c.max()), 1.0) for c in chans])

    return [(f"insilico-4ch/{k}", lambda p=p: stack(p)) for k, p in enumerate(every(phase, 6))]


def ood_sets(model: str) -> dict[str, list[Item]]:
    """Out-of-domain sets of a model: images of other sets in ``shared/data``, as it takes them."""
    raw = _raw_sets()
    if model in ("nuclei-v1", "nuclei-v2"):
        names = ["w2s", "mitocheck", "hpa-red", "bccd", "dfnn-lightsheet", "insilico-lf"]
        conv: Callable[[Any], Any] = np.asarray
    elif model == "focus-miq-v1":
        names = [
            "hpa-green",
            "hpa-red",
            "dfnn-lightsheet",
            "w2s",
            "bccd",
            "dsb-histology",
            "insilico-lf",
        ]
        conv = grey
    elif model == "detect-bccd-v1":
        names = [
            "dsb-histology",
            "dsb-fluorescence",
            "dsb-brightfield",
            "hpa-rgb",
            "w2s",
            "mitocheck",
            "insilico-lf",
        ]
        conv = rgb
    elif model == "hpa-v1":
        names = ["dsb-fluorescence", "dsb-histology", "bccd", "w2s", "mitocheck"]
        conv = four
    else:
        raise KeyError(model)
    out = {n: [(name, lambda load=load: conv(load())) for name, load in raw[n]] for n in names}
    if model == "hpa-v1":
        out["insilico-4ch"] = _four_from_insilico()
    return out


# --------------------------------------------------------------------------- features
def features(predictor: Any, items: list[Item]) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, features)`` of each image."""
    for name, load in items:
        yield name, np.asarray(predictor.features(load()), np.float64)


def feature_matrix(predictor: Any, items: list[Item]) -> np.ndarray:
    return np.stack([f for _, f in features(predictor, items)])


def fit_model(name: str) -> dict[str, Any]:
    """Fit, calibrate, save and register the reference of one shipped model."""
    import yaml

    from cytolens.core.files import atomic_path
    from cytolens.models import CARD_FILE, load, load_card, model_dir
    from cytolens.models.applicability import APPLICABILITY_FILE, DomainReference

    t0 = time.perf_counter()
    predictor = load(name, device="cpu")
    parts = in_domain(name)
    fit = feature_matrix(predictor, parts["fit"])
    calib = feature_matrix(predictor, parts["calibration"])
    ref = DomainReference.fit(fit, calib)
    folder = model_dir(name)
    path = ref.save(folder / APPLICABILITY_FILE)
    card = load_card(name)
    layer = {
        "focus-miq-v1": "features.2 and features.9 (first and third conv blocks)",
        "nuclei-v1": "down.0, merge.1 and head (first encoder block, last-but-one decoder "
        "block, output maps)",
        "nuclei-v2": "down.0, merge.1 and head (first encoder block, last-but-one decoder "
        "block, output maps)",
        "detect-bccd-v1": "stages.3 (deepest backbone stage)",
        "hpa-v1": "features (last conv stage), then each input channel's mean and std and "
        "the channels' pairwise correlations",
    }[name]
    entry = ref.card_entry(
        path,
        f"per-channel mean and std of {layer}, averaged over at most 4 windows "
        f"(16 patches for focus) of the model's normal input preparation; {fit.shape[1]} values",
        n_fit=len(fit),
        fit_images="training split (see scripts/train/applicability.py)",
        calibration_images="held-out in-domain images, disjoint from the benchmark's test images",
        command="nice -n 10 python scripts/train/applicability.py",
    )
    if name == "hpa-v1":  # which calls are at chance on the held-out images
        from cytolens.models.check import chance_classes

        entry["at_chance"] = chance_classes(card.metrics["validation"], len(_hpa_split()[1]))
    data = card.model_dump(mode="json")
    data["applicability"] = entry
    with atomic_path(folder / CARD_FILE) as tmp:  # weights and sha256 unchanged
        tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    logger.info(
        "%s: %d fit, %d calibration images, limit %.3f (%.0f s)",
        name, len(fit), len(calib), ref.limit, time.perf_counter() - t0,
    )  # fmt: skip
    return entry


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch

    torch.set_num_threads(args.threads)
    if not DATA.is_dir():
        raise SystemExit(f"shared data not found at {DATA}")
    for name in args.models:
        fit_model(name)


if __name__ == "__main__":
    main()
