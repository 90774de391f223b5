"""Train a label-free model on a user's own pairs: transmitted-light stacks + fluorescence.

Each training pair is one field: a stack ``(Z, Y, X)`` of transmitted-light
planes and its targets ``(T, Y, X)``, fluorescence images of the same field
(any number of targets, the same in every pair). The validation split is
*spatial*: in each field a block (by default the bottom-right square holding
``val_fraction`` of the field) plus a ``margin`` around it are never read by
training; the validation figures (Pearson r per target) are measured there.

Data are read crop by crop (``stack[:, y:y+c, x:x+c]``), so NumPy memmaps,
Dask or Zarr arrays stream from disk. Normalization: the stack by its own
percentiles (1, 99.8, one pair of values for the whole stack, as at
prediction); each target by its percentiles (1, 99.8) on the training pixels,
so predictions come out in those units (0: background, 1: bright stain).

The network (:class:`~cytolens.label_free.network.LabelFreeNet`) predicts a
Gaussian per pixel and target: its mean is trained with the squared error,
its standard deviation with the Gaussian negative log-likelihood of the
target given the (detached) mean, weighted by ``sigma_weight``. Training
runs in :func:`cytolens.models.training.fit` (AdamW, warm-up + cosine,
seeding, threads, progress, checkpoints).

Augmentation: random crops, intensity gain and offset of the input, Gaussian
noise; flips and 90-degree rotations only with ``flips=True``, because the
relief shading of phase-contrast and DIC images has a direction that
flipping reverses (on the in silico labeling sample, a 1000-step pilot with
flips scored r 0.58 / 0.67 / 0.53 for DAPI / MAP2 / NFH on a tuning block,
without 0.72 / 0.82 / 0.60).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cytolens.core.errors import InputError
from cytolens.core.normalize import sample_percentiles

__all__ = ["Block", "TrainingPair", "train_label_free"]

logger = logging.getLogger(__name__)

#: ``(y0, y1, x0, x1)``, half-open.
Block = tuple[int, int, int, int]

#: Percentiles of the input (whole stack) and target normalization.
PMIN, PMAX = 1.0, 99.8


@dataclass
class TrainingPair:
    """One field: a transmitted-light stack, its fluorescence targets and held-out blocks.

    Parameters
    ----------
    stack : array-like, shape (Z, Y, X)
        Transmitted-light planes (numpy, memmap, Dask or Zarr: read crop by crop).
    targets : array-like, shape (T, Y, X)
        Fluorescence images of the same field.
    heldout : list of (y0, y1, x0, x1)
        Validation blocks, never read by training (with ``margin`` around them).
    name : str
        For messages.
    """

    stack: Any
    targets: Any
    heldout: list[Block] = field(default_factory=list)
    name: str = "pair 0"

    def __post_init__(self) -> None:
        s, t = tuple(self.stack.shape), tuple(self.targets.shape)
        if len(s) != 3:
            raise InputError(
                f"{self.name}: the transmitted-light input must be a stack (Z, Y, X), got shape {s}"
            )
        if len(t) == 2:
            self.targets = self.targets[None]
            t = (1, *t)
        if len(t) != 3:
            raise InputError(f"{self.name}: targets must be (T, Y, X) or (Y, X), got shape {t}")
        if s[1:] != t[1:]:
            raise InputError(
                f"{self.name}: the stack is {s[1]}x{s[2]} px but the targets are "
                f"{t[1]}x{t[2]} px; inputs and targets must show the same field"
            )
        for b in self.heldout:
            y0, y1, x0, x1 = b
            if not (0 <= y0 < y1 <= s[1] and 0 <= x0 < x1 <= s[2]):
                raise InputError(f"{self.name}: held-out block {b} lies outside the {s[1:]} field")


def default_block(shape: Sequence[int], val_fraction: float) -> Block:
    """The bottom-right square holding ``val_fraction`` of a ``(Y, X)`` field.

    Examples
    --------
    >>> default_block((1000, 800), 0.16)
    (642, 1000, 442, 800)
    """
    if not 0 < val_fraction < 0.5:
        raise InputError(f"val_fraction must be in (0, 0.5), got {val_fraction}")
    h, w = int(shape[0]), int(shape[1])
    side = max(1, round(math.sqrt(val_fraction * h * w)))
    side = min(side, h, w)
    return (h - side, h, w - side, w)


def allowed_corners(shape: Sequence[int], blocks: Sequence[Block], crop: int, margin: int) -> Any:
    """Boolean map of crop corners whose ``crop`` window avoids every block and its margin.

    Examples
    --------
    >>> ok = allowed_corners((10, 10), [(0, 2, 0, 2)], crop=4, margin=1)
    >>> ok.shape, bool(ok[0, 0]), bool(ok[3, 0])
    ((7, 7), False, True)
    """
    h, w = int(shape[0]), int(shape[1])
    if crop > h or crop > w:
        raise InputError(f"the field is {h}x{w} px, smaller than the {crop} px training crops")
    banned = np.zeros((h, w), bool)
    for y0, y1, x0, x1 in blocks:
        banned[max(0, y0 - margin) : y1 + margin, max(0, x0 - margin) : x1 + margin] = True
    integral = np.pad(banned.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    c = crop
    inside = integral[c:, c:] - integral[:-c, c:] - integral[c:, :-c] + integral[:-c, :-c]
    return inside == 0


class _Field:
    """A pair prepared for training: normalization constants and allowed crop corners."""

    def __init__(self, pair: TrainingPair, crop: int, margin: int) -> None:
        self.pair = pair
        self.lo, self.hi = sample_percentiles(pair.stack, PMIN, PMAX)
        corners = allowed_corners(pair.stack.shape[1:], pair.heldout, crop, margin)
        self.corners = np.flatnonzero(corners)
        self.width = corners.shape[1]
        if not self.corners.size:
            raise InputError(f"{pair.name}: no {crop} px crop fits outside the held-out blocks")
        self.target_lo, self.target_hi = self._target_limits(pair, corners, crop)

    @staticmethod
    def _target_limits(pair: TrainingPair, corners: Any, crop: int) -> tuple[Any, Any]:
        """Per-target percentiles on training pixels (a strided sample)."""
        h, w = pair.targets.shape[1:]
        step = max(1, int(math.sqrt(h * w / 2e6)))
        train = np.zeros((h, w), bool)  # pixels covered by some allowed crop
        ys, xs = np.nonzero(corners)
        cover = np.zeros((h + 1, w + 1), np.int32)
        np.add.at(cover, (ys, xs), 1)
        np.add.at(cover, (ys + crop, xs), -1)
        np.add.at(cover, (ys, xs + crop), -1)
        np.add.at(cover, (ys + crop, xs + crop), 1)
        train = cover.cumsum(0).cumsum(1)[:h, :w] > 0
        lo, hi = [], []
        for t in range(pair.targets.shape[0]):
            plane = np.asarray(pair.targets[t][::step, ::step], np.float32)
            values = plane[train[::step, ::step]]
            a, b = np.percentile(values, (PMIN, PMAX))
            lo.append(float(a))
            hi.append(float(max(b, a + 1e-6)))
        return np.array(lo, np.float32), np.array(hi, np.float32)

    def crop(self, index: int, c: int) -> tuple[np.ndarray, np.ndarray]:
        corner = int(self.corners[index])
        y, x = divmod(corner, self.width)
        p = self.pair
        x_in = np.asarray(p.stack[:, y : y + c, x : x + c], np.float32)
        y_out = np.asarray(p.targets[:, y : y + c, x : x + c], np.float32)
        x_in = (x_in - self.lo) / (self.hi - self.lo + 1e-20)
        y_out = (y_out - self.target_lo[:, None, None]) / (self.target_hi - self.target_lo)[
            :, None, None
        ]
        return x_in, y_out


def _sampler(
    fields: list[_Field], crop: int, batch_size: int, flips: bool, seed: int
) -> Callable[[int], Any]:
    import torch

    sizes = np.array([f.corners.size for f in fields], float)
    weights = sizes / sizes.sum()

    def batch(step: int) -> tuple[Any, Any]:
        rng = np.random.default_rng((seed, step))
        xs, ys = [], []
        for _ in range(batch_size):
            f = fields[int(rng.choice(len(fields), p=weights))]
            x, y = f.crop(int(rng.integers(f.corners.size)), crop)
            x = x * rng.uniform(0.8, 1.25) + rng.uniform(-0.1, 0.1)
            x = x + rng.normal(0, rng.uniform(0, 0.02), x.shape)
            if flips:
                k = int(rng.integers(4))
                x, y = np.rot90(x, k, (1, 2)), np.rot90(y, k, (1, 2))
                if rng.random() < 0.5:
                    x, y = x[:, :, ::-1], y[:, :, ::-1]
            xs.append(np.ascontiguousarray(x, np.float32))
            ys.append(np.ascontiguousarray(y, np.float32))
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))

    return batch


def gaussian_loss(output: Any, target: Any, sigma_weight: float = 0.1) -> Any:
    """Squared error of the means + weighted Gaussian NLL of the target given the detached mean.

    Examples
    --------
    >>> import torch
    >>> out = torch.zeros(1, 2, 4, 4)
    >>> round(float(gaussian_loss(out, torch.zeros(1, 1, 4, 4))), 4)
    0.0
    """
    t = target.shape[1]
    mean, log_sigma = output[:, :t], output[:, t:].clamp(-7.0, 3.0)
    mse = ((mean - target) ** 2).mean()
    z = (target - mean.detach()) * (-log_sigma).exp()
    nll = (0.5 * z**2 + log_sigma).mean()
    return mse + sigma_weight * nll


def pearson(a: Any, b: Any) -> float:
    """Pearson correlation of two arrays (flattened).

    Examples
    --------
    >>> pearson(np.arange(5.0), 2 * np.arange(5.0) + 1)
    1.0
    """
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    den = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return round(float((a * b).sum() / den), 6) if den > 0 else 0.0


def train_label_free(
    pairs: Sequence[TrainingPair],
    *,
    target_names: Sequence[str],
    name: str = "label-free",
    version: str = "1.0.0",
    out: str | os.PathLike[str] | None = None,
    crop: int = 96,
    batch_size: int = 8,
    margin: int = 32,
    channels: Sequence[int] = (8, 16, 32, 64),
    downsample: int = 1,
    flips: bool = False,
    sigma_weight: float = 0.1,
    config: Any = None,
    device: Any = "cpu",
    progress: Any = False,
    validate_every: int = 0,
    checkpoint: str | os.PathLike[str] | None = None,
    training_data: Sequence[str] = ("user data",),
    training_command: str = "cytolens.label_free.train_label_free",
    extra_training: dict[str, Any] | None = None,
) -> Any:
    """Train a label-free model; return its predictor (card, applicability reference, metrics).

    Parameters
    ----------
    pairs : sequence of TrainingPair
        The fields; each needs at least one held-out block (see
        :func:`default_block`), used for validation and applicability.
    target_names : sequence of str
        One name per target channel (``"dapi"``...).
    name : str
        Model-card name.
    version : str
        Model-card version.
    out : path-like, optional
        Write the model folder here (weights, card, ``applicability.npz``).
    crop, batch_size : int
        Training crop side (px, a multiple of the network's divisor) and crops per step.
    margin : int
        Pixels around each held-out block that training never reads.
    channels : sequence of int
        Network features per level.
    downsample : int
        Run the network at ``1 / downsample`` resolution inside (see
        :class:`~cytolens.label_free.network.LabelFreeNet`); input and output stay
        at full resolution.
    flips : bool
        Random flips and 90-degree rotations (off by default: see module notes).
    sigma_weight : float
        Weight of the uncertainty (Gaussian NLL) term.
    config : cytolens.models.training.TrainConfig, optional
        Steps, learning rate, seed, threads (default: 600 steps, lr 3e-3).
    device : str
        Where to train.
    progress : bool or callable
        Progress bar or callback (see :func:`~cytolens.models.training.fit`).
    validate_every : int
        Steps between validations on the held-out blocks (0: at the end only).
    checkpoint : path-like, optional
        Resumable checkpoint file.
    training_data, training_command : str
        For the card.
    extra_training : dict, optional
        More entries for the card's ``training`` section.

    Returns
    -------
    LabelFreeModel
        The trained predictor (``.card``, ``.folder`` when ``out`` was given).

    Raises
    ------
    InputError
        No pairs, pairs with different numbers of planes or targets, a
        ``target_names`` of the wrong length, a crop not a multiple of the
        network's divisor, or no room for crops outside the held-out blocks.
    """

    from cytolens.label_free.model import LabelFreeModel, heldout_metrics, reference_features
    from cytolens.label_free.network import LabelFreeNet
    from cytolens.models import make_card, save_model
    from cytolens.models.applicability import APPLICABILITY_FILE, DomainReference
    from cytolens.models.training import TrainConfig, fit

    pairs = list(pairs)
    if not pairs:
        raise InputError("no training pairs given")
    n_planes = int(pairs[0].stack.shape[0])
    n_targets = int(pairs[0].targets.shape[0])
    for p in pairs:
        if p.stack.shape[0] != n_planes or p.targets.shape[0] != n_targets:
            raise InputError(
                f"{p.name}: {p.stack.shape[0]} planes and {p.targets.shape[0]} targets, but "
                f"{pairs[0].name} has {n_planes} planes and {n_targets} targets; "
                "every pair must have the same"
            )
        if not p.heldout:
            raise InputError(f"{p.name}: no held-out block (see default_block)")
    if len(target_names) != n_targets:
        raise InputError(f"{len(target_names)} target names for {n_targets} targets")
    if downsample < 1:
        raise InputError(f"downsample must be at least 1, got {downsample}")
    divisor = downsample * 2 ** (len(channels) - 1)
    if crop % divisor:
        raise InputError(f"crop must be a multiple of {divisor}, got {crop}")
    config = config or TrainConfig(steps=600, lr=3e-3, threads=2)
    fields = [_Field(p, crop, margin) for p in pairs]
    kwargs = {
        "in_channels": n_planes,
        "n_targets": n_targets,
        "channels": list(channels),
        "downsample": downsample,
    }
    net = LabelFreeNet(n_planes, n_targets, tuple(channels), downsample)
    overlap = 32 if divisor <= 8 else 4 * divisor
    params = {
        "targets": list(target_names),
        "n_planes": n_planes,
        "tile_overlap": overlap,
        # At half resolution the bottleneck's pooled activations no longer told a fluorescence
        # image or one plane repeated from phase stacks (measured on isl-v1 2.0.0); the first
        # level, which sees the input's local statistics at full detail, does.
        "feature_modules": ["down.0"] if downsample > 1 else [f"down.{len(channels) - 1}"],
        "feature_tile": max(divisor, min(128, crop * 2) // divisor * divisor),
    }

    def card_for(metrics: dict[str, Any], training: dict[str, Any], applic: dict[str, Any]) -> Any:
        return make_card(
            name=name,
            version=version,
            task="label-free prediction: fluorescence channels from a transmitted-light z-stack",
            architecture=f"U-Net {list(channels)}"
            + (
                f" at 1/{downsample} resolution (space to depth in, bilinear out)"
                if downsample > 1
                else ""
            )
            + f", {n_planes} planes in, mean + log sigma per target ({n_targets} targets)",
            input_axes="CYX",
            network={"entry_point": "cytolens.label_free.network:LabelFreeNet", "kwargs": kwargs},
            parameters=params,
            normalization={
                "kind": "percentile",
                "pmin": PMIN,
                "pmax": PMAX,
                "description": "whole stack, one pair of percentiles for all planes",
            },
            training_data=list(training_data),
            training_command=training_command,
            metrics=metrics,
            training=training,
            applicability=applic,
        )

    def predictor() -> Any:
        return LabelFreeModel.from_card(net, card_for({}, {}, {}), device=device)

    def validate(_net: Any) -> dict[str, float]:
        m = heldout_metrics(predictor(), fields, target_names)
        return {k: v for k, v in m.items() if k.startswith("pearson")}

    result = fit(
        net,
        _sampler(fields, crop, batch_size, flips, config.seed),
        lambda n, b: gaussian_loss(n(b[0]), b[1], sigma_weight),
        config,
        validate=validate,
        validate_every=validate_every,
        progress=progress,
        checkpoint=checkpoint,
        device=device,
    )
    net.cpu()
    model = predictor()
    metrics = heldout_metrics(model, fields, target_names)
    train_f, calib_f = reference_features(model, fields, crop, margin)
    training = {
        **result.record(),
        "crop": crop,
        "batch_size": batch_size,
        "margin_px": margin,
        "downsample": downsample,
        "flips": flips,
        "sigma_weight": sigma_weight,
        "loss": "MSE of the means + sigma_weight * Gaussian NLL (mean detached)",
        "heldout_blocks": {p.name: [list(b) for b in p.heldout] for p in pairs},
        "target_normalization": {
            p.name: {
                t: [round(float(a), 3), round(float(b), 3)]
                for t, a, b in zip(target_names, f.target_lo, f.target_hi, strict=True)
            }
            for p, f in zip(pairs, fields, strict=True)
        },
        "target_units": "each target scaled by its (1, 99.8) percentiles on the training pixels",
        "history_tail": result.history[-3:],
        **(extra_training or {}),
    }
    applic: dict[str, Any] = {}
    reference = None
    if len(train_f) >= 3 and len(calib_f) >= 3:
        reference = DomainReference.fit(train_f, calib_f)
    else:
        logger.warning("too few tiles for an applicability reference; the model has none")
    if out is not None:
        import shutil
        import tempfile

        from cytolens.models import load

        folder = Path(out)
        with tempfile.TemporaryDirectory() as tmp:
            if reference is not None:
                path = reference.save(Path(tmp) / APPLICABILITY_FILE)
                applic = reference.card_entry(
                    path,
                    f"mean and std of {params['feature_modules']} activations per "
                    f"{params['feature_tile']} px tile (median over tiles per image)",
                    n_train=len(train_f),
                )
            save_model(net.state_dict(), card_for(metrics, training, applic), folder=folder)
            if reference is not None:
                shutil.copyfile(path, folder / APPLICABILITY_FILE)
        return load(folder, device=device, capability="label_free")
    model = LabelFreeModel.from_card(net, card_for(metrics, training, {}), device=device)
    model.reference = reference
    return model


def reference_tiles(
    shape: Sequence[int], tile: int, blocks: Sequence[Block], margin: int, *, heldout: bool
) -> list[tuple[int, int]]:
    """Corners of ``tile`` windows: inside held-out blocks (half-tile stride) or in training area.

    Examples
    --------
    >>> reference_tiles((256, 256), 64, [(0, 128, 0, 128)], 0, heldout=True)
    [(0, 0), (0, 32), (0, 64), (32, 0), (32, 32), (32, 64), (64, 0), (64, 32), (64, 64)]
    """
    if heldout:
        out = []
        for y0, y1, x0, x1 in blocks:
            for y in range(y0, y1 - tile + 1, tile // 2):
                for x in range(x0, x1 - tile + 1, tile // 2):
                    out.append((y, x))
        return out
    ok = allowed_corners(shape, blocks, tile, margin)
    return [
        (y, x) for y in range(0, ok.shape[0], tile) for x in range(0, ok.shape[1], tile) if ok[y, x]
    ]
