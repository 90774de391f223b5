"""The phenotype classifier: a network with its card; per-crop classes, calibrated
probabilities, embeddings and applicability; per-cell prediction on segmented images.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from cytolens.core.errors import InputError
from cytolens.models.predictor import Predictor

__all__ = ["DEFAULT_MODEL", "PhenotypeClassifier", "phenotype_counts", "predict_cells"]

logger = logging.getLogger(__name__)

#: The shipped MitoCheck phenotype model.
DEFAULT_MODEL = "mitocheck-v1"
#: Crops per forward pass.
BATCH = 256


def resize_crops(x: np.ndarray, size: int) -> np.ndarray:
    """Square crops ``(N, C, s, s)`` resized to ``(N, C, size, size)`` (area averaging or bilinear).

    Examples
    --------
    >>> resize_crops(np.ones((2, 1, 64, 64), np.float32), 32).shape
    (2, 1, 32, 32)
    """
    if x.shape[-1] == size and x.shape[-2] == size:
        return np.asarray(x, np.float32)
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    mode = "area" if x.shape[-1] >= size else "bilinear"
    kw = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(t, size=(size, size), mode=mode, **kw).numpy()


def normalize_crops(crops: np.ndarray, normalization: Any) -> np.ndarray:
    """Each crop ``(C, Y, X)`` scaled as a card's normalization says (float32).

    Dtype-range scaling acts on the whole batch; percentile normalization on
    each crop and channel.

    Examples
    --------
    >>> from cytolens.models.schema import DtypeRangeNormalization
    >>> normalize_crops(np.full((1, 1, 2, 2), 255, np.uint8), DtypeRangeNormalization()).max()
    np.float32(1.0)
    """
    if normalization.kind == "dtype_range":
        return np.asarray(normalization.apply(crops, name="crops"), np.float32)
    return np.stack(
        [np.asarray(normalization.apply(c, channel_axis=0), np.float32) for c in crops]
    ).reshape(crops.shape)


def as_crops(crops: Any, in_channels: int, *, name: str = "crops") -> np.ndarray:
    """``(N, C, Y, X)`` from ``(N, Y, X)`` (one channel) or ``(N, C, Y, X)``, checked.

    Examples
    --------
    >>> as_crops(np.zeros((3, 8, 8)), 1).shape
    (3, 1, 8, 8)
    """
    a = np.asarray(crops)
    if a.ndim == 3 and in_channels == 1:
        a = a[:, None]
    if a.ndim != 4 or a.shape[1] != in_channels or a.shape[2] != a.shape[3]:
        raise InputError(
            f"{name}: expected square crops of shape (N, {in_channels}, S, S)"
            + (" or (N, S, S)" if in_channels == 1 else "")
            + f", got {a.shape}"
        )
    return a


class PhenotypeClassifier(Predictor):
    """A cell phenotype network (:class:`~cytolens.phenotype.network.PhenotypeNet`) with its card.

    Parameters
    ----------
    network : torch.nn.Module
        The network, weights loaded.
    card : cytolens.models.ModelCard
        ``parameters`` (:class:`~cytolens.models.schema.PhenotypeParameters`):
        ``class_names``, ``crop_size``, ``input_size``, ``in_channels``,
        ``temperature``, ``features`` (classical features a hybrid head reads
        beside the embedding), ``tta_views`` (dihedral views averaged);
        ``normalization``: how crops are scaled.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.

    Examples
    --------
    >>> m = PhenotypeClassifier.load("mitocheck-v1", device="cpu")
    >>> m.crop_size, m.input_size, len(m.class_names)
    (64, 32, 16)
    """

    capability = "phenotype"

    def configure(self) -> None:
        """Read the card's parameters."""
        p = self.params
        self.class_names = tuple(p.class_names)
        self.crop_size = int(p.crop_size)
        self.input_size = int(p.input_size)
        self.in_channels = int(p.in_channels)
        self.temperature = float(p.temperature)
        self.feature_names = tuple(p.features)
        self.tta_views = int(p.tta_views)

    @classmethod
    def load(
        cls, name: Any = DEFAULT_MODEL, *, device: Any = "auto", root: Any = None
    ) -> PhenotypeClassifier:
        """Load a shipped model by name, or a model folder (:func:`cytolens.models.load`)."""
        from cytolens.models import load

        return load(name, device=device, root=root, capability="phenotype")

    def prepare(self, crops: Any) -> np.ndarray:
        """Crops normalized and resized for the network, ``(N, C, input_size, input_size)``."""
        a = as_crops(crops, self.in_channels)
        if a.shape[-1] != self.crop_size:
            logger.info("crops of %d px resized as %d px crops are", a.shape[-1], self.crop_size)
        return resize_crops(normalize_crops(a, self.normalization), self.input_size)

    def _embed_prepared(self, x: np.ndarray) -> np.ndarray:
        """Embeddings of prepared crops, averaged over ``tta_views`` dihedral views."""
        import torch

        from cytolens.phenotype.augment import dihedral_views

        outs = []
        with torch.inference_mode():
            for i in range(0, len(x), BATCH):
                t = torch.from_numpy(np.ascontiguousarray(x[i : i + BATCH])).to(self.device)
                views = dihedral_views(t)[: self.tta_views]
                e = torch.stack([self.network.embed(v) for v in views]).mean(0)
                outs.append(e.float().cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, self.network.encoder.dim), np.float32)

    def classical(self, crops: Any) -> np.ndarray | None:
        """Classical features the head reads, ``(N, len(features))``; None: no hybrid head."""
        if not self.feature_names:
            return None
        from cytolens.explore.features import classical_features

        a = as_crops(crops, self.in_channels)
        if not len(a):
            return np.zeros((0, len(self.feature_names)), np.float32)
        table = classical_features(a)
        missing = [f for f in self.feature_names if f not in table.columns]
        if missing:
            raise InputError(
                f"model {self.name!r} reads classical feature {missing[0]!r}, "
                f"which these crops do not have (channels: {self.in_channels})"
            )
        return table[list(self.feature_names)].to_numpy(np.float32)

    def head_logits(self, embedding: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
        """Raw logits ``(N, K)`` of embeddings (and classical features, for a hybrid head)."""
        import torch

        with torch.inference_mode():
            e = torch.from_numpy(np.ascontiguousarray(embedding, np.float32)).to(self.device)
            f = None if features is None else torch.from_numpy(np.array(features, np.float32))
            return self.network.classify(e, f).float().cpu().numpy()

    def logits(self, crops: Any) -> np.ndarray:
        """Raw logits ``(N, K)``: the head on the embedding (and classical features)."""
        a = as_crops(crops, self.in_channels)
        return self.head_logits(self.embed(a), self.classical(a))

    def embed(self, crops: Any) -> np.ndarray:
        """The pooled encoder embedding ``(N, dim)`` of each crop (averaged over ``tta_views``)."""
        return self._embed_prepared(self.prepare(crops))

    def features(self, image: Any, **kwargs: Any) -> np.ndarray:
        """Applicability features: the embedding of one crop ``(C, Y, X)`` or ``(Y, X)``."""
        a = np.asarray(image)
        return self.embed(a[None] if a.ndim in (2, 3) else a)[0]

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities: ``softmax(logits / temperature)``."""
        z = np.asarray(logits, np.float64) / self.temperature
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, crops: Any, *, what: str = "crops", warn: bool = True) -> pd.DataFrame:
        """Class, confidence, probabilities and applicability of each crop.

        Parameters
        ----------
        crops : array_like
            ``(N, C, S, S)`` or ``(N, S, S)`` crops, in the dtype read.
        what : str
            Named in the out-of-domain warning.
        warn : bool
            Warn (:class:`~cytolens.models.applicability.OutOfDomainWarning`)
            when crops lie outside the training domain.

        Returns
        -------
        pandas.DataFrame
            One row per crop: ``phenotype``, ``confidence``, ``p_<class>``
            (calibrated), ``ood_score``, ``domain_percentile``, ``in_domain``
            (absent for a model without an applicability reference).
        """
        a = as_crops(crops, self.in_channels)
        emb = self.embed(a)
        p = self.probabilities(self.head_logits(emb, self.classical(a)))
        table = pd.DataFrame(
            {
                "phenotype": [self.class_names[i] for i in p.argmax(axis=1)],
                "confidence": p.max(axis=1) if len(p) else np.zeros(0),
            }
        )
        for j, c in enumerate(self.class_names):
            table[f"p_{c}"] = p[:, j]
        if self.has_domain and len(p):
            from cytolens.models.applicability import warn_out_of_domain

            s = self.domain().score(emb)
            table["ood_score"] = np.round(s["ood_score"], 4)
            table["domain_percentile"] = np.round(s["domain_percentile"], 1)
            table["in_domain"] = s["in_domain"]
            out = ~s["in_domain"]
            if warn and out.mean() > 0.5:
                warn_out_of_domain(
                    self.name,
                    f"{what} ({out.sum()} of {len(out)} crops)",
                    float(np.median(s["ood_score"])),
                )
        return table


@functools.lru_cache(maxsize=4)
def _cached(model: str, device: str) -> PhenotypeClassifier:
    return PhenotypeClassifier.load(model, device=device)


def _resolve(model: Any, device: str) -> PhenotypeClassifier:
    if isinstance(model, PhenotypeClassifier):
        return model
    return _cached(str(model), device)


def predict_cells(
    images: Any,
    labels: Any = None,
    *,
    model: Any = DEFAULT_MODEL,
    axes: str = "YX",
    crop_size: int | None = None,
    device: str = "auto",
    name: str = "image",
) -> pd.DataFrame:
    """Phenotype of every cell: of crops, or of each object of a segmented image.

    Parameters
    ----------
    images : array_like
        Crops ``(N, C, S, S)`` / ``(N, S, S)`` when ``labels`` is None;
        otherwise one image (``YX`` or ``CYX``, numpy or Dask).
    labels : array_like of int, optional
        Label image of ``images`` (e.g. from :func:`cytolens.segment.nuclei`):
        a crop of ``crop_size`` is cut around each object (padded at borders).
    model : str or PhenotypeClassifier
        Shipped model name, model folder or a loaded classifier.
    axes : str
        Axes of the image (with ``labels``).
    crop_size : int, optional
        Crop side (default: the model's ``crop_size``).
    device : str
        Where the network runs.
    name : str
        Named in messages and warnings.

    Returns
    -------
    pandas.DataFrame
        One row per cell: with ``labels``, ``label``, ``centroid_y``,
        ``centroid_x``, ``area_px``, ``touches_border``; then ``phenotype``,
        ``confidence``, ``p_<class>`` and the applicability columns.

    Examples
    --------
    >>> img = np.zeros((80, 80), np.uint8); lab = np.zeros((80, 80), np.int32)
    >>> img[20:34, 20:36] = 120; lab[20:34, 20:36] = 1
    >>> t = predict_cells(img, lab, device="cpu")
    >>> t["label"].tolist(), t["phenotype"].iloc[0] in PhenotypeClassifier.load().class_names
    ([1], True)
    """
    m = _resolve(model, device)
    if labels is None:
        return m.predict(images, what=name)
    from cytolens.phenotype.crops import cell_crops

    crops, table = cell_crops(
        images, labels, axes=axes, size=int(crop_size or m.crop_size), name=name
    )
    if not len(table):
        return table.assign(phenotype=pd.Series(dtype=str), confidence=pd.Series(dtype=float))
    return pd.concat([table, m.predict(crops, what=name)], axis=1)


def phenotype_counts(table: pd.DataFrame, by: str | Sequence[str] = "image") -> pd.DataFrame:
    """Cells per phenotype per image (or well, plate...), with fractions.

    Parameters
    ----------
    table : pandas.DataFrame
        Per-cell table with a ``phenotype`` column and the ``by`` column(s).
    by : str or sequence of str
        Grouping column(s).

    Returns
    -------
    pandas.DataFrame
        One row per group: ``cells``, ``n_<class>`` and ``fraction_<class>``.

    Examples
    --------
    >>> t = pd.DataFrame({"image": ["a", "a", "b"], "phenotype": ["x", "y", "x"]})
    >>> phenotype_counts(t)[["image", "cells", "n_x", "fraction_y"]].values.tolist()
    [['a', 2, 1, 0.5], ['b', 1, 1, 0.0]]
    """
    keys = [by] if isinstance(by, str) else list(by)
    missing = [k for k in [*keys, "phenotype"] if k not in table.columns]
    if missing:
        raise InputError(f"cell table has no column {missing[0]!r}")
    counts = pd.crosstab([table[k] for k in keys], table["phenotype"])
    out = counts.add_prefix("n_")
    total = counts.sum(axis=1)
    out.insert(0, "cells", total)
    fractions = counts.div(total, axis=0).add_prefix("fraction_")
    return pd.concat([out, fractions], axis=1).reset_index().rename_axis(columns=None)
