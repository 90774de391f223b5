"""Is a model applicable to these images? A distance to its training data, calibrated.

Every shipped model describes its training domain by the pooled features of its
own network (or image statistics) on training images: their mean and a shrunk
covariance. An input's **Mahalanobis distance** to that domain is calibrated
against held-out images of the training domain, which the model never saw:

- ``domain_percentile``: the share (0-100) of held-out in-domain images lying
  closer to the domain than this input; 100 means farther than all of them.
- ``ood_score``: the distance divided by the in-domain limit (the
  ``quantile`` of the held-out distances, 0.99 by default): at most 1 inside
  the domain, above 1 outside, and it keeps growing with the distance (so it
  ranks inputs beyond the calibration range too).
- ``in_domain``: ``ood_score <= 1``.

The reference is stored beside the weights (``applicability.npz``) and named
in the card (``applicability`` entry: file, sha256, features, quantile,
calibration counts, measured separation).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> ref = DomainReference.fit(rng.normal(size=(200, 4)), rng.normal(size=(50, 4)))
>>> scores = ref.score(np.array([[0.0, 0, 0, 0], [9.0, 9, 9, 9]]))
>>> scores["in_domain"].tolist(), bool(scores["ood_score"][1] > 3)
([True, False], True)
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cytolens.core.errors import InputError, ModelError
from cytolens.core.files import atomic_path, sha256

__all__ = [
    "APPLICABILITY_FILE",
    "DomainReference",
    "OutOfDomainWarning",
    "PooledFeatures",
    "applicability_columns",
    "out_of_domain_note",
    "sample_windows",
    "score_input",
    "warn_out_of_domain",
]

APPLICABILITY_FILE = "applicability.npz"


class OutOfDomainWarning(UserWarning):
    """An input lies outside the domain a model was trained on."""


def _ledoit_wolf(x: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf shrunk covariance of centred rows ``x`` (n, d)."""
    n, d = x.shape
    emp = x.T @ x / n
    mu = np.trace(emp) / d
    delta = float(((emp - mu * np.eye(d)) ** 2).sum()) / d
    # sum_i ||x_i x_i^T - S||^2 = sum_i ||x_i||^4 - n ||S||^2
    beta = float(((x**2).sum(1) ** 2).sum() - n * (emp**2).sum()) / (n * n * d)
    shrink = 0.0 if delta == 0 else min(max(beta, 0.0), delta) / delta  # in [0, 1]
    return (1 - shrink) * emp + shrink * mu * np.eye(d)


@dataclass(frozen=True)
class DomainReference:
    """The training domain of a model in feature space, calibrated on held-out images.

    Attributes
    ----------
    mean : numpy.ndarray
        ``(d,)`` feature mean of the training images.
    whiten : numpy.ndarray
        ``(d, d)`` matrix ``W`` with ``||W (f - mean)||`` the Mahalanobis distance.
    calibration : numpy.ndarray
        Sorted distances of the held-out in-domain images.
    quantile : float
        Quantile of ``calibration`` taken as the in-domain limit.
    """

    mean: np.ndarray
    whiten: np.ndarray
    calibration: np.ndarray
    quantile: float = 0.99

    @classmethod
    def fit(
        cls,
        train_features: Any,
        calibration_features: Any,
        *,
        quantile: float = 0.99,
        max_components: int | None = 64,
    ) -> DomainReference:
        """Fit the domain on training features; calibrate on held-out in-domain features.

        Parameters
        ----------
        train_features : array-like, shape (n, d)
            Features of training images (at least 3).
        calibration_features : array-like, shape (m, d)
            Features of held-out images of the training domain (at least 3),
            never used for training the model.
        quantile : float
            Quantile of the held-out distances that bounds the domain.
        max_components : int or None
            Keep at most this many principal directions (the rest of the
            variance is folded into one isotropic term), which keeps the
            covariance well posed when ``d`` is near ``n``.

        Each feature is first divided by its spread over the training images,
        so features of different kinds and units weigh alike.

        Returns
        -------
        DomainReference

        Examples
        --------
        >>> import numpy as np
        >>> rng = np.random.default_rng(1)
        >>> ref = DomainReference.fit(rng.normal(size=(100, 3)), rng.normal(size=(30, 3)))
        >>> ref.whiten.shape, len(ref.calibration)
        ((3, 3), 30)
        """
        x = _features(train_features, "train_features")
        c = _features(calibration_features, "calibration_features", d=x.shape[1])
        if not 0.5 <= quantile < 1:
            raise InputError(f"quantile must be in [0.5, 1), got {quantile}")
        mean = x.mean(0)
        # each feature in units of its training spread, so features of different kinds
        # (activations, image statistics) weigh alike; folded into ``whiten`` below
        spread = x.std(0)
        spread = np.where(spread > 1e-12 * max(float(spread.max()), 1e-30), spread, 1.0)
        centred = (x - mean) / spread
        # principal directions, shrunk covariance in that basis
        k = min(x.shape[1], x.shape[0] - 1, max_components or x.shape[1])
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        basis = vt[:k]  # (k, d)
        proj = centred @ basis.T
        cov = _ledoit_wolf(proj)
        evals, evecs = np.linalg.eigh(cov)
        floor = max(float(evals.max()) * 1e-6, 1e-12)
        w = (evecs / np.sqrt(np.maximum(evals, floor))).T @ basis  # (k, d)
        resid = centred - proj @ basis
        resid_var = float((resid**2).sum(1).mean())
        if resid_var > 1e-12 * max(float((centred**2).sum(1).mean()), 1e-30):
            # the variance outside the kept directions, as one isotropic term
            extra = np.eye(x.shape[1]) - basis.T @ basis
            w = np.vstack([w, extra / np.sqrt(resid_var / max(1, x.shape[1] - k))])
        w = w / spread  # whiten raw features: W diag(1 / spread)
        ref = cls(mean, w, np.zeros(0), quantile)
        calib = np.sort(ref.distance(c))
        return cls(mean, w, calib, quantile)

    @property
    def limit(self) -> float:
        """The in-domain limit: the ``quantile`` of the held-out distances."""
        return float(np.quantile(self.calibration, self.quantile))

    def distance(self, features: Any) -> np.ndarray:
        """Mahalanobis distance ``(n,)`` of feature rows to the training domain."""
        f = _features(features, "features", d=self.mean.shape[0], least=1)
        return np.linalg.norm((f - self.mean) @ self.whiten.T, axis=1)

    def score(self, features: Any) -> dict[str, np.ndarray]:
        """``ood_score``, ``domain_percentile`` and ``in_domain`` per feature row.

        Examples
        --------
        >>> import numpy as np
        >>> ref = DomainReference.fit(np.random.default_rng(2).normal(size=(80, 2)),
        ...                           np.random.default_rng(3).normal(size=(40, 2)))
        >>> s = ref.score(np.zeros((1, 2)))
        >>> sorted(s), float(s["domain_percentile"][0]) < 20
        (['domain_percentile', 'in_domain', 'ood_score'], True)
        """
        d = self.distance(features)
        score = d / max(self.limit, 1e-12)
        pct = 100.0 * np.searchsorted(self.calibration, d, side="right") / len(self.calibration)
        return {"ood_score": score, "domain_percentile": pct, "in_domain": score <= 1.0}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the reference as ``.npz`` (atomically)."""
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh,
                mean=self.mean,
                whiten=self.whiten,
                calibration=self.calibration,
                quantile=np.float64(self.quantile),
            )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, expected_sha256: str = "") -> DomainReference:
        """Read a reference written by :meth:`save`, checking its sha256 when given."""
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"applicability reference {path} is missing")
        if expected_sha256 and sha256(path) != expected_sha256:
            raise ModelError(f"applicability reference {path} fails its sha256 check")
        try:
            with np.load(path) as z:
                return cls(z["mean"], z["whiten"], np.sort(z["calibration"]), float(z["quantile"]))
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"applicability reference {path} cannot be read ({exc})") from None

    def card_entry(self, path: Path, features: str, **measured: Any) -> dict[str, Any]:
        """The card's ``applicability`` entry for this reference saved at ``path``."""
        return {
            "file": path.name,
            "sha256": sha256(path),
            "features": features,
            "quantile": self.quantile,
            "n_calibration": len(self.calibration),
            "limit": round(self.limit, 6),
            **measured,
        }


def _features(x: Any, what: str, d: int | None = None, least: int = 3) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1 and d is not None and a.shape[0] == d:
        a = a[None]
    if a.ndim != 2 or a.shape[0] < least or (d is not None and a.shape[1] != d):
        want = f"(n >= {least}, {d if d is not None else 'd'})"
        raise InputError(f"{what} must be a 2-D array of shape {want}, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise InputError(f"{what} holds NaN or inf")
    return a


class PooledFeatures:
    """Collect pooled activations of named modules of a network during its forward pass.

    Each module's output ``(N, C, *spatial)`` (or ``(N, C)``) is pooled over space to its
    per-channel mean and standard deviation; :meth:`take` returns ``(N, 2 * sum(C))``
    and clears what was collected. Use as a context manager around the
    predictor's normal forward pass, so the features cost no second pass.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU())
    >>> with PooledFeatures(net, ["0"]) as feats:
    ...     _ = net(torch.zeros(2, 1, 8, 8))
    >>> feats.take().shape
    (2, 8)
    """

    def __init__(self, network: Any, modules: Sequence[str]) -> None:
        named = dict(network.named_modules())
        missing = [m for m in modules if m not in named]
        if missing:
            raise ModelError(
                f"network has no module named {missing[0]!r} for applicability features"
            )
        self._modules = [named[m] for m in modules]
        self._handles: list[Any] = []
        self._batches: list[list[np.ndarray]] = []

    def _hook(self, index: int) -> Callable[..., None]:
        def hook(_module: Any, _inputs: Any, output: Any) -> None:
            y = output.detach().float()
            y = y.flatten(2) if y.ndim > 2 else y[..., None]  # (N, C) outputs: no space
            pooled = np.concatenate(
                [y.mean(2).cpu().numpy(), y.std(2, unbiased=False).cpu().numpy()], axis=1
            )
            if index == 0:
                self._batches.append([])
            self._batches[-1].append(pooled)

        return hook

    def __enter__(self) -> PooledFeatures:
        self._handles = [
            m.register_forward_hook(self._hook(i)) for i, m in enumerate(self._modules)
        ]
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def take(self) -> np.ndarray:
        """Per-sample features of every forward pass since the last call, ``(N, F)``."""
        rows = [np.concatenate(parts, axis=1) for parts in self._batches]
        self._batches = []
        if not rows:
            return np.zeros((0, 0))
        return np.concatenate(rows, axis=0)


def sample_windows(
    shape: Sequence[int], side: int, max_windows: int = 4
) -> list[tuple[slice, slice]]:
    """At most ``max_windows`` windows of ``side`` px spread evenly over a ``(Y, X)`` shape.

    Applicability features look at a bounded number of windows, so scoring a
    large image costs about as much as scoring a small one. Deterministic:
    the windows lie on a regular grid from corner to corner, clipped to the
    image (one window, the whole image, when it is smaller than ``side``).

    Examples
    --------
    >>> [(y.start, y.stop, x.start, x.stop) for y, x in sample_windows((100, 300), 128, 4)]
    [(0, 100, 0, 128), (0, 100, 86, 214), (0, 100, 172, 300)]
    >>> [(y.start, x.start) for y, x in sample_windows((4096, 4096), 256, 4)]
    [(0, 0), (0, 3840), (3840, 0), (3840, 3840)]
    """
    h, w = int(shape[0]), int(shape[1])
    ny = max(1, min(-(-h // side), math.ceil(math.sqrt(max_windows))))
    nx = max(1, min(-(-w // side), max_windows // ny))

    def starts(n: int, size: int) -> list[int]:
        last = max(size - side, 0)
        return [round(i * last / (n - 1)) for i in range(n)] if n > 1 else [last // 2]

    return [
        (slice(y, min(y + side, h)), slice(x, min(x + side, w)))
        for y in starts(ny, h)
        for x in starts(nx, w)
    ]


def applicability_columns(scores: dict[str, np.ndarray], index: int = 0) -> dict[str, Any]:
    """Table columns of one input's scores (``ood_score``, ``domain_percentile``, ``in_domain``).

    Examples
    --------
    >>> applicability_columns({"ood_score": np.array([1.5]), "domain_percentile": np.array([100.0]),
    ...                        "in_domain": np.array([False])})
    {'ood_score': 1.5, 'domain_percentile': 100.0, 'in_domain': False}
    """
    return {
        "ood_score": round(float(scores["ood_score"][index]), 4),
        "domain_percentile": round(float(scores["domain_percentile"][index]), 1),
        "in_domain": bool(scores["in_domain"][index]),
    }


def warn_out_of_domain(
    model: str, what: str, ood_score: float, *, stacklevel: int = 2
) -> str | None:
    """Warn (:class:`OutOfDomainWarning`) when ``ood_score > 1``; return the message, else None.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     msg = warn_out_of_domain("nuclei-v1", "cells.tif", 2.5)
    >>> msg.startswith("cells.tif is outside"), len(w)
    (True, 1)
    """
    if not ood_score > 1.0:
        return None
    message = (
        f"{what} is outside the training domain of {model} (ood_score {ood_score:.2f} > 1: "
        "farther from its training images than 99 % of held-out in-domain images); "
        "its results may be wrong: check them, or use a model trained on images like these"
    )
    warnings.warn(message, OutOfDomainWarning, stacklevel=stacklevel + 1)
    return message


def score_input(
    predictor: Any, image: Any, what: str, *, warn: bool = True, **kwargs: Any
) -> dict[str, Any]:
    """Applicability columns of one input of a loaded predictor (``{}`` without a reference).

    Parameters
    ----------
    predictor : cytolens.models.predictor.Predictor
        A loaded model.
    image : array-like
        The input, as the predictor takes it.
    what : str
        How the input is named in the warning (a file name).
    warn : bool
        Warn (:class:`OutOfDomainWarning`) when the input is out of domain.
    **kwargs
        Passed to the predictor's ``features`` (e.g. ``diameter``).

    Returns
    -------
    dict
        ``ood_score``, ``domain_percentile``, ``in_domain``; empty for a
        model that ships no reference (its card has no ``applicability``).

    Examples
    --------
    >>> import numpy as np
    >>> from cytolens.models import load
    >>> fm = load("focus-miq-v1", device="cpu")
    >>> sorted(score_input(fm, np.random.default_rng(0).random((90, 90)), "x", warn=False))
    ['domain_percentile', 'in_domain', 'ood_score']
    """
    if not predictor.has_domain:
        return {}
    columns = predictor.applicability(image, **kwargs)
    if warn:
        warn_out_of_domain(predictor.name, what, columns["ood_score"], stacklevel=2)
    return columns


def out_of_domain_note(
    rows: Sequence[dict[str, Any]], model: str, *, key: str = "image"
) -> str | None:
    """One line naming the inputs (rows with ``in_domain`` False) outside ``model``'s domain.

    For tables, reports and the console; None when every row is in domain
    or has no applicability columns.

    Examples
    --------
    >>> note = out_of_domain_note([{"image": "a.tif", "in_domain": True},
    ...     {"image": "b.tif", "in_domain": False, "ood_score": 3.2}], "nuclei-v1")
    >>> note.split(":")[:2]
    ['warning', ' 1 of 2 image(s) lie outside the training domain of nuclei-v1 (ood_score > 1)']
    >>> out_of_domain_note([{"image": "a.tif"}], "nuclei-v1") is None
    True
    """
    scored = [r for r in rows if r.get("in_domain") is not None]
    out = [r for r in scored if not r["in_domain"]]
    if not out:
        return None
    shown = ", ".join(
        f"{r.get(key)} ({float(r.get('ood_score', float('nan'))):.2g})" for r in out[:5]
    )
    more = f" and {len(out) - 5} more" if len(out) > 5 else ""
    return (
        f"warning: {len(out)} of {len(scored)} image(s) lie outside the training domain of "
        f"{model} (ood_score > 1): {shown}{more}; check their results, or use a model trained "
        "on images like these"
    )
