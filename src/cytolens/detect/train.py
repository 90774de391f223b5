"""Train or fine-tune a :class:`~cytolens.detect.network.CenterNet` on box annotations.

Used by ``scripts/train/detection.py`` (the shipped ``detect-bccd-v1``) and by
``cytolens detect train`` (a user's own images and LabelImg annotations).

Targets follow CenterNet: per class, a Gaussian peak at each box centre
(on the stride-4 grid, sigma proportional to the box size as in TTFNet), the
log box width and height and the sub-cell centre offset at the peak. Loss:
the penalty-reduced focal loss on the heatmap plus L1 on size and offset.
Augmentation: random crops, flips, 90-degree rotations, scale jitter and
per-channel intensity jitter.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from cytolens.core.errors import InputError
from cytolens.core.tables import BOX_COLUMNS
from cytolens.detect.annotations import validate_boxes
from cytolens.detect.model import NORMALIZATION as _DETECTOR_NORMALIZATION

__all__ = [
    "NORMALIZATION",
    "TrainConfig",
    "card_parameters",
    "card_training",
    "fit_score_pivots",
    "load_examples",
    "train_detector",
]

logger = logging.getLogger(__name__)


class TrainConfig(BaseModel):
    """Settings of a training run (saved in the model card)."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(2000, ge=1)
    batch_size: int = Field(12, ge=1)
    crop: int = Field(256, ge=32, multiple_of=16)
    lr: float = Field(2e-3, gt=0)
    width: int = Field(16, ge=4)
    scale: float = Field(0.5, gt=0, le=4)
    overlap: int = Field(64, ge=0)
    seed: int = 0
    threads: int = Field(2, ge=1)


#: The input normalization of :func:`~cytolens.detect.model.prepare_image`, as a card states it
#: (the one of :mod:`cytolens.detect.model`).
NORMALIZATION = _DETECTOR_NORMALIZATION


def card_parameters(classes: Sequence[str], config: TrainConfig) -> dict[str, Any]:
    """The model-card ``parameters`` a :class:`~cytolens.detect.model.Detector` is loaded from.

    Exactly the :class:`~cytolens.models.schema.DetectParameters` (validated);
    the training configuration goes to the card's ``training``
    (:func:`card_training`).

    Examples
    --------
    >>> p = card_parameters(["RBC", "WBC"], TrainConfig())
    >>> p["classes"], p["scale"], p["overlap"], p["min_score"]
    (['RBC', 'WBC'], 0.5, 64, 0.7)
    """
    from cytolens.detect.model import MIN_SCORE
    from cytolens.models.schema import DetectParameters

    return DetectParameters(
        classes=list(classes), scale=config.scale, overlap=config.overlap, min_score=MIN_SCORE
    ).model_dump(mode="json", exclude_none=True)


def card_training(config: TrainConfig, **extra: Any) -> dict[str, Any]:
    """The model card's documentation-only ``training`` section: the configuration, and ``extra``.

    Examples
    --------
    >>> card_training(TrainConfig(), split_file="split.json")["train_config"]["scale"]
    0.5
    """
    return {"train_config": config.model_dump(), **extra}


class Example:
    """One training image at network scale with its boxes (x0, y0, x1, y1, class)."""

    def __init__(self, image: np.ndarray, boxes: np.ndarray, name: str) -> None:
        self.image, self.boxes, self.name = image, boxes, name


def load_examples(
    table: pd.DataFrame,
    images: str | os.PathLike[str],
    *,
    classes: Sequence[str],
    channels: int,
    scale: float,
) -> list[Example]:
    """Read the annotated images, normalize and rescale them to network scale."""
    from cytolens.detect.model import _rescale, prepare_image
    from cytolens.io import imread

    table, _ = validate_boxes(table, classes=classes, source=str(images))
    index = {name: i for i, name in enumerate(classes)}
    out = []
    for filename, rows in table.groupby("filename", sort=True):
        path = Path(images) / Path(str(filename)).name
        x = _rescale(prepare_image(imread(path), channels=channels, name=str(path)), scale)
        b = rows[list(BOX_COLUMNS)].to_numpy(np.float32) * scale
        labels = rows["class"].map(index).to_numpy(np.float32)
        out.append(Example(x, np.concatenate([b, labels[:, None]], axis=1), str(filename)))
    return out


def _augment(ex: Example, crop: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random crop (zoomed by up to 1.25x either way), flipped, rotated and jittered."""
    zoom = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
    img, boxes = ex.image, ex.boxes.copy()
    c, h, w = img.shape
    side = max(16, round(crop / zoom))
    y0 = int(rng.integers(0, max(1, h - side + 1)))
    x0 = int(rng.integers(0, max(1, w - side + 1)))
    window = np.zeros((c, side, side), np.float32)
    part = img[:, y0 : y0 + side, x0 : x0 + side]
    window[:, : part.shape[1], : part.shape[2]] = part
    boxes[:, [0, 2]] -= x0
    boxes[:, [1, 3]] -= y0
    if side != crop:
        import torch

        window = torch.nn.functional.interpolate(
            torch.from_numpy(window)[None], size=(crop, crop), mode="bilinear", align_corners=False
        )[0].numpy()
        boxes[:, :4] *= crop / side
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, crop)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, crop)
    # keep boxes that still show most of their width and height inside the crop
    boxes = boxes[((boxes[:, 2] - boxes[:, 0]) > 4) & ((boxes[:, 3] - boxes[:, 1]) > 4)]
    if rng.random() < 0.5:
        window = window[:, :, ::-1]
        boxes[:, [0, 2]] = crop - boxes[:, [2, 0]]
    if rng.random() < 0.5:
        window = window[:, ::-1, :]
        boxes[:, [1, 3]] = crop - boxes[:, [3, 1]]
    if rng.random() < 0.5:  # transpose = 90-degree rotation combined with the flips
        window = window.transpose(0, 2, 1)
        boxes = boxes[:, [1, 0, 3, 2, 4]]
    gain = rng.uniform(0.8, 1.25, (c, 1, 1)).astype(np.float32)
    shift = rng.uniform(-0.1, 0.1, (c, 1, 1)).astype(np.float32)
    return np.ascontiguousarray(window * gain + shift), boxes


def _targets(boxes: np.ndarray, n_classes: int, crop: int) -> tuple[np.ndarray, ...]:
    """Heatmap, size/offset maps and their mask on the stride-4 grid."""
    from cytolens.detect.network import STRIDE

    g = crop // STRIDE
    heat = np.zeros((n_classes, g, g), np.float32)
    size = np.zeros((2, g, g), np.float32)
    offset = np.zeros((2, g, g), np.float32)
    mask = np.zeros((g, g), np.float32)
    yy, xx = np.mgrid[:g, :g].astype(np.float32)
    for x0, y0, x1, y1, k in boxes:
        cx, cy = (x0 + x1) / 2 / STRIDE, (y0 + y1) / 2 / STRIDE
        ix, iy = min(int(cx), g - 1), min(int(cy), g - 1)
        sx = max((x1 - x0) / STRIDE * 0.54 / 6, 0.5)
        sy = max((y1 - y0) / STRIDE * 0.54 / 6, 0.5)
        peak = np.exp(-((xx - ix) ** 2) / (2 * sx**2) - ((yy - iy) ** 2) / (2 * sy**2))
        np.maximum(heat[int(k)], peak, out=heat[int(k)])
        size[:, iy, ix] = np.log(max(x1 - x0, 1.0)), np.log(max(y1 - y0, 1.0))
        offset[:, iy, ix] = cx - ix, cy - iy
        mask[iy, ix] = 1.0
    return heat, size, offset, mask


def _loss(outputs: tuple[Any, Any, Any], targets: tuple[Any, ...]) -> tuple[Any, dict[str, float]]:
    import torch

    heat_logits, size, offset = outputs
    heat_t, size_t, offset_t, mask = targets
    p = torch.sigmoid(heat_logits.float()).clamp(1e-4, 1 - 1e-4)
    pos = heat_t.eq(1).float()
    n_pos = pos.sum().clamp(min=1)
    focal = (
        -(
            pos * (1 - p) ** 2 * torch.log(p)
            + (1 - pos) * (1 - heat_t) ** 4 * p**2 * torch.log(1 - p)
        ).sum()
        / n_pos
    )
    m = mask[:, None]
    n_obj = mask.sum().clamp(min=1)
    size_l = (torch.abs(size - size_t) * m).sum() / n_obj
    offset_l = (torch.abs(offset - offset_t) * m).sum() / n_obj
    total = focal + size_l + offset_l
    return total, {"focal": focal.item(), "size": size_l.item(), "offset": offset_l.item()}


def train_detector(
    examples: Sequence[Example],
    classes: Sequence[str],
    *,
    config: TrainConfig | None = None,
    initial: Any = None,
    initial_classes: Sequence[str] | None = None,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
) -> Any:
    """Train a CenterNet on examples; return the network (eval mode, on CPU).

    Parameters
    ----------
    examples : sequence of Example
        From :func:`load_examples`.
    classes : sequence of str
        Class names, in heatmap channel order.
    config : TrainConfig, optional
        Run settings.
    initial : torch.nn.Module, optional
        A trained network to fine-tune. Its backbone is kept; the class
        heatmap head is kept only when ``initial_classes`` equals ``classes``
        (same names, same order), otherwise re-initialized.
    initial_classes : sequence of str, optional
        Classes of ``initial`` (default: assumed equal to ``classes`` when the
        count matches).
    progress : callable, optional
        Called as ``progress(step, steps, losses)`` after each step.

    Examples
    --------
    >>> img = np.zeros((3, 64, 64), np.float32)
    >>> img[:, 20:40, 20:40] = 1.0
    >>> ex = Example(img, np.array([[20, 20, 40, 40, 0]], np.float32), "square")
    >>> net = train_detector([ex], ["square"], config=TrainConfig(steps=2, batch_size=2, crop=64))
    >>> type(net).__name__
    'CenterNet'
    """
    import torch

    from cytolens.detect.network import CenterNet
    from cytolens.models import training

    cfg = config or TrainConfig()
    if not examples:
        raise InputError("no annotated images to train on")
    torch.set_num_threads(cfg.threads)
    rng = training.seed_everything(cfg.seed)
    channels = examples[0].image.shape[0]
    net = CenterNet(channels, len(classes), width=cfg.width)
    if initial is not None:
        state = {
            k: v
            for k, v in initial.state_dict().items()
            if not k.startswith("heat.")
            or (
                v.shape == net.state_dict()[k].shape
                and (initial_classes is None or list(initial_classes) == list(classes))
            )
        }
        net.load_state_dict(state, strict=False)
    optim = training.TrainConfig(
        steps=cfg.steps,
        lr=cfg.lr,
        weight_decay=1e-4,
        final_lr_fraction=0.02,
        grad_clip=10.0,
        seed=cfg.seed,
        threads=cfg.threads,
        log_every=100,
    )

    def batch(step: int) -> Any:
        drawn = [
            _augment(examples[int(rng.integers(len(examples)))], cfg.crop, rng)
            for _ in range(cfg.batch_size)
        ]
        x = torch.from_numpy(np.stack([b[0] for b in drawn]))
        maps = [_targets(b[1], len(classes), cfg.crop) for b in drawn]
        return x, tuple(torch.from_numpy(np.stack([m[i] for m in maps])) for i in range(4))

    parts: dict[str, float] = {}

    def loss(net: Any, b: Any) -> Any:
        value, found = _loss(net(b[0]), b[1])
        parts.update(found)
        return value

    def on_step(entry: dict[str, float]) -> None:
        if progress is not None:
            progress(int(entry["step"]), cfg.steps, {"loss": entry["loss"], **parts})

    training.fit(net, batch, loss, optim, rng=rng, on_step=on_step, seed=False)
    return net


def fit_score_pivots(
    predictions: pd.DataFrame,
    truth: pd.DataFrame,
    classes: Sequence[str],
    *,
    iou_threshold: float = 0.5,
) -> dict[str, float]:
    """Per class, the raw score where F1 (at ``iou_threshold``) is highest.

    Stored as ``score_pivots`` in a detector's card; prediction maps each
    pivot to the default threshold 0.7 (:func:`cytolens.detect.model.calibrate_score`).
    Fit it on training images, never on the images you evaluate on.

    Parameters
    ----------
    predictions : pandas.DataFrame
        ``filename, class, xmin_px, ymin_px, xmax_px, ymax_px, score`` with *raw* scores
        (a detector without pivots, low ``min_score``).
    truth : pandas.DataFrame
        ``filename, class, xmin_px, ymin_px, xmax_px, ymax_px``.
    classes : sequence of str
        Classes to fit; a class without ground truth or predictions gets 0.5.

    Returns
    -------
    dict
        Class name -> pivot in [0.05, 0.95].

    Examples
    --------
    >>> truth = pd.DataFrame({"filename": ["a"] * 2, "class": ["c"] * 2,
    ...     "xmin_px": [0, 20], "ymin_px": [0, 0], "xmax_px": [10, 30], "ymax_px": [10, 10]})
    >>> pred = pd.concat([truth.assign(score=[0.4, 0.35]),
    ...     truth.iloc[:1].assign(xmin_px=50, xmax_px=60, score=0.2)])
    >>> fit_score_pivots(pred, truth, ["c"])
    {'c': 0.35}
    """
    from cytolens.evaluate.detection import match_detections

    out = {}
    for cls in classes:
        n_truth = int((truth["class"] == cls).sum())
        pred, tp = match_detections(predictions, truth, cls, iou_threshold=iou_threshold)
        if n_truth == 0 or pred.empty:
            out[str(cls)] = 0.5
            continue
        ctp = np.cumsum(tp)
        f1 = 2 * ctp / (np.arange(1, len(tp) + 1) + n_truth)
        best = int(np.argmax(f1))
        out[str(cls)] = round(float(np.clip(pred["score"].iloc[best], 0.05, 0.95)), 4)
    return out
