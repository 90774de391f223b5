"""Train a denoiser: supervised (noisy -> clean pairs, CARE) or self-supervised (Noise2Void).

Images stream from disk (a bounded cache of decoded images; random crops
drawn from random files each step), so a folder of any size works. Training
goes through the one torch training core (:func:`cytolens.models.training.fit`)
and the result is a model folder (``weights.pt``, ``card.yaml``,
``applicability.npz``) that :func:`cytolens.restore.denoise` loads by path.

- **Supervised** (Weigert et al. 2018): the target is the clean image mapped
  onto the noisy image's intensity scale by a least-squares affine fit (pairs
  of separately rescaled 8-bit images agree only up to such a map), so the
  network learns the expected noise-free input; mean squared error.
- **Self-supervised** (Krull et al. 2019, Noise2Void): in every crop a few
  pixels (``n2v_fraction``) are replaced by a random neighbour from a 5 x 5
  window and the loss is the squared error at those pixels only, against the
  noisy values: the network cannot copy a pixel's own noise, so it learns
  the noise-free signal when the noise is pixel-wise independent.

Augmentation: random flips and 90-degree rotations. Validation: a fixed set of
files (``val_noisy``/``val_clean``), never trained on; its mean PSNR (after the
affine fit, supervised) or masked loss (self-supervised) is logged and
recorded, and its pooled features calibrate the applicability reference.
"""

from __future__ import annotations

import logging
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cytolens.core.errors import InputError

__all__ = [
    "affine_fit",
    "pair_files",
    "psnr",
    "refit_applicability",
    "split_by_group",
    "train_denoiser",
]

logger = logging.getLogger(__name__)

PMIN, PMAX = 1.0, 99.8


def affine_fit(output: Any, target: Any) -> np.ndarray:
    """``a * output + b`` with ``a, b`` fitted to ``target`` by least squares (float64).

    Examples
    --------
    >>> affine_fit(np.array([0.0, 1.0, 2.0]), np.array([1.0, 3.0, 5.0])).tolist()
    [1.0, 3.0, 5.0]
    """
    x = np.asarray(output, dtype=np.float64).ravel()
    y = np.asarray(target, dtype=np.float64).ravel()
    xc = x - x.mean()
    var = float((xc**2).sum())
    a = float((xc * (y - y.mean())).sum()) / var if var > 0 else 0.0
    b = float(y.mean() - a * x.mean())
    return (a * np.asarray(output, dtype=np.float64) + b).reshape(np.shape(output))


def psnr(output: Any, target: Any, *, data_range: float = 255.0, affine: bool = True) -> float:
    """Peak signal-to-noise ratio (dB) of ``output`` against ``target``.

    With ``affine`` the output is first fitted to the target by scale and
    offset (:func:`affine_fit`), as the CARE evaluation does.

    Examples
    --------
    >>> t = np.linspace(0, 255, 100)
    >>> round(psnr(t / 2 + 3, t), 1) > 100, round(psnr(t + 1, t, affine=False), 2)
    (True, 48.13)
    """
    y = np.asarray(target, dtype=np.float64)
    x = affine_fit(output, y) if affine else np.asarray(output, dtype=np.float64)
    mse = float(((x - y) ** 2).mean())
    return float("inf") if mse == 0 else float(10 * np.log10(data_range**2 / mse))


def pair_files(
    noisy: Sequence[str | os.PathLike[str]], clean: Sequence[str | os.PathLike[str]]
) -> list[tuple[Path, Path]]:
    """Pair noisy and clean files by name (stem); refuse unpaired files.

    Raises
    ------
    InputError
        Naming the first noisy file without a clean partner (or the reverse).

    Examples
    --------
    >>> pair_files(["n/a.png", "n/b.png"], ["c/b.png", "c/a.png"])[0]
    (PosixPath('n/a.png'), PosixPath('c/a.png'))
    >>> pair_files(["n/a.png"], ["c/x.png"])
    Traceback (most recent call last):
    ...
    cytolens.core.errors.InputError: noisy file n/a.png has no clean file of the same name ...
    """
    by_stem = {Path(c).stem: Path(c) for c in clean}
    noisy_stems = {Path(n).stem for n in noisy}
    for n in noisy:
        if Path(n).stem not in by_stem:
            raise InputError(
                f"noisy file {n} has no clean file of the same name (stem {Path(n).stem!r}); "
                f"clean files are paired with noisy ones by name"
            )
    extra = sorted(s for s in by_stem if s not in noisy_stems)
    if extra:
        raise InputError(
            f"clean file {by_stem[extra[0]]} has no noisy file of the same name "
            f"({len(extra)} unpaired clean file(s))"
        )
    return [(Path(n), by_stem[Path(n).stem]) for n in noisy]


def split_by_group(
    files: Sequence[Any], *, val_fraction: float = 0.1, group_pattern: str | None = None
) -> tuple[list[Any], list[Any]]:
    """A fixed train/validation split of files, whole groups on one side.

    The group of a file is the first match of ``group_pattern`` in its name
    (e.g. ``r"^\\d+"``: the field number of ``003_1.png``), or its stem; every
    ``round(1 / val_fraction)``-th group in sorted order goes to validation.

    Examples
    --------
    >>> files = [f"{f:03d}_{c}.png" for f in range(6) for c in range(3)]
    >>> train, val = split_by_group(files, val_fraction=0.34, group_pattern=r"^\\d+")
    >>> sorted({v[:3] for v in val}), len(train)
    (['002', '005'], 12)
    """
    if not 0 < val_fraction < 1:
        raise InputError(f"val_fraction must be in (0, 1), got {val_fraction}")

    def group(f: Any) -> str:
        stem = Path(f[0] if isinstance(f, tuple) else f).stem
        m = re.search(group_pattern, stem) if group_pattern else None
        return m.group(0) if m else stem

    groups = sorted({group(f) for f in files})
    if len(groups) < 2:
        raise InputError(f"{len(groups)} group(s) of files: a validation split needs at least 2")
    every = max(2, round(1 / val_fraction))
    val_groups = {g for i, g in enumerate(groups) if i % every == every - 1} or {groups[-1]}
    train = [f for f in files if group(f) not in val_groups]
    val = [f for f in files if group(f) in val_groups]
    return train, val


class _ImageCache:
    """Decoded, normalized training images read on demand (a bounded LRU cache)."""

    def __init__(self, pairs: list[tuple[Path, Path | None]], size: int = 64) -> None:
        self.pairs = pairs
        self.size = size
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray | None]] = OrderedDict()
        self.shape: tuple[int, ...] | None = None
        self.dtype: str | None = None

    def _read(self, path: Path) -> np.ndarray:
        from cytolens.io import imread

        img = imread(path, lazy=False)
        data = np.asarray(img.data)
        if data.ndim != 2:
            raise InputError(
                f"{path}: a {data.ndim}-D image (axes {img.axes}, shape {data.shape}); "
                "the denoiser trains on 2-D (YX) planes"
            )
        return data

    def check(self, index: int) -> None:
        """Read a pair once and check its shapes and dtype against the first."""
        self.get(index)

    def get(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        noisy_path, clean_path = self.pairs[index]
        noisy = self._read(noisy_path)
        if self.dtype is None:
            self.dtype = noisy.dtype.name
        elif noisy.dtype.name != self.dtype:
            raise InputError(
                f"{noisy_path} is {noisy.dtype.name} but the first training image is "
                f"{self.dtype}; train on images of one bit depth"
            )
        if min(noisy.shape) < 32:
            raise InputError(f"{noisy_path}: shape {noisy.shape} is too small (at least 32 px)")
        lo, hi = np.percentile(noisy, [PMIN, PMAX])
        if hi <= lo:
            raise InputError(f"{noisy_path} is flat: nothing to learn from")
        x = ((noisy - lo) / (hi - lo)).astype(np.float32)
        y = None
        if clean_path is not None:
            clean = self._read(clean_path)
            if clean.shape != noisy.shape:
                raise InputError(
                    f"clean file {clean_path} has shape {clean.shape} but its noisy partner "
                    f"{noisy_path} has {noisy.shape}; pairs must be registered pixel for pixel"
                )
            y = affine_fit(clean, x).astype(np.float32)
        self._cache[index] = (x, y)
        while len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return x, y


def _augment(rng: np.random.Generator, *arrays: np.ndarray) -> list[np.ndarray]:
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))
    out = []
    for a in arrays:
        a = np.rot90(a, k)
        out.append(np.ascontiguousarray(a[:, ::-1] if flip else a))
    return out


def _n2v_mask(
    rng: np.random.Generator, x: np.ndarray, fraction: float, radius: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Blind-spot input and mask of a crop ``(H, W)``: masked pixels take a random neighbour."""
    h, w = x.shape
    n = max(1, round(fraction * h * w))
    ys, xs = rng.integers(0, h, n), rng.integers(0, w, n)
    dy, dx = rng.integers(-radius, radius + 1, (2, n))
    same = (dy == 0) & (dx == 0)
    dx[same] = 1  # never the pixel itself
    ny = np.clip(ys + dy, 0, h - 1)
    nx = np.clip(xs + dx, 0, w - 1)
    inp = x.copy()
    inp[ys, xs] = x[ny, nx]
    mask = np.zeros_like(x)
    mask[ys, xs] = 1
    return inp, mask


def _batch_source(
    images: _ImageCache,
    rng: np.random.Generator,
    *,
    supervised: bool,
    patch: int,
    batch: int,
    n2v_fraction: float,
) -> Callable[[int], Any]:
    import torch

    def draw(_step: int) -> Any:
        xs, ys, ms = [], [], []
        for _ in range(batch):
            x, y = images.get(int(rng.integers(len(images.pairs))))
            h, w = x.shape
            p = min(patch, h, w)
            r, c = int(rng.integers(h - p + 1)), int(rng.integers(w - p + 1))
            crop_x = x[r : r + p, c : c + p]
            if supervised:
                crop_x, crop_y = _augment(rng, crop_x, y[r : r + p, c : c + p])
                m = np.ones_like(crop_x)
                inp = crop_x
            else:
                (crop_y,) = _augment(rng, crop_x)
                inp, m = _n2v_mask(rng, crop_y, n2v_fraction)
            xs.append(inp)
            ys.append(crop_y)
            ms.append(m)
        as_t = [torch.from_numpy(np.stack(a)[:, None]) for a in (xs, ys, ms)]
        return tuple(as_t)

    return draw


def _loss(network: Any, batch: Any) -> Any:
    x, y, m = batch
    return (((network(x) - y) ** 2) * m).sum() / m.sum().clamp(min=1)


def train_denoiser(
    noisy: Sequence[str | os.PathLike[str]],
    clean: Sequence[str | os.PathLike[str]] | None = None,
    *,
    val_noisy: Sequence[str | os.PathLike[str]],
    val_clean: Sequence[str | os.PathLike[str]] | None = None,
    out: str | os.PathLike[str] | None = None,
    name: str | None = None,
    steps: int = 2000,
    patch: int = 64,
    batch: int = 16,
    lr: float = 2e-3,
    channels: tuple[int, ...] = (16, 32, 64),
    n2v_fraction: float = 0.02,
    seed: int = 0,
    threads: int = 2,
    device: str = "cpu",
    cache_size: int = 64,
    training_data: list[str] | None = None,
    training_command: str = "cytolens restore train-denoiser",
    training_notes: dict[str, Any] | None = None,
    progress: Any = None,
    checkpoint: str | os.PathLike[str] | None = None,
) -> tuple[Any, Any]:
    """Train a denoiser and (with ``out``) write it as a model folder.

    Parameters
    ----------
    noisy : sequence of path-like
        Training images (2-D, one bit depth).
    clean : sequence of path-like, optional
        Their clean partners, paired by file name (supervised, CARE); without
        them the training is self-supervised (Noise2Void).
    val_noisy, val_clean : sequence of path-like
        The fixed validation files (never trained on); ``val_clean`` is
        required with ``clean``. They calibrate the applicability reference.
    out : path-like, optional
        Model folder to write (replaced atomically).
    name : str, optional
        The card's name (default: derived from ``out``).
    steps, patch, batch, lr : int, int, int, float
        Optimizer steps, crop side, crops per step, peak learning rate.
    channels : tuple of int
        U-Net features per level (:class:`~cytolens.restore.network.RestoreUNet`).
    n2v_fraction : float
        Share of blind-spot pixels per crop (self-supervised).
    seed, threads, device :
        Seed, torch CPU threads, training device.
    cache_size : int
        Decoded images kept in memory.
    training_data, training_command, training_notes :
        Recorded in the card (data and licences, the command, extra notes).
    progress : bool or callable, optional
        Progress bar or ``progress(done, total)``.
    checkpoint : path-like, optional
        Resumable checkpoint file.

    Returns
    -------
    restorer : cytolens.restore.denoise.Restorer
        The trained model (with its applicability reference when ``out`` is given).
    card : cytolens.models.ModelCard

    Raises
    ------
    InputError
        Unpaired or differently shaped noisy/clean files, mixed bit depths,
        non-2-D images, no validation files.

    Examples
    --------
    >>> import tempfile
    >>> from cytolens.io import imwrite
    >>> d = Path(tempfile.mkdtemp()); rng = np.random.default_rng(0)
    >>> files = []
    >>> for i in range(6):
    ...     files.append(d / f"{i}.tif")
    ...     _ = imwrite(files[-1], rng.integers(0, 255, (48, 48), dtype=np.uint8))
    >>> model, card = train_denoiser(files[:3], val_noisy=files[3:], steps=2, patch=32,
    ...                              batch=2, channels=(4, 8), threads=1, out=d / "m")
    >>> card.parameters["training_mode"], sorted(p.name for p in (d / "m").iterdir())
    ('self_supervised', ['applicability.npz', 'card.yaml', 'weights.pt'])
    """
    from cytolens.models import card_name_for, make_card
    from cytolens.models.training import TrainConfig, fit, seed_everything
    from cytolens.restore.denoise import Restorer
    from cytolens.restore.network import RestoreUNet

    supervised = clean is not None
    if not noisy:
        raise InputError("no training images")
    if len(val_noisy) < 2:
        raise InputError(
            f"{len(val_noisy)} validation image(s): at least 2 are needed (a fixed held-out "
            "set, which also calibrates the model's applicability score)"
        )
    if supervised and val_clean is None:
        raise InputError("supervised training needs val_clean beside val_noisy")
    pairs: list[tuple[Path, Path | None]] = (
        list(pair_files(noisy, clean)) if supervised else [(Path(n), None) for n in noisy]
    )
    val_pairs: list[tuple[Path, Path | None]] = (
        list(pair_files(val_noisy, val_clean))
        if supervised and val_clean is not None
        else [(Path(n), None) for n in val_noisy]
    )
    overlap = set(p[0].resolve() for p in pairs) & set(p[0].resolve() for p in val_pairs)
    if overlap:
        raise InputError(f"{sorted(overlap)[0]} is both a training and a validation image")
    images = _ImageCache(pairs, cache_size)
    for i in range(len(pairs)):  # check every pair (names, shapes, dtypes) before training
        images.check(i)
    val_images = _ImageCache(val_pairs, len(val_pairs))
    val_images.dtype = images.dtype
    for i in range(len(val_pairs)):
        val_images.check(i)

    config = TrainConfig(steps=steps, lr=lr, seed=seed, threads=threads, grad_clip=1.0)
    rng = seed_everything(seed)
    network = RestoreUNet(1, 1, tuple(channels))
    source = _batch_source(
        images, rng, supervised=supervised, patch=patch, batch=batch, n2v_fraction=n2v_fraction
    )
    val_batches = _fixed_val(val_images, supervised, patch, n2v_fraction, seed)

    def validate(net: Any) -> dict[str, float]:
        return {"val_loss": float(sum(_loss(net, b) for b in val_batches) / len(val_batches))}

    result = fit(
        network,
        source,
        _loss,
        config,
        validate=validate,
        validate_every=max(1, steps // 5),
        progress=progress,
        checkpoint=checkpoint,
        device=device,
    )
    mode = "supervised" if supervised else "self_supervised"
    card_name = name or (card_name_for(out) if out is not None else "denoiser")
    div = 2 ** (len(channels) - 1)
    params = {
        "task": "denoise",
        "training_mode": mode,
        "tile_overlap": 32 if div <= 8 else 64,
        "input_dtype": images.dtype or "float32",
        # the finest encoder level and the bottleneck
        "feature_modules": ["down.0", f"down.{len(channels) - 1}"],
    }
    training = result.record()
    training.update(
        {
            "mode": mode,
            "patch": patch,
            "batch": batch,
            "n2v_fraction": n2v_fraction if not supervised else None,
            "augmentation": "random flips and 90-degree rotations",
            "target": "clean image affinely fitted to the normalized noisy image"
            if supervised
            else "noisy image at blind-spot pixels (Noise2Void)",
            "n_train_images": len(pairs),
            "train_files": [p[0].name for p in pairs],
            "val_files": [p[0].name for p in val_pairs],
            "final_val_loss": round(result.history[-1].get("val_loss", float("nan")), 6),
            **(training_notes or {}),
        }
    )
    card = make_card(
        name=card_name,
        task=f"denoise: {mode} ({'CARE' if supervised else 'Noise2Void'}-style), 2-D planes",
        architecture=f"RestoreUNet(channels={tuple(channels)}, residual), "
        f"{sum(p.numel() for p in network.parameters())} parameters",
        input_axes="YX",
        network={
            "entry_point": "cytolens.restore.network:RestoreUNet",
            "kwargs": {"in_channels": 1, "out_channels": 1, "channels": list(channels)},
        },
        parameters=params,
        normalization={"kind": "percentile", "pmin": PMIN, "pmax": PMAX, "clip": False},
        training_data=training_data or [f"{len(pairs)} user images"],
        training_command=training_command,
        training=training,
    )
    restorer = Restorer.from_card(network, card, device="cpu")
    if out is None:
        return restorer, card
    restorer = _save_with_domain(restorer, images, val_images, Path(out))
    return restorer, restorer.card


def _save_with_domain(restorer: Any, images: _ImageCache, val: _ImageCache, folder: Path) -> Any:
    """Fit the applicability reference and write the model folder; the loaded restorer."""
    from cytolens.models import save_model
    from cytolens.models.applicability import APPLICABILITY_FILE, DomainReference
    from cytolens.restore.denoise import Restorer

    # every window is a sample, fitted on training images and calibrated on held-out ones;
    # at inference the window scores of an image are averaged (Restorer.applicability)
    def windows(source: _ImageCache) -> np.ndarray:
        return np.concatenate(
            [
                restorer.features(source.get(i)[0], limits=(0, 1), pooled=False)
                for i in range(len(source.pairs))
            ]
        )

    train_feats, val_feats = windows(images), windows(val)
    if len(val_feats) < 3 or len(train_feats) < 3:
        raise InputError(
            f"{len(val.pairs)} validation image(s) give {len(val_feats)} window(s) of "
            f"{restorer.params.feature_window} px to calibrate the applicability score: at least "
            "3 are needed; add validation images"
        )
    ref = DomainReference.fit(train_feats, val_feats, max_components=min(32, len(train_feats) - 1))
    tmp_ref = folder.parent / f".{folder.name}.{APPLICABILITY_FILE}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    ref.save(tmp_ref)
    modules = " and ".join(restorer.params.feature_modules)
    entry = ref.card_entry(
        tmp_ref,
        f"mean and std of the activations of {modules}, per window of "
        f"{restorer.params.feature_window} px (at most 4 per image; an image's score is "
        "the mean of its windows')",
        n_train_images=len(images.pairs),
        n_train_windows=len(train_feats),
    )
    card = restorer.card.model_copy(update={"applicability": entry | {"file": APPLICABILITY_FILE}})
    save_model(restorer.network.state_dict(), card, folder=folder)
    os.replace(tmp_ref, folder / APPLICABILITY_FILE)
    out = Restorer.from_card(restorer.network, card, device="cpu")
    out.folder = folder
    return out


def refit_applicability(
    folder: str | os.PathLike[str],
    noisy: Sequence[str | os.PathLike[str]],
    val_noisy: Sequence[str | os.PathLike[str]],
) -> Any:
    """Fit a model folder's applicability reference again (weights unchanged).

    ``noisy`` are the model's training images, ``val_noisy`` its held-out
    validation images (as recorded in the card).
    """
    from cytolens.models import load

    restorer = load(folder, device="cpu", capability="restore")
    images = _ImageCache([(Path(n), None) for n in noisy])
    val = _ImageCache([(Path(n), None) for n in val_noisy])
    return _save_with_domain(restorer, images, val, Path(folder))


def _fixed_val(
    images: _ImageCache, supervised: bool, patch: int, fraction: float, seed: int
) -> list[Any]:
    """Fixed validation batches: central crops of every validation image (fixed masks)."""
    rng = np.random.default_rng(seed + 1)
    batches = []
    for i in range(len(images.pairs)):
        x, y = images.get(i)
        h, w = x.shape
        p = min(2 * patch, h, w)
        r, c = (h - p) // 2, (w - p) // 2
        one = _ImageCache([images.pairs[i]], 1)
        one._cache[0] = (x[r : r + p, c : c + p], None if y is None else y[r : r + p, c : c + p])
        source = _batch_source(
            one, rng, supervised=supervised, patch=p, batch=1, n2v_fraction=fraction
        )
        batches.append(source(0))
    return batches
