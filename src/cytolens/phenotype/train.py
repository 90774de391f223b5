"""Training cell phenotype classifiers: fixed splits, class-balanced sampling, augmentation,
self-supervised encoder pretraining (SimCLR), fine-tuning, temperature calibration, the card.

All optimization goes through the one training core, :func:`cytolens.models.training.fit`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cytolens.core.errors import InputError
from cytolens.phenotype.crops import CropSet

__all__ = [
    "PhenotypeTrainResult",
    "grouped_split",
    "pretrain_encoder",
    "sampling_weights",
    "save_classifier",
    "stratified_split",
    "train_classifier",
]

logger = logging.getLogger(__name__)

#: Encoder widths of the phenotype network.
WIDTHS = (16, 32, 64, 96)


def stratified_split(
    labels: Any, fraction: float = 0.2, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, held_out)``: ``fraction`` of each class held out (at least one).

    Examples
    --------
    >>> tr, te = stratified_split([0] * 10 + [1] * 5, 0.2)
    >>> len(tr), len(te), sorted(np.bincount(np.array([0] * 10 + [1] * 5)[te]).tolist())
    (12, 3, [1, 2])
    """
    y = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held: list[int] = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if len(idx) < 2:
            raise InputError(f"class {c!r} has {len(idx)} sample(s); a split needs >= 2")
        k = min(len(idx) - 1, max(1, round(fraction * len(idx))))
        held += rng.permutation(idx)[:k].tolist()
    test = np.sort(np.array(held, dtype=np.int64))
    return np.setdiff1d(np.arange(len(y)), test), test


def grouped_split(
    labels: Any, groups: Any, fraction: float = 0.2, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, held_out)`` with no group (plate/well) on both sides.

    Groups are held out in a random order until about ``fraction`` of each
    class is held out (a group is taken when it brings a class still short of
    its share), so rare classes appear on both sides where their groups allow.

    Examples
    --------
    >>> y = [0, 0, 0, 0, 1, 1, 1, 1]; g = ["a", "a", "b", "c", "d", "d", "e", "f"]
    >>> tr, te = grouped_split(y, g, 0.25)
    >>> set(np.array(g)[tr]).isdisjoint(np.array(g)[te])
    True
    """
    y = np.asarray(labels)
    g = np.asarray(groups)
    rng = np.random.default_rng(seed)
    names = rng.permutation(np.unique(g))
    want = {c: fraction * (y == c).sum() for c in np.unique(y)}
    have = dict.fromkeys(want, 0)
    held = np.zeros(len(y), bool)
    for name in names:
        members = g == name
        classes, counts = np.unique(y[members], return_counts=True)
        fits = all(
            have[c] + n <= max(want[c] * 1.3, 1) for c, n in zip(classes, counts, strict=True)
        )
        if fits and any(have[c] < want[c] for c in classes):
            held |= members
            for c, n in zip(classes, counts, strict=True):
                have[c] += n
    return np.flatnonzero(~held), np.flatnonzero(held)


def sampling_weights(labels: Any, power: float = 0.5) -> np.ndarray:
    """Per-sample drawing probabilities ``count(class) ** -power`` (normalized).

    ``power`` 1 draws every class equally often, 0 draws as in the data;
    0.5 (the default) is in between: rare classes are seen more often
    without overfitting their few crops.

    Examples
    --------
    >>> sampling_weights([0, 0, 0, 1], power=1.0).round(3).tolist()
    [0.167, 0.167, 0.167, 0.5]
    """
    y = np.asarray(labels)
    counts = np.bincount(y)
    w = counts[y].astype(np.float64) ** -float(power)
    return w / w.sum()


@dataclass
class PhenotypeTrainResult:
    """A trained classifier and what training did.

    Attributes
    ----------
    classifier : PhenotypeClassifier
        The calibrated classifier (card in memory; :func:`save_classifier` writes it).
    state_dict : dict
        The network's weights.
    train_index, val_index : numpy.ndarray
        The fixed split of the crop set.
    validation : dict
        Scores on the validation crops (accuracy, weighted/macro F1, ECE).
    record : dict
        The training core's record (settings, time, final loss).
    """

    classifier: Any
    state_dict: dict[str, Any]
    train_index: np.ndarray
    val_index: np.ndarray
    validation: dict[str, float] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)


def _tensor(x: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(x, np.float32))


def _prepared(crops: np.ndarray, normalization: Any, input_size: int) -> np.ndarray:
    from cytolens.phenotype.model import normalize_crops, resize_crops

    return resize_crops(normalize_crops(crops, normalization), input_size)


def _normalization(kind: str) -> Any:
    from cytolens.models.schema import DtypeRangeNormalization, PercentileNormalization

    if kind == "dtype_range":
        return DtypeRangeNormalization(description="per batch: uint8 / 255, uint16 / 65535")
    if kind == "percentile":
        return PercentileNormalization(
            pmin=1, pmax=99.8, per_channel=True, description="per crop and channel"
        )
    raise InputError(f"normalization {kind!r}: expected 'dtype_range' or 'percentile'")


def pretrain_encoder(
    crops: Any,
    *,
    normalization: str = "dtype_range",
    input_size: int = 32,
    steps: int = 300,
    batch_size: int = 96,
    lr: float = 2e-3,
    tau: float = 0.2,
    seed: int = 0,
    threads: int = 2,
    progress: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Self-supervised (SimCLR) pretraining of the crop encoder on unlabeled crops.

    Two augmented views of each crop (flips, rotations, zoom, intensity,
    noise) are pulled together and pushed away from the other crops of the
    batch (NT-Xent loss, temperature ``tau``); no label is used.

    Parameters
    ----------
    crops : array_like
        ``(N, C, S, S)`` crops in the dtype read.
    normalization : {"dtype_range", "percentile"}
        How crops are scaled (the classifier fine-tuned from it must use the same).
    input_size : int
        Side the crops are resized to.
    steps, batch_size, lr, tau, seed, threads
        Optimization settings (see :class:`cytolens.models.training.TrainConfig`).
    progress : bool
        Show a progress bar.

    Returns
    -------
    encoder_state : dict
        Weights of :class:`~cytolens.phenotype.network.CropEncoder`.
    record : dict
        The training record (settings, time, final loss).

    Examples
    --------
    >>> x = np.random.default_rng(0).integers(0, 255, (16, 1, 16, 16)).astype(np.uint8)
    >>> state, rec = pretrain_encoder(x, input_size=16, steps=2, batch_size=8, threads=1)
    >>> rec["steps"], "features.0.0.weight" in state
    (2, True)
    """
    import torch
    import torch.nn.functional as F

    from cytolens.models.training import TrainConfig, fit, seed_everything
    from cytolens.phenotype.augment import augment
    from cytolens.phenotype.model import as_crops
    from cytolens.phenotype.network import CropEncoder, ProjectionHead

    a = as_crops(crops, np.asarray(crops).shape[1] if np.asarray(crops).ndim == 4 else 1)
    x = _tensor(_prepared(a, _normalization(normalization), input_size))
    rng = seed_everything(seed)
    encoder = CropEncoder(x.shape[1], WIDTHS)
    net = torch.nn.Sequential(encoder, ProjectionHead(encoder.dim))
    gen = torch.Generator().manual_seed(seed)
    n = min(batch_size, len(x))

    def batch(step: int) -> Any:
        xb = x[torch.from_numpy(rng.choice(len(x), n, replace=False))]
        return torch.cat([augment(xb, gen, noise=0.03), augment(xb, gen, noise=0.03)])

    def loss(network: Any, b: Any) -> Any:
        z = F.normalize(network(b), dim=1)
        sim = z @ z.T / tau
        sim.fill_diagonal_(float("-inf"))
        target = torch.arange(len(z)).roll(len(z) // 2)
        return F.cross_entropy(sim, target)

    cfg = TrainConfig(steps=steps, lr=lr, weight_decay=1e-4, seed=seed, threads=threads)
    result = fit(net, batch, loss, cfg, progress=progress, seed=False)
    record = result.record() | {"batch_size": n, "tau": tau, "method": "SimCLR (NT-Xent)"}
    return encoder.state_dict(), record


def train_classifier(
    crop_set: CropSet | str | os.PathLike[str],
    *,
    val_index: Any = None,
    val_fraction: float = 0.15,
    encoder: dict[str, Any] | None = None,
    normalization: str = "dtype_range",
    input_size: int = 32,
    steps: int = 1500,
    batch_size: int = 64,
    lr: float = 3e-3,
    balance: float = 0.5,
    label_smoothing: float = 0.05,
    seed: int = 0,
    threads: int = 2,
    name: str = "phenotype-model",
    progress: bool = False,
    device: str = "cpu",
) -> PhenotypeTrainResult:
    """Train a compact CNN on labelled cell crops (any classes, size and channels).

    Parameters
    ----------
    crop_set : CropSet or path-like
        Labelled crops, or a folder of class folders / ``file,label`` CSV
        (:func:`~cytolens.phenotype.crops.read_crop_set`).
    val_index : array_like of int, optional
        The validation crops (used for calibration and scores, never for
        the weights). Default: the fixed :func:`stratified_split` of
        ``val_fraction`` with ``seed``.
    val_fraction : float
        Share of each class held out for validation when ``val_index`` is None.
    encoder : dict, optional
        Pretrained encoder weights (:func:`pretrain_encoder`, or the
        ``encoder.*`` weights of a trained model): transfer learning.
    normalization : {"dtype_range", "percentile"}
        How crops are scaled (recorded in the card).
    input_size : int
        Side the crops are resized to for the network.
    steps, batch_size, lr, seed, threads
        Optimization (one training core, AdamW + warm-up/cosine).
    balance : float
        Class-balanced sampling: crops drawn with probability
        ``count(class) ** -balance`` (:func:`sampling_weights`).
    label_smoothing : float
        Of the cross-entropy loss.
    name : str
        The model's name in its card.
    progress : bool
        Show a progress bar.
    device : str
        Where to train.

    Returns
    -------
    PhenotypeTrainResult

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.integers(0, 60, (40, 1, 16, 16)).astype(np.uint8)
    >>> y = np.repeat([0, 1], 20); x[y == 1, :, 4:12, 4:12] += 150
    >>> cs = CropSet(x, y, ["dim", "bright"], [f"{i}.png" for i in range(40)])
    >>> res = train_classifier(cs, steps=40, input_size=16, batch_size=16, threads=1, lr=1e-2)
    >>> res.validation["accuracy"] > 0.8
    True
    """
    import torch
    import torch.nn.functional as F

    from cytolens.evaluate.calibration import expected_calibration_error, fit_temperature
    from cytolens.models.training import TrainConfig, fit, seed_everything
    from cytolens.phenotype.augment import augment
    from cytolens.phenotype.crops import read_crop_set
    from cytolens.phenotype.model import PhenotypeClassifier
    from cytolens.phenotype.network import PhenotypeNet

    cs = crop_set if isinstance(crop_set, CropSet) else read_crop_set(crop_set)
    if val_index is None:
        train_index, val_index = stratified_split(cs.labels, val_fraction, seed=seed)
    else:
        val_index = np.asarray(val_index, dtype=np.int64)
        train_index = np.setdiff1d(np.arange(len(cs)), val_index)
    if len(train_index) == 0 or len(val_index) == 0:
        raise InputError("the split leaves no training or no validation crops")
    norm = _normalization(normalization)
    x = _tensor(_prepared(cs.crops, norm, input_size))
    y = torch.from_numpy(cs.labels.astype(np.int64))
    rng = seed_everything(seed)
    net = PhenotypeNet(cs.crops.shape[1], len(cs.class_names), WIDTHS)
    if encoder is not None:
        try:
            net.encoder.load_state_dict(encoder)
        except RuntimeError as exc:
            raise InputError(f"the pretrained encoder does not fit this network: {exc}") from None
    gen = torch.Generator().manual_seed(seed)
    p = sampling_weights(cs.labels[train_index], balance)
    n = min(batch_size, len(train_index))

    def batch(step: int) -> Any:
        idx = torch.from_numpy(train_index[rng.choice(len(train_index), n, p=p)])
        return augment(x[idx], gen), y[idx]

    def loss(network: Any, b: Any) -> Any:
        return F.cross_entropy(network(b[0]), b[1], label_smoothing=label_smoothing)

    cfg = TrainConfig(steps=steps, lr=lr, weight_decay=5e-4, seed=seed, threads=threads)
    result = fit(net, batch, loss, cfg, progress=progress, seed=False, device=device)
    net = net.cpu().eval()
    with torch.inference_mode():
        logits = torch.cat([net(x[val_index][i : i + 256]) for i in range(0, len(val_index), 256)])
    raw = torch.softmax(logits, 1).numpy()
    yv = cs.labels[val_index]
    temperature = fit_temperature(raw, yv)
    card = make_phenotype_card(
        name=name,
        class_names=cs.class_names,
        crop_size=int(cs.crops.shape[-1]),
        input_size=input_size,
        in_channels=int(cs.crops.shape[1]),
        temperature=temperature,
        normalization=norm,
        training=result.record()
        | {
            "batch_size": n,
            "balance_power": balance,
            "label_smoothing": label_smoothing,
            "pretrained_encoder": encoder is not None,
            "n_train": len(train_index),
            "n_validation": len(val_index),
        },
    )
    clf = PhenotypeClassifier(net, card, device="cpu")
    probs = clf.probabilities(logits.numpy())
    from cytolens.phenotype.evaluation import classification_report

    scores = classification_report(yv, probs, cs.class_names)
    validation = {
        k: scores[k] for k in ("accuracy", "weighted_f1", "macro_f1", "balanced_accuracy")
    }
    validation["ece"] = scores["ece"]
    validation["ece_uncalibrated"] = expected_calibration_error(raw, yv)
    validation["temperature"] = temperature
    return PhenotypeTrainResult(
        clf, net.state_dict(), train_index, val_index, validation, card.training
    )


def make_phenotype_card(
    *,
    name: str,
    class_names: list[str],
    crop_size: int,
    input_size: int,
    in_channels: int,
    temperature: float,
    normalization: Any,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    training_data: list[str] | None = None,
    training_command: str = "cytolens classify train-cells",
    description: str = "",
) -> Any:
    """The model card of a phenotype classifier (:func:`cytolens.models.make_card`)."""
    from cytolens.models import make_card

    return make_card(
        name=name,
        task=f"cell phenotype classification ({len(class_names)} classes, single-label)",
        architecture=(
            f"PhenotypeNet (cytolens.phenotype.network): 7 conv-BN-ReLU, widths {list(WIDTHS)}, "
            "mean+max global pooling, dropout, linear head"
        ),
        input_axes="CYX",
        network={
            "entry_point": "cytolens.phenotype.network:PhenotypeNet",
            "kwargs": {
                "in_channels": in_channels,
                "n_classes": len(class_names),
                "widths": list(WIDTHS),
            },
        },
        parameters={
            "class_names": list(class_names),
            "crop_size": crop_size,
            "input_size": input_size,
            "in_channels": in_channels,
            "temperature": round(float(temperature), 6),
        },
        normalization=normalization,
        training_data=training_data or ["user crops"],
        training_command=training_command,
        training=training,
        metrics=metrics,
        description=description,
    )


def save_classifier(
    result: PhenotypeTrainResult,
    crop_set: CropSet,
    *,
    root: str | os.PathLike[str] | None = None,
    folder: str | os.PathLike[str] | None = None,
    card_updates: dict[str, Any] | None = None,
    tables: dict[str, Any] | None = None,
) -> Path:
    """Write the model (weights, card) and its applicability reference.

    The reference is fitted on the embeddings of the training crops and
    calibrated on the validation crops (:class:`~cytolens.models.applicability.DomainReference`).

    Returns
    -------
    pathlib.Path
        The model folder.
    """
    import shutil
    import tempfile

    from cytolens.models import save_model
    from cytolens.models.applicability import APPLICABILITY_FILE, DomainReference

    clf = result.classifier
    emb = clf.embed(crop_set.crops)
    ref = DomainReference.fit(emb[result.train_index], emb[result.val_index])
    with tempfile.TemporaryDirectory() as tmp:
        ref_path = ref.save(Path(tmp) / APPLICABILITY_FILE)
        entry = ref.card_entry(ref_path, "PhenotypeNet encoder embedding (mean+max pooled)")
        card = clf.card.model_copy(update={"applicability": entry, **(card_updates or {})})
        out = save_model(result.state_dict, card, root=root, folder=folder, tables=tables)
        shutil.copyfile(ref_path, out / APPLICABILITY_FILE)
    return out
