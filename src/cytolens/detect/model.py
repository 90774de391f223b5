"""Detect objects with a trained :class:`~cytolens.detect.network.CenterNet`.

Prediction, for an image of any size:

1. channels last -> ``(C, Y, X)`` float32; each channel scaled by its
   percentiles over the whole image (bounded sample, so tiles agree), as the
   card's ``normalization`` says (1 and 99.8 for ``detect-bccd-v1``);
2. resized by the model's ``scale`` (0.5 for ``detect-bccd-v1``: the network
   sees BCCD's 640x480 fields at 320x240);
3. cut into overlapping tiles by :func:`cytolens.core.tiling.iter_tiles`;
   each object belongs to the one tile whose core holds its centre, and the
   halo (``overlap``, larger than half the largest object) lets that tile see
   the object whole;
4. per tile: heatmap peaks (3x3 maxima) above ``min_score`` become boxes,
   then class-wise non-maximum suppression over the whole image.

Scores are calibrated so that the default threshold means the same for every
class: a focal-loss heatmap rarely peaks near 1 (small, crowded objects such as
platelets and red cells peak around 0.3-0.5), so the card's ``score_pivots``
give, per class, the raw heatmap value where F1 peaked on the *training*
images, and :func:`calibrate_score` maps that value to 0.7 (piecewise linear,
increasing, so the ranking and every AP are unchanged).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import pandas as pd

from cytolens.core.errors import InputError, ModelError
from cytolens.core.validate import check_array
from cytolens.models.predictor import Predictor
from cytolens.models.schema import PercentileNormalization

__all__ = [
    "DEFAULT_MODEL",
    "NORMALIZATION",
    "Detector",
    "calibrate_score",
    "detect",
    "prepare_image",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "detect-bccd-v1"
#: Default score threshold: boxes below it are not reported.
MIN_SCORE = 0.7
#: Side (px, at the network's scale) and most windows of the applicability features.
FEATURE_WINDOW = 128
FEATURE_WINDOWS = 4
#: The input normalization of the detectors (and their cards): per channel, percentiles 1, 99.8.
NORMALIZATION = PercentileNormalization(pmin=1.0, pmax=99.8, per_channel=True)


def calibrate_score(raw: Any, pivot: float, target: float = MIN_SCORE) -> Any:
    """Map raw heatmap values so that ``pivot`` becomes ``target`` (0 and 1 stay).

    Piecewise linear and increasing: ``[0, pivot] -> [0, target]`` and
    ``[pivot, 1] -> [target, 1]``. Works on floats, numpy arrays and tensors.

    Parameters
    ----------
    raw : float, numpy.ndarray or torch.Tensor
        Values in [0, 1].
    pivot : float
        Raw value that becomes ``target``, in (0, 1).
    target : float
        Calibrated value of ``pivot``.

    Returns
    -------
    Same type as ``raw``.

    Examples
    --------
    >>> import numpy as np
    >>> calibrate_score(np.array([0.0, 0.2, 0.4, 0.7, 1.0]), pivot=0.4).round(3).tolist()
    [0.0, 0.35, 0.7, 0.85, 1.0]
    """
    if not 0 < pivot < 1:
        raise InputError(f"score pivot must be in (0, 1), got {pivot!r}")
    low = raw * (target / pivot)
    high = target + (raw - pivot) * ((1 - target) / (1 - pivot))
    return low * (raw < pivot) + high * (raw >= pivot)


def prepare_image(
    image: Any, *, channels: int, name: str = "image", normalization: Any = None
) -> np.ndarray:
    """``(C, Y, X)`` float32, each channel normalized as the model's card says.

    ``normalization`` is the card's (a per-channel
    :class:`~cytolens.models.schema.PercentileNormalization`); by default
    :data:`NORMALIZATION`, each channel scaled by its percentiles 1 and 99.8
    (:func:`~cytolens.core.normalize.normalize_per_channel`).

    Accepts ``(Y, X)``, ``(Y, X, C)`` (colour, channels last, as read from
    JPEG/PNG) or an :class:`~cytolens.core.image.Image` with a ``C`` axis
    first or last. An RGBA image loses its alpha channel; a grey image is
    repeated to ``channels`` when the model expects 3.

    Examples
    --------
    >>> prepare_image(np.zeros((8, 10, 3), np.uint8), channels=3).shape
    (3, 8, 10)
    """
    from cytolens.core.image import Image

    if isinstance(image, Image):
        name = str(image.path or name)
        data = np.asarray(image.data)
        if image.axes == "CYX":
            data = np.moveaxis(data, 0, -1)
        elif image.axes not in ("YX", "YXC"):
            raise InputError(f"{name} has axes {image.axes!r}; expected YX, YXC or CYX")
    else:
        data = np.asarray(image)
    data = np.asarray(check_array(data, name=name))
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise InputError(f"{name} has shape {data.shape}; expected (Y, X) or (Y, X, C)")
    if data.shape[-1] == 4 and channels == 3:
        data = data[..., :3]
    if data.shape[-1] == 1 and channels == 3:
        data = np.repeat(data, 3, axis=-1)
    if data.shape[-1] != channels:
        raise InputError(
            f"{name} has {data.shape[-1]} channel(s) (shape {data.shape}); the model expects "
            f"{channels}"
        )
    norm = NORMALIZATION if normalization is None else normalization
    if getattr(norm, "kind", None) != "percentile" or not norm.per_channel:
        raise InputError(
            f"a detector normalizes each channel by its percentiles; the card gives {norm!r}"
        )
    return norm.apply(data, channel_axis=-1)


class Detector(Predictor):
    """A loaded detector: network, class names and the constants of its card.

    Use :meth:`load` (or :func:`cytolens.models.load`); :meth:`predict`
    returns a box table. From the card
    (:class:`~cytolens.models.schema.DetectParameters`): ``classes``,
    ``scale``, ``overlap``, ``min_score`` (the default threshold) and
    ``score_pivots``; ``in_channels`` from its network.

    Examples
    --------
    >>> det = Detector.load(device="cpu")
    >>> det.classes, det.scale, det.min_score
    (['RBC', 'WBC', 'Platelets'], 0.5, 0.7)
    """

    capability = "detect"

    def configure(self) -> None:
        """Read the card's detection parameters."""
        p = self.params
        self.classes: list[str] = list(p.classes)
        self.scale = float(p.scale)
        self.overlap = int(p.overlap)
        self.min_score = float(p.min_score)
        self.score_pivots: dict[str, float] | None = (
            None if p.score_pivots is None else dict(p.score_pivots)
        )
        self.in_channels = int(self.card.network["kwargs"]["in_channels"])
        if getattr(self.normalization, "kind", None) != "percentile" or not (
            self.normalization.per_channel
        ):
            raise ModelError(
                f"model card of {self.name!r}: a detector needs a per-channel percentile "
                "normalization (kind: percentile, per_channel: true)"
            )

    @classmethod
    def load(
        cls, model: str | os.PathLike[str] = DEFAULT_MODEL, *, device: Any = "auto"
    ) -> Detector:
        """Load a shipped model by name, or a model folder written by training.

        The one loader :func:`cytolens.models.load` (one cache, refreshed
        when the folder's weights change).

        Raises
        ------
        cytolens.core.errors.ModelError
            Unknown model, weights that fail their checksum or do not fit.

        Examples
        --------
        >>> Detector.load("detect-bccd-v1", device="cpu").in_channels
        3
        """
        from cytolens.models import load

        return load(model, device=device, capability="detect")

    @classmethod
    def from_network(cls, net: Any, card: Any, *, device: Any = "cpu") -> Detector:
        """A detector from a network in memory and its card (e.g. right after training).

        ``card.parameters`` must hold ``classes``, ``scale``, ``overlap`` and
        ``min_score``; ``score_pivots`` is optional (raw heatmap scores
        without it). Same as :meth:`from_card`.
        """
        return cls.from_card(net, card, device=device)

    def predict(
        self,
        image: Any,
        *,
        min_score: float | None = None,
        iou_threshold: float = 0.5,
        tile_size: int = 512,
        max_per_tile: int = 300,
        name: str = "image",
    ) -> pd.DataFrame:
        """Boxes of one image: ``class, xmin_px, ymin_px, xmax_px, ymax_px, score`` in input pixels.

        Parameters
        ----------
        image : array_like or Image
            ``(Y, X)``, ``(Y, X, C)`` or an ``Image`` (axes YX, YXC or CYX).
        min_score : float, optional
            Confidence threshold in [0, 1]; default the card's ``min_score``.
        iou_threshold : float
            Non-maximum suppression overlap in [0, 1].
        tile_size : int
            Tile side at network scale (>= 32).
        max_per_tile : int
            Most peaks decoded per tile (>= 1).
        name : str
            How the image is called in messages.

        Returns
        -------
        pandas.DataFrame

        Raises
        ------
        InputError
            An option out of range; an image of another dimensionality or
            number of channels than the model takes, or with NaN/inf values.
        """
        import torch

        from cytolens.core.tiling import iter_tiles
        from cytolens.detect.boxes import batched_nms

        if min_score is None:
            min_score = self.min_score
        if not 0 <= min_score <= 1:
            raise InputError(f"min_score must be in [0, 1], got {min_score!r}")
        if not 0 <= iou_threshold <= 1:
            raise InputError(f"iou_threshold must be in [0, 1], got {iou_threshold!r}")
        if int(tile_size) != tile_size or tile_size < 32:
            raise InputError(f"tile_size must be a whole number >= 32, got {tile_size!r}")
        if int(max_per_tile) != max_per_tile or max_per_tile < 1:
            raise InputError(f"max_per_tile must be a whole number >= 1, got {max_per_tile!r}")
        x = prepare_image(
            image, channels=self.in_channels, name=name, normalization=self.normalization
        )
        height, width = x.shape[1:]
        x = _rescale(x, self.scale)
        shape = x.shape[1:]
        halo = tuple(0 if n <= tile_size else self.overlap for n in shape)
        tiles = iter_tiles(shape, tile_size, halo)
        found = []
        with torch.inference_mode():
            for t in tiles:
                patch = x[(slice(None), *t.read)]
                boxes, scores, labels = self._decode(patch, min_score, max_per_tile)
                y0, x0 = t.read[0].start, t.read[1].start
                boxes[:, [0, 2]] += x0
                boxes[:, [1, 3]] += y0
                cy, cx = (boxes[:, 1] + boxes[:, 3]) / 2, (boxes[:, 0] + boxes[:, 2]) / 2
                own = (
                    (cy >= t.write[0].start) & (cy < t.write[0].stop)
                    & (cx >= t.write[1].start) & (cx < t.write[1].stop)
                )  # fmt: skip
                found.append((boxes[own], scores[own], labels[own]))
        boxes = torch.cat([f[0] for f in found])
        scores = torch.cat([f[1] for f in found])
        labels = torch.cat([f[2] for f in found])
        keep = batched_nms(boxes, scores, labels, iou_threshold)
        boxes = (boxes[keep] / self.scale).numpy()
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        boxes = boxes.round(1)
        # a box under one pixel wide or high (a barely trained network, or a box clipped
        # away at the border) is no object; NaN sizes fail the test too
        real = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
        if not real.all():
            logger.debug("%s: %d box(es) under 1 pixel dropped", name, int((~real).sum()))
        table = pd.DataFrame(
            {
                "class": [self.classes[i] for i in labels[keep].numpy()[real].tolist()],
                "xmin_px": boxes[real, 0],
                "ymin_px": boxes[real, 1],
                "xmax_px": boxes[real, 2],
                "ymax_px": boxes[real, 3],
                "score": scores[keep].numpy()[real].round(4),
            }
        )
        return table.sort_values("score", ascending=False, ignore_index=True)

    def features(
        self, image: Any, *, max_windows: int = FEATURE_WINDOWS, name: str = "image"
    ) -> np.ndarray:
        """Applicability features of one image: pooled activations of the deepest backbone stage.

        The image is prepared as :meth:`predict` prepares it (per-channel
        percentiles, the model's ``scale``); at most ``max_windows`` windows
        of :data:`FEATURE_WINDOW` px at the network's scale go through the
        network, and the per-channel mean and standard deviation of its
        last backbone stage, averaged over the windows, are the features.

        Returns
        -------
        numpy.ndarray of float64, shape (d,)

        Examples
        --------
        >>> det = Detector.load("detect-bccd-v1", device="cpu")
        >>> det.features(np.random.default_rng(0).random((64, 64, 3))).shape
        (256,)
        """
        import torch

        from cytolens.models.applicability import PooledFeatures, sample_windows

        x = prepare_image(
            image, channels=self.in_channels, name=name, normalization=self.normalization
        )
        x = _rescale(x, self.scale)
        deepest = f"stages.{len(self.network.stages) - 1}"
        with PooledFeatures(self.network, [deepest]) as pooled, torch.inference_mode():
            for window in sample_windows(x.shape[1:], FEATURE_WINDOW, max_windows):
                patch = x[(slice(None), *window)]
                ph, pw = -patch.shape[1] % 16, -patch.shape[2] % 16
                t = torch.from_numpy(np.pad(patch, ((0, 0), (0, ph), (0, pw)), mode="reflect"))
                self.network(t[None].to(self.device))
        return pooled.take().mean(0)

    def _decode(self, patch: np.ndarray, min_score: float, top_k: int) -> tuple[Any, Any, Any]:
        """Boxes (in patch pixels), scores and class indices of one patch."""
        import torch

        from cytolens.detect.network import STRIDE

        _c, h, w = patch.shape
        ph, pw = -h % 16, -w % 16
        t = torch.from_numpy(np.pad(patch, ((0, 0), (0, ph), (0, pw)), mode="reflect"))
        heat, size, offset = self.network(t[None].to(self.device))
        heat = torch.sigmoid(heat[0].float()).cpu()
        if self.score_pivots:
            for i, cls in enumerate(self.classes):
                if cls in self.score_pivots:
                    heat[i] = calibrate_score(heat[i], float(self.score_pivots[cls]))
        size, offset = size[0].float().cpu(), offset[0].float().cpu()
        peaks = heat * (heat == torch.nn.functional.max_pool2d(heat[None], 3, 1, 1)[0])
        scores, flat = peaks.reshape(-1).topk(min(top_k, peaks.numel()))
        keep = scores >= min_score
        scores, flat = scores[keep], flat[keep]
        n_pix = heat.shape[1] * heat.shape[2]
        labels, pix = flat // n_pix, flat % n_pix
        gy, gx = pix // heat.shape[2], pix % heat.shape[2]
        cx = (gx.float() + offset[0].reshape(-1)[pix]) * STRIDE
        cy = (gy.float() + offset[1].reshape(-1)[pix]) * STRIDE
        bw = torch.exp(size[0].reshape(-1)[pix])
        bh = torch.exp(size[1].reshape(-1)[pix])
        boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dim=1)
        inside = (cy < h) & (cx < w)  # peaks in the reflected padding are mirrors
        return boxes[inside], scores[inside], labels[inside]


def _rescale(x: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1:
        return x
    import torch

    t = torch.from_numpy(x)[None]
    size = [max(16, round(n * scale)) for n in x.shape[1:]]
    return torch.nn.functional.interpolate(t, size=size, mode="area" if scale < 1 else "bilinear")[
        0
    ].numpy()


def _load_cached(model: str, device: str) -> Detector:
    """Former cached loader: now :func:`cytolens.models.load` (one cache)."""
    return Detector.load(model, device=device)


_load_cached.cache_clear = lambda: None  # type: ignore[attr-defined]  # the cache is keyed on mtime


def detect(
    image: Any,
    *,
    model: str | os.PathLike[str] | Detector = DEFAULT_MODEL,
    min_score: float | None = None,
    iou_threshold: float = 0.5,
    device: Any = "auto",
) -> pd.DataFrame:
    """Detect objects: one row per box with its class and confidence.

    Parameters
    ----------
    image : array_like or Image
        ``(Y, X)``, ``(Y, X, C)`` or an ``Image``; any size (tiled).
    model : str, path or Detector
        A shipped model name, a folder written by ``cytolens detect train``,
        or a loaded :class:`Detector`.
    min_score : float, optional
        Boxes with a lower confidence are dropped (default: the model card's
        ``min_score``, 0.7 for ``detect-bccd-v1``).
    iou_threshold : float
        Boxes of one class overlapping more than this are merged (NMS).
    device : {"auto", "cpu", "cuda", "mps"}
        Where the network runs.

    Returns
    -------
    pandas.DataFrame
        Columns ``class, xmin_px, ymin_px, xmax_px, ymax_px, score`` (pixels of the input,
        ``xmax_px``/``ymax_px`` exclusive), sorted by decreasing score.

    Examples
    --------
    >>> from cytolens import data
    >>> boxes = detect(data.blood_smear().data, device="cpu")
    >>> list(boxes.columns)
    ['class', 'xmin_px', 'ymin_px', 'xmax_px', 'ymax_px', 'score']
    >>> bool((boxes["score"] >= 0.7).all())
    True
    """
    det = model if isinstance(model, Detector) else Detector.load(model, device=device)
    return det.predict(image, min_score=min_score, iou_threshold=iou_threshold)
