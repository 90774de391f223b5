"""Protein localization in HPA images: :func:`localization`, :func:`classify_cells`.

Pipeline for one image ``(4, Y, X)`` (red microtubules, green protein, blue
nucleus, yellow ER):

1. every channel is scaled by its dtype range to ``[0, 1]`` (uint8 / 255,
   uint16 / 65535; floats taken as ``[0, 1]``), the normalization the model
   was trained with (``normalization`` in the model card);
2. the image is cut into tiles of ``tile_size`` px
   (:func:`cytolens.core.tiling.iter_tiles`; one tile for a 512 x 512
   Kaggle image), each zoomed to the model's working scale (``parameters.scale``,
   0.5 for ``hpa-v1``) and classified whole;
3. tile probabilities are averaged with weights from how much of the tile
   holds cells (the landmark channels above a low level), so empty
   background tiles of a large image do not dilute a localization;
4. each class is called present when its probability reaches the class's
   threshold, tuned on out-of-fold predictions and stored in the model card.

An image without signal gets no label (:func:`no_signal_reason`): when its
green protein channel has nothing above background (its brightest 0.1 % of
pixels lie less than :data:`PROTEIN_SIGNAL_LEVEL` of the dtype range above
its median), or when it holds no cells (fewer than
:data:`CELL_CONTENT_FRACTION` of its pixels have landmark signal above
:data:`CONTENT_LEVEL`). The network answers something for any input, black
images included; such answers are not localizations.

Per cell (:func:`classify_cells`): nuclei from the blue channel, cell bodies
by a seeded watershed (:func:`cytolens.classify.cells.segment_cells`), then
every cell's masked crop is classified like a small image. The nucleolar
call combines the classes 2-5 (Nucleoli, Nucleoli fibrillar center, Nuclear
speckles, Nuclear bodies): ``p_nucleolar = sigmoid(max_c(logit p_c - logit t_c))``
over those classes, so it is 0.5 exactly when the most confident of them sits
at its threshold, and the label is "Nucleoli" when it is at least 0.5.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cytolens.classify.cells import as_cyx_float, cell_table, iter_cell_crops, segment_cells
from cytolens.classify.hpa import CLASS_NAMES, N_CLASSES, NUCLEOLAR_CLASSES, NUCLEOLAR_LABELS
from cytolens.core.errors import InputError, ModelError
from cytolens.models.predictor import Predictor

__all__ = [
    "CELL_CONTENT_FRACTION",
    "DEFAULT_MODEL",
    "NO_SIGNAL",
    "PROTEIN_SIGNAL_LEVEL",
    "LocalizationModel",
    "LocalizationResult",
    "classify_cells",
    "localization",
    "no_signal_reason",
    "nucleolar_probability",
]

logger = logging.getLogger(__name__)

#: The shipped HPA localization model.
DEFAULT_MODEL = "hpa-v1"
#: Most tiles looked at for the applicability features.
FEATURE_WINDOWS = 4
#: Landmark signal (red + blue + yellow, each in [0, 1]) above which a pixel counts as "cell".
CONTENT_LEVEL = 0.05
#: Protein signal: the green channel's 99.9th percentile minus its median, as a fraction of the
#: dtype range, below which the image has no protein signal (the 75 HPA samples: 0.14 or more).
PROTEIN_SIGNAL_LEVEL = 0.01
#: Fraction of pixels with landmark signal above CONTENT_LEVEL below which an image holds no
#: cells (the 75 HPA samples: 0.028 or more).
CELL_CONTENT_FRACTION = 0.001
#: The ``nucleolar`` call of a cell in an image without signal.
NO_SIGNAL = "no signal"


def no_signal_reason(image_cyx: Any) -> str:
    """Why an HPA image has no signal to classify; ``""`` when it has.

    Parameters
    ----------
    image_cyx : array_like or Image
        ``(4, Y, X)`` red, green, blue, yellow (see :func:`localization`).

    Returns
    -------
    str
        ``"no protein signal (...)"`` when the green channel's brightest
        0.1 % of pixels lie less than :data:`PROTEIN_SIGNAL_LEVEL` of the
        dtype range above its median (a black or constant channel), ``"no
        cells (...)"`` when fewer than :data:`CELL_CONTENT_FRACTION` of the
        pixels have a landmark signal (red + blue + yellow) above
        :data:`CONTENT_LEVEL`; else ``""``.

    Examples
    --------
    >>> no_signal_reason(np.zeros((4, 64, 64), np.uint8))  # doctest: +ELLIPSIS
    'no protein signal (green channel: brightest 0.1 % of pixels 0.000 above the median, ...)'
    >>> rng = np.random.default_rng(0)
    >>> no_signal_reason(rng.integers(0, 255, (4, 64, 64), dtype=np.uint8))
    ''
    """
    x = as_cyx_float(image_cyx)
    green = x[1]
    spread = float(np.percentile(green, 99.9) - np.median(green))
    if not spread >= PROTEIN_SIGNAL_LEVEL:
        return (
            f"no protein signal (green channel: brightest 0.1 % of pixels {spread:.3f} above "
            f"the median, less than {PROTEIN_SIGNAL_LEVEL} of the dtype range)"
        )
    content = float((x[[0, 2, 3]].sum(0) > CONTENT_LEVEL).mean())
    if not content >= CELL_CONTENT_FRACTION:
        return (
            f"no cells (red + blue + yellow above {CONTENT_LEVEL} in {100 * content:.2f} % of "
            f"the pixels, less than {100 * CELL_CONTENT_FRACTION} %)"
        )
    return ""


def _logit(p: Any) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def nucleolar_probability(
    probabilities: Any, thresholds: Any, *, group: Any = NUCLEOLAR_CLASSES
) -> np.ndarray:
    """Threshold-relative probability of the nucleolar group (classes 2-5).

    ``sigmoid(max_c(logit p_c - logit t_c))`` over the group: >= 0.5 exactly
    when at least one group class reaches its threshold.

    Parameters
    ----------
    probabilities : array_like
        ``(..., 28)`` class probabilities.
    thresholds : array_like
        ``(28,)`` per-class thresholds, or ``(..., 28)`` matching ``probabilities``.
    group : sequence of int
        The nucleolar classes (a model card's ``nucleolar_classes``; default 2-5).

    Examples
    --------
    >>> p = np.full(28, 0.1)
    >>> t = np.full(28, 0.4)
    >>> p[3] = 0.4
    >>> float(nucleolar_probability(p, t))
    0.5
    """
    p = np.asarray(probabilities, np.float64)
    t = np.asarray(thresholds, np.float64)
    group = [int(c) for c in group]
    margin = (_logit(p[..., group]) - _logit(t[..., group])).max(axis=-1)
    return 1 / (1 + np.exp(-margin))


@dataclass
class LocalizationResult:
    """Class probabilities of one image with the model's thresholds.

    Attributes
    ----------
    probabilities : numpy.ndarray
        ``(28,)`` probability per class.
    thresholds : numpy.ndarray
        ``(28,)`` decision thresholds (from the model card).
    class_names : tuple of str
        Names of the 28 classes.
    tiles : int
        Tiles the image was classified in.
    model : str
        Name of the model.
    no_signal : str
        Why the image has no signal (:func:`no_signal_reason`); ``""`` when
        it has. An image without signal has no predicted class, a NaN
        nucleolar probability, and NaN probabilities in :meth:`summary`
        (``probabilities`` keeps the network's raw answer).
    """

    probabilities: np.ndarray
    thresholds: np.ndarray
    class_names: tuple[str, ...] = CLASS_NAMES
    tiles: int = 1
    model: str = DEFAULT_MODEL
    no_signal: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    nucleolar_classes: tuple[int, ...] = NUCLEOLAR_CLASSES

    @property
    def has_signal(self) -> bool:
        """False when the image has no signal to classify (see ``no_signal``)."""
        return not self.no_signal

    @property
    def called(self) -> np.ndarray:
        """``(28,)`` bool: each class called present (none for an image without signal)."""
        return (self.probabilities >= self.thresholds) & self.has_signal

    @property
    def predicted(self) -> list[int]:
        """Class numbers called present, most probable first."""
        hit = np.flatnonzero(self.called)
        return [int(i) for i in hit[np.argsort(-self.probabilities[hit], kind="stable")]]

    @property
    def labels(self) -> list[str]:
        """Names of the classes called present, most probable first."""
        return [self.class_names[i] for i in self.predicted]

    @property
    def nucleolar_probability(self) -> float:
        """Threshold-relative probability of the nucleolar group (NaN without signal)."""
        if not self.has_signal:
            return float("nan")
        return float(
            nucleolar_probability(self.probabilities, self.thresholds, group=self.nucleolar_classes)
        )

    def table(self) -> pd.DataFrame:
        """One row per class (probability, threshold, predicted), most probable first."""
        df = pd.DataFrame(
            {
                "class": np.arange(len(self.probabilities)),
                "name": list(self.class_names),
                "probability": self.probabilities.astype(float),
                "threshold": self.thresholds.astype(float),
                "predicted": self.called,
            }
        )
        return df.sort_values("probability", ascending=False, kind="stable").reset_index(drop=True)

    def summary(self) -> dict[str, Any]:
        """A flat dict: predicted classes and names, nucleolar probability, one column per class.

        ``signal`` is False and ``no_signal`` says why for an image without
        signal; its class probabilities are then NaN (no localization).
        """
        out: dict[str, Any] = {
            "predicted": " ".join(str(i) for i in self.predicted),
            "labels": "; ".join(self.labels),
            "signal": self.has_signal,
            "no_signal": self.no_signal,
            "nucleolar_probability": round(self.nucleolar_probability, 4),
            "tiles": self.tiles,
        }
        probs = self.probabilities if self.has_signal else np.full_like(self.probabilities, np.nan)
        out.update({f"p_{i:02d}": round(float(p), 4) for i, p in enumerate(probs)})
        return out

    def __repr__(self) -> str:
        if not self.has_signal:
            return f"LocalizationResult({self.no_signal})"
        shown = ", ".join(
            f"{self.class_names[i]} {self.probabilities[i]:.2f}" for i in self.predicted
        )
        return f"LocalizationResult({shown or 'no class above its threshold'})"


def _channel_statistics(x: np.ndarray) -> np.ndarray:
    """Mean and standard deviation of each channel and their pairwise correlations.

    Part of the applicability features: the network's pooled activations
    miss what sets HPA images apart from other multi-channel images (e.g.
    four copies of one stain correlate perfectly; HPA's stains do not).
    """
    flat = x.reshape(x.shape[0], -1).astype(np.float64)
    std = flat.std(1)
    centred = (flat - flat.mean(1, keepdims=True)) / np.where(std > 0, std, 1.0)[:, None]
    corr = centred @ centred.T / flat.shape[1]
    return np.concatenate([flat.mean(1), std, corr[np.triu_indices(x.shape[0], 1)]])


class LocalizationModel(Predictor):
    """A shipped (or fine-tuned) HPA localization network with its card.

    Parameters
    ----------
    network : torch.nn.Module
        :class:`~cytolens.classify.network.HPANet` with weights loaded.
    card : cytolens.models.ModelCard
        ``parameters`` (:class:`~cytolens.models.schema.ClassifyParameters`)
        holds ``scale``, ``tile_size``, ``class_names``, ``thresholds`` and
        ``nucleolar_classes``; ``normalization`` the dtype-range scaling.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.

    Examples
    --------
    >>> m = LocalizationModel.load("hpa-v1", device="cpu")
    >>> m.scale, len(m.thresholds), m.tile_size
    (0.5, 28, 512)
    """

    capability = "classify"

    def configure(self) -> None:
        """Read the card's classification parameters."""
        p = self.params
        self.scale = float(p.scale)
        self.tile_size = int(p.tile_size)
        self.thresholds = np.asarray(p.thresholds, np.float64)
        self.class_names = tuple(p.class_names)
        self.nucleolar_classes = tuple(int(c) for c in p.nucleolar_classes)
        if self.thresholds.shape != (N_CLASSES,):
            raise ModelError(
                f"model card of {self.name!r}: expected {N_CLASSES} thresholds, "
                f"got {self.thresholds.shape}"
            )

    @classmethod
    def load(
        cls, name: Any = DEFAULT_MODEL, *, device: Any = "auto", root: Any = None
    ) -> LocalizationModel:
        """Load a shipped model by name, or a model folder (:func:`cytolens.models.load`).

        Examples
        --------
        >>> LocalizationModel.load("hpa-v1", device="cpu").nucleolar_classes
        (2, 3, 4, 5)
        """
        from cytolens.models import load

        return load(name, device=device, root=root, capability="classify")

    def as_input(self, image: Any) -> np.ndarray:
        """``(4, Y, X)`` float32 of an HPA image, normalized as the card says."""
        return as_cyx_float(image, normalization=self.normalization)

    def predict_batch(self, x: np.ndarray) -> np.ndarray:
        """Probabilities ``(n, 28)`` of a batch ``(n, 4, y, x)`` already at the working scale."""
        import torch

        if len(x) == 0:
            return np.zeros((0, N_CLASSES), np.float32)
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device)
            return torch.sigmoid(self.network(t)).float().cpu().numpy()

    def predict_image(self, image: Any, *, tile_size: int | None = None) -> tuple[np.ndarray, int]:
        """Probabilities ``(28,)`` of a whole image and the number of tiles used.

        ``tile_size`` defaults to the card's.
        """
        from cytolens.classify.train import downscale
        from cytolens.core.tiling import iter_tiles

        tile_size = self.tile_size if tile_size is None else tile_size
        x = self.as_input(image)
        if min(x.shape[1:]) * self.scale < self.network.divisor:
            raise InputError(
                f"image of {x.shape[1]} x {x.shape[2]} px is too small: at the model's scale "
                f"{self.scale} it needs at least {self.network.divisor / self.scale:.0f} px a side"
            )
        tiles = iter_tiles(x.shape[1:], tile_size, overlap=0)
        probs, weights = [], []
        for tile in tiles:
            part = x[(slice(None), *tile.read)]
            probs.append(self.predict_batch(downscale(part, self.scale)[None])[0])
            content = float((part[[0, 2, 3]].sum(0) > CONTENT_LEVEL).mean())
            weights.append(content + 1e-3)
        w = np.asarray(weights)
        return (np.asarray(probs) * w[:, None]).sum(0) / w.sum(), len(tiles)

    def features(self, image: Any, *, max_windows: int = FEATURE_WINDOWS) -> np.ndarray:
        """Applicability features of one image: pooled activations and channel statistics.

        The image is prepared as :meth:`predict_image` prepares it (dtype
        range, tiles of ``tile_size`` px zoomed by ``scale``; at most
        ``max_windows`` of them); the per-channel mean and standard
        deviation of the network's last convolution stage, then each input
        channel's mean and standard deviation and the channels' pairwise
        correlations, averaged over the tiles, are the features.

        Returns
        -------
        numpy.ndarray of float64, shape (d,)

        Examples
        --------
        >>> m = LocalizationModel.load("hpa-v1", device="cpu")
        >>> m.features(np.zeros((4, 64, 64), np.uint8)).shape
        (334,)
        """
        from cytolens.classify.train import downscale
        from cytolens.models.applicability import PooledFeatures, sample_windows

        x = self.as_input(image)
        stats = []
        with PooledFeatures(self.network, ["features"]) as pooled:
            for window in sample_windows(x.shape[1:], self.tile_size, max_windows):
                tile = downscale(x[(slice(None), *window)], self.scale)
                self.predict_batch(tile[None])
                stats.append(_channel_statistics(tile))
        return np.concatenate([pooled.take().mean(0), np.mean(stats, axis=0)])

    def predict_cells(
        self, image: Any, cells: np.ndarray, *, batch_size: int = 64
    ) -> tuple[np.ndarray, list[int]]:
        """Probabilities ``(n_cells, 28)`` of the masked crop of every cell, and the cell labels."""
        x = self.as_input(image)
        if cells.shape != x.shape[1:]:
            raise InputError(f"cells {cells.shape} and image {x.shape[1:]} differ in shape")
        probs, ids = [], []
        for crops, batch_ids in iter_cell_crops(x, cells, scale=self.scale, batch_size=batch_size):
            probs.append(self.predict_batch(crops))
            ids += batch_ids
        return (np.concatenate(probs) if probs else np.zeros((0, N_CLASSES), np.float32)), ids


def _load_cached(model: str, device: str, stamp: int = 0) -> LocalizationModel:
    """Former cached loader: now :func:`cytolens.models.load` (one cache, keyed on mtime)."""
    return LocalizationModel.load(model, device=device)


def _resolve(model: Any, device: str) -> LocalizationModel:
    if isinstance(model, LocalizationModel):
        return model
    # the one cache is keyed on the weights' mtime: a folder retrained in place is reloaded
    return LocalizationModel.load(model, device=device)


def localization(
    image_cyx: Any,
    *,
    model: Any = DEFAULT_MODEL,
    tile_size: int | None = None,
    device: str = "auto",
) -> LocalizationResult:
    """Where the green protein of an HPA image sits: a probability per class (multi-label).

    Parameters
    ----------
    image_cyx : array_like or Image
        ``(4, Y, X)``: red (microtubules), green (protein), blue (nucleus),
        yellow (ER), as :func:`cytolens.io.read_hpa` returns; any size.
        uint8 / uint16 are scaled by their dtype range, floats taken as ``[0, 1]``.
    model : str or LocalizationModel
        A shipped model name (``"hpa-v1"``), a model folder, or a loaded model.
    tile_size : int, optional
        Tile side in px of the input (default: the card's ``tile_size``, 512
        for ``hpa-v1``; each tile is classified whole at the model's scale;
        probabilities are averaged over tiles weighted by their cell content).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.

    Returns
    -------
    LocalizationResult
        ``probabilities`` and ``thresholds`` (28 each), ``predicted`` class
        numbers and ``labels`` (names), ``table()`` and ``summary()``.

        An image without signal (:func:`no_signal_reason`: no protein
        signal, or no cells) gets no label: ``no_signal`` says why,
        ``predicted`` is empty.

    Raises
    ------
    InputError
        For an image that is not ``(4, Y, X)`` or too small.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> res = localization(rng.integers(0, 255, (4, 128, 128), dtype=np.uint8), device="cpu")
    >>> res.probabilities.shape, res.thresholds.shape
    ((28,), (28,))
    >>> list(res.table().columns)
    ['class', 'name', 'probability', 'threshold', 'predicted']
    >>> black = localization(np.zeros((4, 128, 128), np.uint8), device="cpu")
    >>> black.labels, black.has_signal
    ([], False)
    """
    m = _resolve(model, device)
    x = m.as_input(image_cyx)
    probs, n_tiles = m.predict_image(x, tile_size=tile_size)
    return LocalizationResult(
        probabilities=probs.astype(np.float64),
        thresholds=m.thresholds.copy(),
        class_names=m.class_names,
        nucleolar_classes=m.nucleolar_classes,
        tiles=n_tiles,
        model=m.name,
        no_signal=no_signal_reason(x),
    )


def classify_cells(
    image_cyx: Any,
    *,
    model: Any = DEFAULT_MODEL,
    nucleus_method: str = "classical",
    nucleus_diameter: float | None = None,
    device: str = "auto",
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Segment the cells of an HPA image and classify each one (masked crop).

    Parameters
    ----------
    image_cyx : array_like or Image
        ``(4, Y, X)`` HPA image (see :func:`localization`).
    model : str or LocalizationModel
        Shipped model name, model folder or loaded model.
    nucleus_method : {"classical", "model"}
        Nucleus segmentation (see :func:`cytolens.classify.cells.segment_cells`).
    nucleus_diameter : float, optional
        Typical nucleus diameter in px (estimated when omitted).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.

    Returns
    -------
    table : pandas.DataFrame
        One row per cell: ``cell_id``, box ``xmin_px, ymin_px, xmax_px, ymax_px`` (px,
        max exclusive), ``cell_area_px``, ``nucleus_area_px``,
        ``touches_border``, ``predicted`` (class numbers called present),
        ``labels`` (names), ``nucleolar_probability``, ``nucleolar``
        ("Nucleoli" or "Not Nucleoli"), ``confidence`` (of that label,
        ``max(p, 1 - p)``), and ``p_00`` ... ``p_27``. In an image without
        signal (:func:`no_signal_reason`) no cell gets a class: ``nucleolar``
        is :data:`NO_SIGNAL`, ``confidence`` 0 and the probabilities NaN.
    nuclei, cells : numpy.ndarray of int32
        The label images (cell ``k`` grows from nucleus ``k``).

    Examples
    --------
    >>> yy, xx = np.mgrid[:128, :128]
    >>> img = np.zeros((4, 128, 128), np.float32)
    >>> img[2][(yy - 64) ** 2 + (xx - 64) ** 2 < 14**2] = 0.8
    >>> img[0][(yy - 64) ** 2 + (xx - 64) ** 2 < 40**2] = 0.4
    >>> table, nuc, cells = classify_cells(img, nucleus_diameter=28, device="cpu")
    >>> len(table), table.loc[0, "nucleolar"]  # the green protein channel is black
    (1, 'no signal')
    >>> img[1][(yy - 64) ** 2 + (xx - 64) ** 2 < 10**2] = 0.6
    >>> table, nuc, cells = classify_cells(img, nucleus_diameter=28, device="cpu")
    >>> len(table), table.loc[0, "nucleolar"] in ("Nucleoli", "Not Nucleoli")
    (1, True)
    """
    m = _resolve(model, device)
    x = m.as_input(image_cyx)
    nuclei, cells = segment_cells(
        x, nucleus_method=nucleus_method, nucleus_diameter=nucleus_diameter
    )
    table = cell_table(nuclei, cells)
    probs, ids = m.predict_cells(x, cells)
    if list(table["cell_id"]) != ids:
        raise ModelError("internal error: cell crops and the cell table disagree")
    pred = probs >= m.thresholds[None, :]
    p_nuc = (
        nucleolar_probability(probs, m.thresholds, group=m.nucleolar_classes)
        if len(probs)
        else np.zeros(0)
    )
    nucleolar = np.where(p_nuc >= 0.5, NUCLEOLAR_LABELS[0], NUCLEOLAR_LABELS[1])
    confidence = np.maximum(p_nuc, 1 - p_nuc)
    if len(probs) and no_signal_reason(x):
        pred[:] = False
        probs = np.full_like(probs, np.nan)
        p_nuc = np.full_like(p_nuc, np.nan)
        nucleolar = np.full(len(probs), NO_SIGNAL, dtype=object)
        confidence = np.zeros_like(confidence)
    table["predicted"] = [" ".join(str(c) for c in np.flatnonzero(r)) for r in pred]
    table["labels"] = ["; ".join(m.class_names[c] for c in np.flatnonzero(r)) for r in pred]
    table["nucleolar_probability"] = p_nuc.round(4)
    table["nucleolar"] = nucleolar
    table["confidence"] = confidence.round(4)
    for c in range(N_CLASSES):
        table[f"p_{c:02d}"] = probs[:, c].astype(np.float64).round(4) if len(probs) else np.zeros(0)
    return table, nuclei, cells
