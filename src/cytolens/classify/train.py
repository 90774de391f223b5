"""Train or fine-tune :class:`~cytolens.classify.network.HPANet` on HPA-format folders.

Used by ``scripts/train/hpa.py`` (the shipped ``hpa-v1``) and by
``cytolens classify train`` (a user's folder + labels CSV, of any size).

Data: :class:`HPADataset` reads one sample from disk per item (the four
channel PNG/TIFF/JPEG files), so a folder of 31,000 images streams through a
:class:`torch.utils.data.DataLoader` in bounded memory; ``cache=True`` keeps
the prepared arrays of small sets in memory instead. Each item is one
augmented example: a random crop of the image at the model's working scale
or, with probability ``cell_fraction``, the masked crop of one random cell
(:mod:`cytolens.classify.cells`), labelled with the image's classes (weak
labels), so every image yields many different examples. Augmentation:
90-degree rotations, flips, crop position and zoom 2**U(-0.25, 0.25), a
per-channel gain U(0.7, 1.3) and Gaussian noise. Images are drawn with
weights from their rarest class (inverse square root of its frequency) so the
rare compartments are seen often enough. Loss: binary cross-entropy per
class, positives of rare classes weighted up (``balance``: the square root
of negatives per positive, clipped to [1, 10] first), which raised macro F1
in cross-validation on the 75 HPA samples; AdamW with a warm-up and cosine
decay.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from cytolens.classify.cells import CROP_SIZE, as_cyx_float, cell_crops, segment_cells
from cytolens.classify.hpa import N_CLASSES
from cytolens.core.errors import InputError

__all__ = [
    "HPADataset",
    "TrainConfig",
    "card_parameters",
    "card_training",
    "fit_thresholds",
    "predict_probabilities",
    "sample_weights",
    "score_predictions",
    "stratified_split",
    "train_network",
]

logger = logging.getLogger(__name__)


class TrainConfig(BaseModel):
    """Settings of a training run (saved in the model card)."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(600, ge=1)
    batch_size: int = Field(32, ge=1)
    crop: int = Field(128, ge=32, multiple_of=32)
    scale: float = Field(0.5, gt=0, le=2)
    cell_fraction: float = Field(0.25, ge=0, le=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-3, ge=0)
    balance: bool = True
    seed: int = 0
    threads: int = Field(2, ge=1)
    workers: int = Field(0, ge=0)


def downscale(x: np.ndarray, scale: float) -> np.ndarray:
    """Zoom a ``(C, Y, X)`` float32 array by ``scale`` (anti-aliased area averaging).

    Examples
    --------
    >>> downscale(np.ones((4, 10, 12), np.float32), 0.5).shape
    (4, 5, 6)
    """
    if abs(scale - 1) < 1e-3:
        return np.ascontiguousarray(x, np.float32)
    import torch
    import torch.nn.functional as F

    h, w = x.shape[1:]
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    t = torch.from_numpy(np.ascontiguousarray(x, np.float32))[None]
    y = F.interpolate(t, size=size, mode="bilinear", antialias=scale < 1, align_corners=False)
    return y[0].numpy()


def card_parameters(
    config: TrainConfig, thresholds: Any, default_threshold: float, threshold_rule: str
) -> dict[str, Any]:
    """The model-card ``parameters`` a :class:`~cytolens.classify.model.LocalizationModel` reads.

    Exactly the :class:`~cytolens.models.schema.ClassifyParameters`
    (validated); how the thresholds were chosen (``default_threshold``,
    ``threshold_rule``) goes to the card's ``training`` (:func:`card_training`).

    Examples
    --------
    >>> p = card_parameters(TrainConfig(), np.full(28, 0.4), 0.5, "max F1 per class")
    >>> p["scale"], p["tile_size"], len(p["thresholds"]), p["class_names"][0]
    (0.5, 512, 28, 'Nucleoplasm')
    """
    from cytolens.classify.hpa import CLASS_NAMES, NUCLEOLAR_CLASSES
    from cytolens.models.schema import ClassifyParameters

    return ClassifyParameters(
        scale=config.scale,
        tile_size=512,
        class_names=list(CLASS_NAMES),
        thresholds=[round(float(t), 3) for t in thresholds],
        nucleolar_classes=list(NUCLEOLAR_CLASSES),
    ).model_dump(mode="json")


def card_training(
    config: TrainConfig, default_threshold: float, threshold_rule: str, **extra: Any
) -> dict[str, Any]:
    """The model card's documentation-only ``training``: configuration, threshold rule, ``extra``.

    Examples
    --------
    >>> t = card_training(TrainConfig(), 0.5, "max F1 per class", seed=0)
    >>> t["default_threshold"], t["seed"]
    (0.5, 0)
    """
    return {
        "default_threshold": default_threshold,
        "threshold_rule": threshold_rule,
        "train_config": config.model_dump(),
        **extra,
    }


def sample_weights(targets: np.ndarray) -> np.ndarray:
    """Drawing weight of each image: inverse square root of its rarest class's frequency.

    Examples
    --------
    >>> sample_weights(np.array([[1, 0], [1, 0], [1, 0], [0, 1]])).round(3).tolist()
    [0.577, 0.577, 0.577, 1.0]
    """
    y = np.asarray(targets, bool)
    freq = np.maximum(y.sum(0), 1)
    w = np.where(y, 1 / np.sqrt(freq)[None, :], 0).max(axis=1)
    return np.where(w > 0, w, 1 / np.sqrt(len(y))).astype(float)


class HPADataset:
    """Augmented examples from an HPA folder, read from disk per item (a torch ``Dataset``).

    Parameters
    ----------
    folder : path-like
        Folder of ``<id>_red|green|blue|yellow.<png|tif|jpg>`` files.
    ids : sequence of str
        Sample ids.
    targets : numpy.ndarray
        ``(len(ids), 28)`` multi-hot labels.
    crop : int
        Side of the examples (px at the working scale).
    scale : float
        Working scale (0.5: a 512 px image is seen at 256 px).
    cell_fraction : float
        Probability that an example is a masked cell crop rather than a crop
        of the image.
    augment : bool
        Random crops and augmentation (else: the whole image, unaugmented).
    cache : bool or dict
        Keep prepared images (and cells) in memory, for small sets; a dict
        is used as the store (keyed by sample id), so datasets over subsets
        of one folder can share it.
    seed : int
        Item ``k = i + d * len(ids)`` (draw ``d`` of image ``i``) in epoch
        ``e`` takes its augmentation from the seed sequence ``(seed, e, d, i)``:
        repeatable, different for every draw, safe with worker processes.

    Examples
    --------
    >>> import tempfile
    >>> from PIL import Image as PILImage
    >>> folder = Path(tempfile.mkdtemp())
    >>> for c in ("red", "green", "blue", "yellow"):
    ...     PILImage.fromarray(np.full((64, 64), 80, np.uint8)).save(folder / f"s_{c}.png")
    >>> ds = HPADataset(folder, ["s"], np.eye(28, dtype=np.uint8)[:1], crop=32, cell_fraction=0)
    >>> x, y = ds[0]
    >>> tuple(x.shape), int(y.sum())
    ((4, 32, 32), 1)
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        ids: Sequence[str],
        targets: np.ndarray,
        *,
        crop: int = 128,
        scale: float = 0.5,
        cell_fraction: float = 0.25,
        augment: bool = True,
        cache: bool | dict[str, Any] = False,
        seed: int = 0,
    ) -> None:
        self.folder = Path(folder)
        self.ids = [str(i) for i in ids]
        self.targets = np.asarray(targets, np.float32)
        if self.targets.shape != (len(self.ids), N_CLASSES):
            raise InputError(
                f"targets must be ({len(self.ids)}, {N_CLASSES}) for {len(self.ids)} ids, "
                f"got {self.targets.shape}"
            )
        self.crop, self.scale, self.cell_fraction = int(crop), float(scale), float(cell_fraction)
        self.augment, self.seed = augment, int(seed)
        self.cache = cache is not False
        self.store: dict[str, Any] = cache if isinstance(cache, dict) else {}
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.ids)

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draws (call once per pass over the data)."""
        self.epoch = int(epoch)

    def load(self, index: int, *, with_cells: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """The image at working scale ``(4, y, x)`` float32 and (optionally) its cell labels."""
        from cytolens.io import read_hpa

        stored = self.store.get(self.ids[index])
        if stored is not None and (stored[1] is not None or not with_cells):
            return stored
        x = as_cyx_float(read_hpa(self.folder, self.ids[index]), name=self.ids[index])
        cells = segment_cells(x)[1] if with_cells else None
        if cells is not None and self.scale != 1:
            from skimage.transform import resize

            shape = downscale(x[:1], self.scale).shape[1:]
            cells = resize(cells, shape, order=0, preserve_range=True, anti_aliasing=False)
            cells = cells.astype(np.int32)
        item = (downscale(x, self.scale), cells)
        if self.cache:
            self.store[self.ids[index]] = item
        return item

    def _patch(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        h, w = x.shape[1:]
        r = min(round(self.crop * 2 ** rng.uniform(-0.25, 0.25)), h, w)
        y0, x0 = int(rng.integers(0, h - r + 1)), int(rng.integers(0, w - r + 1))
        patch = x[:, y0 : y0 + r, x0 : x0 + r]
        if patch.shape[1:] != (self.crop, self.crop):
            t = torch.from_numpy(np.ascontiguousarray(patch))[None]
            size = (self.crop, self.crop)
            patch = F.interpolate(t, size=size, mode="bilinear", antialias=r > self.crop)[0].numpy()
        return patch

    def _cell(
        self, x: np.ndarray, cells: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray | None:
        ids = np.unique(cells[cells > 0])
        if not len(ids):
            return None
        k = int(rng.choice(ids))
        one = np.where(cells == k, k, 0).astype(np.int32)
        crop = cell_crops(x, one, scale=1.0, size=CROP_SIZE)[0][0]
        if CROP_SIZE != self.crop:
            crop = downscale(crop, self.crop / CROP_SIZE)
        return crop

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        import torch

        # index = image + n_images * draw: every draw of an image is a new example
        draw, index = divmod(int(index), len(self.ids))
        rng = np.random.default_rng([self.seed, self.epoch, draw, index])
        use_cell = self.augment and rng.random() < self.cell_fraction
        x, cells = self.load(index, with_cells=use_cell)
        if not self.augment:
            return torch.from_numpy(x), torch.from_numpy(self.targets[index])
        ex = self._cell(x, cells, rng) if use_cell and cells is not None else None
        if ex is None:
            ex = self._patch(x, rng)
        ex = np.rot90(ex, int(rng.integers(4)), axes=(1, 2))
        if rng.random() < 0.5:
            ex = ex[:, :, ::-1]
        gain = rng.uniform(0.7, 1.3, size=(ex.shape[0], 1, 1)).astype(np.float32)
        noise = rng.standard_normal(ex.shape).astype(np.float32) * np.float32(rng.uniform(0, 0.02))
        ex = np.clip(ex * gain + noise, 0, 1).astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(ex)), torch.from_numpy(self.targets[index])


def train_network(
    dataset: HPADataset,
    config: TrainConfig,
    *,
    network: Any = None,
    progress: Callable[[int, float], None] | None = None,
) -> Any:
    """Train (or fine-tune) a network on a dataset for ``config.steps`` batches.

    Parameters
    ----------
    dataset : HPADataset
        Augmenting dataset; images are drawn with :func:`sample_weights`.
    config : TrainConfig
        Steps, batch size, learning rate, threads, workers, seed.
    network : HPANet, optional
        Start from these weights (fine-tuning); a new :class:`HPANet` otherwise.
    progress : callable, optional
        Called as ``progress(step, loss)`` after every step.

    Returns
    -------
    HPANet
        The trained network in eval mode on the CPU.

    Examples
    --------
    >>> import tempfile
    >>> from PIL import Image as PILImage
    >>> folder = Path(tempfile.mkdtemp())
    >>> for c in ("red", "green", "blue", "yellow"):
    ...     PILImage.fromarray(np.full((64, 64), 80, np.uint8)).save(folder / f"s_{c}.png")
    >>> ds = HPADataset(folder, ["s"], np.eye(28, dtype=np.uint8)[:1], crop=32, cell_fraction=0)
    >>> net = train_network(ds, TrainConfig(steps=2, batch_size=2, crop=32, threads=1))
    >>> net.training
    False
    """
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from cytolens.classify.network import HPANet
    from cytolens.models import training

    optim = training.TrainConfig(
        steps=config.steps,
        lr=config.lr,
        weight_decay=config.weight_decay,
        final_lr_fraction=0.02,
        seed=config.seed,
        threads=config.threads,
    )
    torch.set_num_threads(config.threads)
    training.seed_everything(config.seed)
    net = network if network is not None else HPANet()
    weights = torch.as_tensor(sample_weights(dataset.targets), dtype=torch.double)
    pos_weight = None
    if config.balance:  # rare classes weigh more: sqrt of negatives per positive, in [1, 3.2]
        pos = dataset.targets.sum(0)
        ratio = (len(dataset.targets) - pos) / np.maximum(pos, 1)
        pos_weight = torch.as_tensor(np.sqrt(np.clip(ratio, 1, 10)), dtype=torch.float32)

    def batches() -> Any:
        step, epoch = 0, 0
        while True:
            dataset.set_epoch(epoch)
            # weighted draws with replacement, each tagged with its draw number so that repeated
            # draws of an image are different crops (see HPADataset.__getitem__)
            n_draws = min(config.batch_size * (config.steps - step), 1 << 20)
            generator = torch.Generator().manual_seed(config.seed * 7919 + epoch)
            picks = torch.multinomial(weights, n_draws, replacement=True, generator=generator)
            sampler = (picks + len(dataset) * torch.arange(n_draws)).tolist()
            yield from DataLoader(
                dataset,
                batch_size=config.batch_size,
                sampler=sampler,
                num_workers=config.workers,
                drop_last=False,
            )
            step += -(-n_draws // config.batch_size)
            epoch += 1

    def loss(net: Any, batch: Any) -> Any:
        x, y = batch
        return F.binary_cross_entropy_with_logits(net(x), y, pos_weight=pos_weight)

    on_step = None if progress is None else (lambda e: progress(int(e["step"]), e["loss"]))
    training.fit(net, batches(), loss, optim, on_step=on_step, seed=False)
    return net


def predict_probabilities(network: Any, dataset: HPADataset, *, batch_size: int = 8) -> np.ndarray:
    """Whole-image class probabilities ``(n, 28)`` of every sample of a dataset (no augmentation).

    Images of one size are batched; each image is seen whole at the working scale.

    Examples
    --------
    >>> import tempfile
    >>> from PIL import Image as PILImage
    >>> from cytolens.classify.network import HPANet
    >>> folder = Path(tempfile.mkdtemp())
    >>> for c in ("red", "green", "blue", "yellow"):
    ...     PILImage.fromarray(np.full((64, 64), 80, np.uint8)).save(folder / f"s_{c}.png")
    >>> ds = HPADataset(folder, ["s"], np.zeros((1, 28), np.uint8), augment=False)
    >>> predict_probabilities(HPANet().eval(), ds).shape
    (1, 28)
    """
    import torch

    plain = HPADataset(
        dataset.folder,
        dataset.ids,
        dataset.targets,
        scale=dataset.scale,
        augment=False,
        cache=dataset.store if dataset.cache else False,
    )
    out = np.zeros((len(plain), N_CLASSES), np.float32)
    network.eval()
    with torch.inference_mode():
        for start in range(0, len(plain), batch_size):
            idx = list(range(start, min(start + batch_size, len(plain))))
            xs = [plain[i][0] for i in idx]
            if len({tuple(x.shape) for x in xs}) == 1:
                out[idx] = torch.sigmoid(network(torch.stack(xs))).numpy()
            else:
                for i, x in zip(idx, xs, strict=True):
                    out[i] = torch.sigmoid(network(x[None]))[0].numpy()
    return out


def stratified_split(
    targets: np.ndarray, fractions: Sequence[float], *, seed: int = 0
) -> np.ndarray:
    """Assign multi-label samples to parts of given sizes, stratified by class.

    Iterative stratification (Sechidis et al. 2011): the samples of the
    rarest remaining class are placed first, each into the part that most
    lacks that class (then the part most short of samples; ties drawn with
    ``seed``), so every class with at least as many samples as parts reaches
    each part where the sizes allow.

    Parameters
    ----------
    targets : numpy.ndarray
        ``(n, n_classes)`` multi-hot labels.
    fractions : sequence of float
        Relative part sizes (normalized to sum to 1).
    seed : int
        Seed of the tie-breaking.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` part index of each sample.

    Examples
    --------
    >>> y = np.zeros((8, 2), np.uint8)
    >>> y[:4, 0] = 1
    >>> y[4:, 1] = 1
    >>> parts = stratified_split(y, [0.5, 0.5])
    >>> [int(y[parts == k, 0].sum()) for k in (0, 1)]
    [2, 2]
    """
    y = np.asarray(targets, bool)
    f = np.asarray(fractions, float)
    if f.ndim != 1 or len(f) < 2 or np.any(f <= 0):
        raise InputError(f"fractions must be two or more positive numbers, got {fractions!r}")
    f = f / f.sum()
    rng = np.random.default_rng(seed)
    n = len(y)
    want = f * n
    want_label = np.outer(f, y.sum(0))
    part = np.full(n, -1)
    while (part < 0).any():
        free = np.flatnonzero(part < 0)
        counts = y[free].sum(0)
        if counts.sum() == 0:
            for i in rng.permutation(free):
                k = int(np.flatnonzero(want == want.max())[0])
                part[i], want[k] = k, want[k] - 1
            break
        present = np.flatnonzero(counts > 0)
        rarest = present[counts[present] == counts[present].min()]
        label = int(rng.choice(rarest))
        for i in rng.permutation(free[y[free, label]]):
            best = np.flatnonzero(want_label[:, label] == want_label[:, label].max())
            best = best[want[best] == want[best].max()]
            k = int(rng.choice(best))
            part[i] = k
            want[k] -= 1
            want_label[k] -= y[i]
    return part


def fit_thresholds(
    probabilities: np.ndarray, targets: np.ndarray, *, min_support: int = 2
) -> tuple[np.ndarray, float]:
    """The shipped threshold rule: per class max F1; rare classes share one pooled value.

    Parameters
    ----------
    probabilities, targets : numpy.ndarray
        ``(n, n_classes)`` predicted probabilities (out-of-fold or held out)
        and multi-hot truth.
    min_support : int
        Classes with fewer positives get the pooled threshold (the one value
        that maximizes micro F1 over every class).

    Returns
    -------
    thresholds : numpy.ndarray
        ``(n_classes,)``.
    pooled : float
        The shared threshold.

    Examples
    --------
    >>> p = np.array([[0.9, 0.2], [0.8, 0.7], [0.1, 0.1], [0.2, 0.3]])
    >>> y = np.array([[1, 0], [1, 1], [0, 0], [0, 0]])
    >>> t, pooled = fit_thresholds(p, y)
    >>> bool((p[:, 0] >= t[0]).tolist() == [True, True, False, False])
    True
    """
    from cytolens.evaluate import tune_thresholds

    pooled = float(tune_thresholds(probabilities.reshape(-1, 1), targets.reshape(-1, 1))[0])
    thresholds = tune_thresholds(probabilities, targets, default=pooled, min_support=min_support)
    return thresholds, pooled


def score_predictions(
    targets: np.ndarray, probabilities: np.ndarray, thresholds: np.ndarray
) -> dict[str, Any]:
    """Macro / micro F1, exact match and the nucleolar-group F1 of thresholded predictions.

    Parameters
    ----------
    targets : numpy.ndarray
        ``(n, 28)`` multi-hot truth.
    probabilities : numpy.ndarray
        ``(n, 28)`` probabilities.
    thresholds : numpy.ndarray
        ``(28,)``, or ``(n, 28)`` per sample (cross-fitted thresholds).

    Returns
    -------
    dict
        :func:`cytolens.evaluate.classification_scores` plus ``nucleolar_f1``
        (any of classes 2-5 true vs called, the call being
        :func:`~cytolens.classify.model.nucleolar_probability` >= 0.5) and
        ``nucleolar_support``.

    Examples
    --------
    >>> y = np.zeros((2, 28), np.uint8)
    >>> y[0, 2] = 1
    >>> p = np.where(y, 0.9, 0.1)
    >>> s = score_predictions(y, p, np.full(28, 0.5))
    >>> s["macro_f1"], s["nucleolar_f1"]
    (1.0, 1.0)
    """
    from cytolens.classify.hpa import NUCLEOLAR_CLASSES
    from cytolens.classify.model import nucleolar_probability
    from cytolens.evaluate import classification_scores, per_class_f1

    t = np.broadcast_to(np.asarray(thresholds, np.float64), probabilities.shape)
    scores: dict[str, Any] = classification_scores(targets, probabilities >= t)
    truth = np.asarray(targets, bool)[:, list(NUCLEOLAR_CLASSES)].any(axis=1)
    called = nucleolar_probability(probabilities, t) >= 0.5
    scores["nucleolar_f1"] = float(per_class_f1(truth[:, None], called[:, None])["f1"].iloc[0])
    scores["nucleolar_support"] = int(truth.sum())
    return scores
