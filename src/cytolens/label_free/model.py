"""Label-free prediction: :class:`LabelFreeModel` and :func:`predict`.

For one field:

1. the transmitted-light stack ``(Z, Y, X)`` is checked against the model
   (number of planes) and scaled by its own percentiles (one pair for the
   whole stack, taken on a bounded sample, so tiles share one scale);
2. the network predicts, tile by tile (:func:`cytolens.core.tiling.apply_tiled`,
   overlap + linear blending, bounded memory), a mean and a standard
   deviation per pixel and target;
3. applicability: the network's pooled bottleneck activations on up to 16
   windows of ``feature_tile`` px are scored against the training domain
   (:mod:`cytolens.models.applicability`); the median over the windows is the
   image's ``ood_score``, and an :class:`~cytolens.models.applicability.OutOfDomainWarning`
   is raised above 1.

The predicted channels are in the units the model was trained in: each
target scaled by its (1, 99.8) percentiles on the training field, so 0 is
background and 1 bright stain (see the card's ``training.target_units``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from cytolens.core.errors import InputError
from cytolens.core.image import Image
from cytolens.models.predictor import Predictor

__all__ = ["DEFAULT_MODEL", "LabelFreeModel", "predict"]

logger = logging.getLogger(__name__)

#: The shipped label-free model.
DEFAULT_MODEL = "isl-v1"
#: Most windows the applicability features are pooled over, per image.
MAX_FEATURE_TILES = 16


def as_stack(stack: Any, axes: str | None, n_planes: int, model: str) -> tuple[Any, Image | None]:
    """The input as ``(Z, Y, X)`` (numpy or Dask, not copied) and its ``Image`` if it was one.

    Examples
    --------
    >>> as_stack(np.zeros((4, 5, 2)), "YXZ", 2, "m")[0].shape
    (2, 4, 5)
    >>> as_stack(np.zeros((4, 5)), None, 2, "m")
    Traceback (most recent call last):
    ...
    cytolens.core.errors.InputError: a single 4x5 plane was given; model 'm' needs a stack ...
    """
    from cytolens.core.axes import check_axes, move_axes

    image = stack if isinstance(stack, Image) else None
    if image is not None:
        data, found = image.data, image.axes
        if axes is not None:
            found = check_axes(axes, data.shape)
    else:
        data = stack if hasattr(stack, "ndim") and hasattr(stack, "dtype") else np.asarray(stack)
        found = axes or {2: "YX", 3: "ZYX"}.get(data.ndim, "")
        if not found:
            raise InputError(
                f"stack has shape {tuple(data.shape)}; give axes (e.g. 'ZYX') for a "
                f"{data.ndim}-D array"
            )
        found = check_axes(found, data.shape)
    drop = [i for i, a in enumerate(found) if a in "TC" + "Z" and data.shape[i] == 1]
    planes_axis = [a for a in found if a in "ZC" and data.shape[found.index(a)] > 1]
    if len(planes_axis) > 1:
        raise InputError(
            f"stack has axes {found!r} with both Z and C longer than 1; give one stack of "
            "transmitted-light planes (axes 'ZYX' or 'CYX')"
        )
    if "T" in found and data.shape[found.index("T")] > 1:
        raise InputError(f"stack has {data.shape[found.index('T')]} time points; give one")
    if not planes_axis:
        if n_planes == 1:
            keep = [i for i in range(data.ndim) if i not in drop]
            sub = "".join(found[i] for i in keep)
            data = data[tuple(0 if i in drop else slice(None) for i in range(data.ndim))]
            return data.transpose(move_axes(sub, "YX"))[None], image
        h, w = data.shape[found.index("Y")], data.shape[found.index("X")]
        raise InputError(
            f"a single {h}x{w} plane was given; model {model!r} needs a stack of {n_planes} "
            "transmitted-light planes (axes 'ZYX')"
        )
    plane = planes_axis[0]
    index = tuple(0 if (i in drop and found[i] != plane) else slice(None) for i in range(data.ndim))
    data = data[index]
    sub = "".join(a for i, a in enumerate(found) if not (i in drop and a != plane))
    data = data.transpose(move_axes(sub, plane + "YX"))
    if data.shape[0] != n_planes:
        raise InputError(
            f"stack has {data.shape[0]} planes along {plane}; model {model!r} was trained on "
            f"{n_planes} transmitted-light planes"
        )
    return data, image


class LabelFreeModel(Predictor):
    """A label-free model: fluorescence channels (and their uncertainty) from transmitted light.

    Parameters
    ----------
    network : torch.nn.Module
        :class:`~cytolens.label_free.network.LabelFreeNet`, weights loaded.
    card : cytolens.models.ModelCard
        Its card; ``parameters``
        (:class:`~cytolens.models.schema.LabelFreeParameters`) holds the target
        names, the number of planes, the tile overlap and the applicability
        feature settings.
    device : str or torch.device

    Examples
    --------
    >>> m = LabelFreeModel.from_pretrained("isl-v1", device="cpu")
    >>> m.targets, m.n_planes
    (['dapi', 'map2', 'nfh'], 13)
    """

    capability = "label_free"

    def configure(self) -> None:
        """Read the card's parameters."""
        p = self.params
        self.targets = list(p.targets)
        self.n_planes = int(p.n_planes)
        self.overlap = int(p.tile_overlap)
        self.reference: Any = None  # a DomainReference in memory (right after training)

    @classmethod
    def from_pretrained(
        cls, name: str = DEFAULT_MODEL, *, device: Any = "auto", root: Any = None
    ) -> LabelFreeModel:
        """Load a shipped model by name or folder (:func:`cytolens.models.load`, one cache)."""
        from cytolens.models import load

        return load(name, device=device, root=root, capability="label_free")

    # ---------------------------------------------------------------- network
    def _forward(self, x: np.ndarray) -> np.ndarray:
        """``(2T, h, w)`` float32: means then standard deviations of a normalized ``(Z, h, w)``."""
        import torch

        div = self.network.divisor
        h, w = x.shape[-2:]
        pad = ((0, 0), (0, -h % div), (0, -w % div))
        t = torch.from_numpy(np.pad(x, pad, mode="symmetric")[None]).to(self.device)
        k = len(self.targets)
        with torch.inference_mode():
            y = self.network(t)[0, :, :h, :w].float()
            y = torch.cat([y[:k], y[k:].clamp(-7.0, 3.0).exp()])
        return y.cpu().numpy()

    def limits(self, stack: Any) -> tuple[float, float]:
        """The stack's normalization percentiles (bounded sample; works on Dask)."""
        return self.normalization.limits(stack)

    def predict_maps(
        self,
        stack: Any,
        *,
        tile_shape: int = 512,
        progress: Any = False,
        limits: tuple[float, float] | None = None,
    ) -> np.ndarray:
        """Means and standard deviations ``(2T, Y, X)`` of a raw ``(Z, Y, X)`` stack, tiled.

        The stack (numpy, memmap or Dask) is read one tile (all planes) at a time.
        """
        from cytolens.core.tiling import apply_tiled

        lo, hi = limits if limits is not None else self.limits(stack)
        h, w = stack.shape[-2:]
        # The tiling engine cuts a 2-D map of pixel indices; each tile of it names the
        # region of the stack to read (all planes at once), which the engine cannot cut
        # itself as the output has other channels than the input.
        index = np.arange(h * w, dtype=np.int64).reshape(h, w)

        def run(tile: np.ndarray) -> np.ndarray:
            y0, x0 = divmod(int(tile[0, 0]), w)
            th, tw = tile.shape
            region = np.asarray(stack[:, y0 : y0 + th, x0 : x0 + tw])
            return self._forward(self.normalization.scale(region, lo, hi))

        if tile_shape is not None and tile_shape <= 2 * self.overlap:
            raise InputError(
                f"tile_shape {tile_shape} is too small for model {self.name!r}: tiles overlap "
                f"by {self.overlap} px on each side; give at least {2 * self.overlap + 1}"
            )
        return apply_tiled(
            run,
            index,
            tile_shape=tile_shape,
            overlap=self.overlap,
            blend="linear",
            dtype=np.float32,
            progress=progress,
        )

    # ---------------------------------------------------------------- applicability
    def tile_features(self, normalized_tiles: list[np.ndarray]) -> np.ndarray:
        """Pooled features ``(n, d)`` of normalized ``(Z, t, t)`` windows."""
        import torch

        from cytolens.models.applicability import PooledFeatures

        if not normalized_tiles:
            return np.zeros((0, 0))
        x = torch.from_numpy(np.stack(normalized_tiles).astype(np.float32)).to(self.device)
        with PooledFeatures(self.network, self.params.feature_modules) as feats:
            with torch.inference_mode():
                for start in range(0, len(x), 8):
                    self.network(x[start : start + 8])
            return feats.take()

    def feature_windows(self, shape: tuple[int, ...]) -> list[tuple[int, int]]:
        """Corners of at most :data:`MAX_FEATURE_TILES` evenly spaced windows of a field."""
        t = self.params.feature_tile
        h, w = shape[-2:]
        if h < t or w < t:
            raise InputError(
                f"the field is {h}x{w} px; model {self.name!r} needs at least {t}x{t} px"
            )
        n = int(np.sqrt(MAX_FEATURE_TILES))
        ys = np.unique(np.linspace(0, h - t, min(n, h // t)).astype(int))
        xs = np.unique(np.linspace(0, w - t, min(n, w // t)).astype(int))
        return [(int(y), int(x)) for y in ys for x in xs]

    def features(self, image: Any, *, limits: Any = None, **kwargs: Any) -> np.ndarray:
        """Pooled features ``(n_windows, d)`` of a raw stack (see :meth:`feature_windows`)."""
        stack, _ = as_stack(image, kwargs.get("axes"), self.n_planes, self.name)
        lo, hi = limits if limits is not None else self.limits(stack)
        t = self.params.feature_tile
        tiles = [
            self.normalization.scale(np.asarray(stack[:, y : y + t, x : x + t]), lo, hi)
            for y, x in self.feature_windows(stack.shape)
        ]
        return self.tile_features(tiles)

    def applicability(self, image: Any, **kwargs: Any) -> dict[str, Any]:
        """``ood_score``, ``domain_percentile``, ``in_domain``: medians over the field's windows.

        Examples
        --------
        >>> m = LabelFreeModel.from_pretrained("isl-v1", device="cpu")
        >>> rng = np.random.default_rng(0)
        >>> m.applicability(rng.random((13, 128, 128)))["in_domain"]
        False
        """
        reference = self.reference if self.reference is not None else self.domain()
        scores = reference.score(self.features(image, **kwargs))
        return {
            "ood_score": round(float(np.median(scores["ood_score"])), 4),
            "domain_percentile": round(float(np.median(scores["domain_percentile"])), 1),
            "in_domain": bool(np.median(scores["ood_score"]) <= 1.0),
        }

    @property
    def has_domain(self) -> bool:
        return self.reference is not None or super().has_domain

    # ---------------------------------------------------------------- predict
    def predict(
        self,
        stack: Any,
        *,
        axes: str | None = None,
        tile_shape: int = 512,
        uncertainty: bool = False,
        applicability: bool = True,
        progress: Any = False,
        name: str = "stack",
    ) -> Image | tuple[Image, Image]:
        """Predict the fluorescence channels of a stack; see :func:`predict`."""
        from cytolens.models.applicability import warn_out_of_domain

        data, image = as_stack(stack, axes, self.n_planes, self.name)
        if min(data.shape[-2:]) < 16:
            raise InputError(f"{name} is {data.shape[-2]}x{data.shape[-1]} px; need at least 16")
        limits = self.limits(data)
        maps = self.predict_maps(data, tile_shape=tile_shape, progress=progress, limits=limits)
        k = len(self.targets)
        sizes = {a: s for a, s in (image.pixel_size_um if image else {}).items() if a in "YX"}
        meta: dict[str, Any] = {"model": self.name, "units": "normalized target (card)"}
        if applicability and self.has_domain:
            found = self.applicability(data, limits=limits)
            meta["applicability"] = found
            message = warn_out_of_domain(self.name, name, found["ood_score"], stacklevel=3)
            if message:
                logger.warning(message)
        pred = Image(maps[:k], "CYX", sizes, channel_names=tuple(self.targets), metadata=meta)
        if not uncertainty:
            return pred
        names = tuple(f"{t}_sigma" for t in self.targets)
        return pred, Image(maps[k:], "CYX", sizes, channel_names=names, metadata=dict(meta))


def predict(
    stack: Any,
    *,
    model: str = DEFAULT_MODEL,
    axes: str | None = None,
    device: str = "auto",
    tile_shape: int = 512,
    uncertainty: bool = False,
    applicability: bool = True,
    progress: Any = False,
) -> Image | tuple[Image, Image]:
    """Predict fluorescence channels from a transmitted-light z-stack ("in silico labeling").

    Parameters
    ----------
    stack : array_like, dask.array.Array or cytolens.io.Image
        The transmitted-light planes: ``(Z, Y, X)``, or any axes given by
        ``axes`` or the ``Image`` (``"CYX"`` with planes as channels, singleton
        T allowed). A single plane ``(Y, X)`` only for a model trained on one
        plane. Any field size: the network runs tile by tile; NumPy memmaps
        and Dask arrays are read one tile at a time.
    model : str
        A shipped model's name or a model folder (:func:`cytolens.models.load`).
    axes : str, optional
        Axes of ``stack``, e.g. ``"ZYX"`` or ``"CYX"`` (default for 3-D arrays: ``"ZYX"``).
    device : {"auto", "cpu", "cuda", "mps"}
        Where the network runs.
    tile_shape : int
        Tile side in pixels (halo included); lower it to save memory.
    uncertainty : bool
        Also return the per-pixel standard deviation of each prediction.
    applicability : bool
        Score how far the input lies from the training data (in the result's
        ``metadata["applicability"]``: ``ood_score``, ``domain_percentile``,
        ``in_domain``) and warn (:class:`~cytolens.models.applicability.OutOfDomainWarning`)
        when it lies outside.
    progress : bool or callable
        Progress over tiles.

    Returns
    -------
    Image or (Image, Image)
        The predicted channels, axes ``"CYX"``, ``channel_names`` the card's
        targets (``dapi``, ``map2``, ``nfh`` for ``isl-v1``), float32 in the
        card's normalized target units (0 background, 1 bright stain); with
        ``uncertainty``, also their standard deviations (same units).

    Raises
    ------
    InputError
        A single plane when the model needs a stack, a stack with another
        number of planes than the model was trained on, ambiguous axes, a
        field smaller than the model's feature window (128 px for ``isl-v1``),
        tiles smaller than twice the overlap.
    ModelError
        An unknown model or damaged weights.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> stack = rng.integers(0, 60000, (13, 128, 128)).astype(np.uint16)
    >>> pred = predict(stack, device="cpu", applicability=False)
    >>> pred.channel_names, pred.shape
    (('dapi', 'map2', 'nfh'), (3, 128, 128))
    """
    return LabelFreeModel.from_pretrained(model, device=device).predict(
        stack,
        axes=axes,
        tile_shape=tile_shape,
        uncertainty=uncertainty,
        applicability=applicability,
        progress=progress,
    )


# ------------------------------------------------------------------ training helpers
def heldout_metrics(model: LabelFreeModel, fields: list[Any], targets: Any) -> dict[str, Any]:
    """Pearson r per target on each held-out block of prepared training fields.

    Each block is predicted with a context of the model's overlap around it (input
    pixels only; no target pixel outside the block is read).
    """
    from cytolens.label_free.train import pearson

    out: dict[str, Any] = {}
    for f in fields:
        stack = f.pair.stack
        h, w = stack.shape[-2:]
        for b, (y0, y1, x0, x1) in enumerate(f.pair.heldout):
            c = model.overlap
            ys, xs = slice(max(0, y0 - c), min(h, y1 + c)), slice(max(0, x0 - c), min(w, x1 + c))
            region = model.normalization.scale(np.asarray(stack[:, ys, xs]), f.lo, f.hi)
            pred = model._forward(region)[:, y0 - ys.start : y1 - ys.start, x0 - xs.start :]
            pred = pred[:, :, : x1 - x0]
            truth = np.asarray(f.pair.targets[:, y0:y1, x0:x1], np.float32)
            for i, t in enumerate(targets):
                key = (
                    f"pearson_{t}"
                    if (len(fields) == 1 and b == 0)
                    else (f"pearson_{t}_{f.pair.name}_block{b}")
                )
                out[key] = pearson(pred[i], truth[i])
    return out


def reference_features(
    model: LabelFreeModel, fields: list[Any], crop: int, margin: int
) -> tuple[np.ndarray, np.ndarray]:
    """Applicability features of training windows and of held-out windows (calibration)."""
    from cytolens.label_free.train import reference_tiles

    t = model.params.feature_tile
    train, calib = [], []
    for f in fields:
        shape = f.pair.stack.shape[1:]
        for heldout, acc in ((False, train), (True, calib)):
            corners = reference_tiles(shape, t, f.pair.heldout, margin, heldout=heldout)
            tiles = [
                model.normalization.scale(
                    np.asarray(f.pair.stack[:, y : y + t, x : x + t]), f.lo, f.hi
                )
                for y, x in corners
            ]
            if tiles:
                acc.append(model.tile_features(tiles))
    cat = lambda parts: np.concatenate(parts) if parts else np.zeros((0, 0))  # noqa: E731
    return cat(train), cat(calib)
