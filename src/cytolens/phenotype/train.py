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
    "fit_hybrid_head",
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
    weight_decay: float = 5e-4,
    augmentation: dict[str, float] | None = None,
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
    weight_decay : float
        AdamW weight decay.
    augmentation : dict, optional
        Options of :func:`~cytolens.phenotype.augment.augment` (``scale``,
        ``rotate``, ``gain``, ``offset``, ``gamma``, ``blur``, ``noise``);
        default: its defaults (dihedral, zoom 10 %, gain 20 %, offset 0.05).
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
    aug = dict(augmentation or {})

    def batch(step: int) -> Any:
        idx = torch.from_numpy(train_index[rng.choice(len(train_index), n, p=p)])
        return augment(x[idx], gen, **aug), y[idx]

    def loss(network: Any, b: Any) -> Any:
        return F.cross_entropy(network(b[0]), b[1], label_smoothing=label_smoothing)

    cfg = TrainConfig(steps=steps, lr=lr, weight_decay=weight_decay, seed=seed, threads=threads)
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
            "augmentation": aug,
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


def fit_hybrid_head(
    result: PhenotypeTrainResult,
    crop_set: CropSet,
    *,
    C: float = 1.0,
    tta_views: int = 8,
    features: bool = True,
    reads: str = "logits",
    cnn_head: dict[str, Any] | None = None,
    refit: bool = True,
    name: str | None = None,
) -> PhenotypeTrainResult:
    """Replace a trained classifier's head by a calibrated logistic regression on the
    (test-time augmented) CNN logits or embedding and the classical features of each crop.

    The encoder is kept; a multinomial logistic regression (L2, ``C``) is
    fitted on the standardized CNN logits (``reads="logits"``: the trained
    linear head on the embedding averaged over ``tta_views`` dihedral views)
    or that embedding itself (``reads="embedding"``), beside the signed-log
    classical features
    (:func:`cytolens.explore.classical_features`) when ``features``, of the
    training crops of ``result``; the standardization is folded into the
    network's linear head, so the shipped network computes exactly this
    regression. The temperature is fitted on the validation crops (see ``refit``).

    Parameters
    ----------
    result : PhenotypeTrainResult
        From :func:`train_classifier` on ``crop_set``.
    crop_set : CropSet
        The crops it was trained on (``result.train_index`` / ``val_index`` index it).
    C : float
        Inverse L2 strength of the regression.
    tta_views : {1, 8}
        Dihedral views averaged for the embedding.
    features : bool
        Read classical features beside the embedding (False: a re-fitted linear
        head on the embedding only).
    reads : {"logits", "embedding"}
        What of the CNN the regression reads. ``logits`` (16 numbers for 16
        classes) constrains the CNN's part to its trained head: fewer weights
        to fit, less room to learn plate/well appearance.
    cnn_head : dict, optional
        ``{"weight": (K, dim), "bias": (K,)}`` of the CNN's trained head, for
        ``reads="logits"`` when ``result``'s network is already hybrid
        (default: its head).
    refit : bool
        After the temperature and the validation scores are taken from a fit on
        the training crops, refit the regression (same ``C``) on the training +
        validation crops: the CNN never trained on the validation crops, so the
        regression also learns how far to trust its output on unseen cells.
    name : str, optional
        The model's name (default: the card's).

    Returns
    -------
    PhenotypeTrainResult
        The hybrid classifier, its weights and validation scores.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.integers(0, 60, (40, 1, 16, 16)).astype(np.uint8)
    >>> y = np.repeat([0, 1], 20); x[y == 1, :, 4:12, 4:12] += 150
    >>> cs = CropSet(x, y, ["dim", "bright"], [f"{i}.png" for i in range(40)])
    >>> res = train_classifier(cs, steps=5, input_size=16, batch_size=16, threads=1)
    >>> hyb = fit_hybrid_head(res, cs)
    >>> hyb.validation["accuracy"], len(hyb.classifier.feature_names) > 30
    (1.0, True)
    """
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from cytolens.evaluate.calibration import fit_temperature
    from cytolens.phenotype.evaluation import classification_report
    from cytolens.phenotype.model import PhenotypeClassifier
    from cytolens.phenotype.network import PhenotypeNet

    if tta_views not in (1, 8):
        raise InputError(f"tta_views {tta_views}: expected 1 or 8")
    if reads not in ("logits", "embedding"):
        raise InputError(f"reads {reads!r}: expected 'logits' or 'embedding'")
    old = result.classifier
    if cnn_head is None:
        if old.network.n_features:
            raise InputError("this network's head is already hybrid: pass the CNN's cnn_head")
        cnn_head = {k: v.detach().clone() for k, v in old.network.head.state_dict().items()}
    wc = np.asarray(cnn_head["weight"], np.float64)
    bc = np.asarray(cnn_head["bias"], np.float64)
    card = old.card
    params = dict(card.parameters) | {"tta_views": tta_views}
    params.pop("features", None)
    plain = PhenotypeClassifier.from_card(
        old.network, card.model_copy(update={"parameters": params}), device="cpu"
    )
    emb = plain.embed(crop_set.crops)
    names: list[str] = []
    x = emb.astype(np.float64)
    if reads == "logits":
        x = x @ wc.T + bc
    if features:
        from cytolens.explore.features import classical_features

        table = classical_features(crop_set.crops)
        names = list(table.columns)
        f = torch.from_numpy(table.to_numpy(np.float32).copy())
        x = np.hstack([x, PhenotypeNet.feature_transform(f).numpy().astype(np.float64)])
    tr, va = result.train_index, result.val_index
    y = crop_set.labels
    k = len(crop_set.class_names)

    def regression(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Weights ``(K, d)`` and bias of the regression fitted on ``idx``, on raw ``x``."""
        scaler = StandardScaler().fit(x[idx])
        lr = LogisticRegression(C=C, max_iter=5000).fit(scaler.transform(x[idx]), y[idx])
        coef, intercept = lr.coef_, lr.intercept_
        if len(lr.classes_) == 2:  # one row: the logit of the second class against the first
            coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.r_[0.0, intercept]
        w = np.zeros((k, x.shape[1]))
        b = np.full(k, -30.0)  # classes absent from the training crops: never predicted
        w[lr.classes_] = coef / scaler.scale_
        b[lr.classes_] = intercept - (coef * scaler.mean_ / scaler.scale_).sum(axis=1)
        return w, b

    w, b = regression(tr)
    raw = x[va] @ w.T + b
    pv = np.exp(raw - raw.max(axis=1, keepdims=True))
    temperature = fit_temperature(pv / pv.sum(axis=1, keepdims=True), y[va])
    if refit:
        w, b = regression(np.concatenate([tr, va]))
    if reads == "logits":  # fold the CNN's head in: one linear head on [embedding, features]
        n_cnn = len(bc)
        b = b + w[:, :n_cnn] @ bc
        w = np.hstack([w[:, :n_cnn] @ wc, w[:, n_cnn:]])
    net = PhenotypeNet(crop_set.crops.shape[1], k, WIDTHS, n_features=len(names))
    net.encoder.load_state_dict(old.network.encoder.state_dict())
    with torch.no_grad():
        net.head.weight.copy_(torch.from_numpy(w))
        net.head.bias.copy_(torch.from_numpy(b))
    net.eval()
    training = dict(result.record) | {
        "head": {
            "kind": f"logistic regression (L2, multinomial) on the standardized CNN {reads}"
            + (" + signed-log classical features" if names else "")
            + " (folded into one linear head on the embedding + features)",
            "reads": reads,
            "C": C,
            "tta_views": tta_views,
            "n_features": len(names),
            "fitted_on": (
                "training + validation crops (refit after the temperature and the validation "
                "scores were taken from a fit on the training crops alone)"
                if refit
                else "training crops (validation crops: temperature only)"
            ),
        }
    }
    new_card = make_phenotype_card(
        name=name or card.name,
        class_names=list(crop_set.class_names),
        crop_size=int(params["crop_size"]),
        input_size=int(params["input_size"]),
        in_channels=int(params["in_channels"]),
        temperature=temperature,
        normalization=old.normalization,
        training=training,
        features=names,
        tta_views=tta_views,
    )
    clf = PhenotypeClassifier(net, new_card, device="cpu")
    scores = classification_report(y[va], clf.probabilities(raw), crop_set.class_names)
    validation = {
        k_: scores[k_] for k_ in ("accuracy", "weighted_f1", "macro_f1", "balanced_accuracy", "ece")
    } | {"temperature": temperature}
    return PhenotypeTrainResult(clf, net.state_dict(), tr, va, validation, new_card.training)


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
    features: list[str] | None = None,
    tta_views: int = 1,
) -> Any:
    """The model card of a phenotype classifier (:func:`cytolens.models.make_card`).

    ``features``: the classical features a hybrid head reads beside the
    embedding; ``tta_views``: dihedral views averaged at prediction.
    """
    from cytolens.models import make_card

    features = list(features or [])
    kwargs = {"in_channels": in_channels, "n_classes": len(class_names), "widths": list(WIDTHS)}
    head = "linear head"
    if features:
        kwargs["n_features"] = len(features)
        head = f"linear head on the embedding + {len(features)} classical features (hybrid)"
    parameters = {
        "class_names": list(class_names),
        "crop_size": crop_size,
        "input_size": input_size,
        "in_channels": in_channels,
        "temperature": round(float(temperature), 6),
    }
    if features:
        parameters["features"] = features
    if tta_views != 1:
        parameters["tta_views"] = tta_views
    return make_card(
        name=name,
        task=f"cell phenotype classification ({len(class_names)} classes, single-label)",
        architecture=(
            f"PhenotypeNet (cytolens.phenotype.network): 7 conv-BN-ReLU, widths {list(WIDTHS)}, "
            f"mean+max global pooling, dropout, {head}"
            + (f"; embedding averaged over {tta_views} dihedral views" if tta_views != 1 else "")
        ),
        input_axes="CYX",
        network={"entry_point": "cytolens.phenotype.network:PhenotypeNet", "kwargs": kwargs},
        parameters=parameters,
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
