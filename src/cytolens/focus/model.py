"""The shipped focus-rating model: weights, normalization and calibrated constants.

:class:`FocusModel` wraps the network of :mod:`cytolens.focus.network` with
what its model card records: the percentile normalization it was trained
with, the levels that count as in focus, and the certainty below which a
patch is called blank. Everything is read from the package; nothing is
downloaded.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from cytolens.core.errors import InputError, ModelError
from cytolens.models.predictor import Predictor

__all__ = [
    "DEFAULT_MODEL",
    "MIN_PATCH_SIZE",
    "FocusModel",
    "certainty",
    "expected_level",
]

logger = logging.getLogger(__name__)

#: Name of the shipped focus model in :mod:`cytolens.models`.
DEFAULT_MODEL = "focus-miq-v1"
#: Most patches looked at for the applicability features, and the layers pooled: the first
#: block (texture, noise) and the third (structure); chosen on held-out images, where they
#: separate other sets better than the last block (benchmarks/trust.py).
FEATURE_PATCHES = 16
FEATURE_MODULES = ("features.2", "features.9")
#: Smallest accepted patch side in pixels.
MIN_PATCH_SIZE = 16


def certainty(probabilities: Any) -> np.ndarray:
    """Certainty of level distributions: 1 - entropy / log(number of levels).

    1 for all mass on one level, 0 for a flat (uniform) distribution, as in
    Yang et al. 2018.

    Parameters
    ----------
    probabilities : array_like
        ``(..., n_levels)`` non-negative rows that sum to 1.

    Examples
    --------
    >>> certainty([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]]).round(3)
    array([1., 0.])
    """
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 0, None)
    p = p / np.maximum(p.sum(axis=-1, keepdims=True), 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=-1)
    return np.clip(1.0 - ent / np.log(p.shape[-1]), 0.0, 1.0)


def expected_level(probabilities: Any) -> np.ndarray:
    """Mean level of distributions over levels ``0 .. n_levels - 1``.

    Examples
    --------
    >>> expected_level([[0.5, 0.5, 0.0]])
    array([0.5])
    """
    p = np.asarray(probabilities, dtype=np.float64)
    return p @ np.arange(p.shape[-1], dtype=np.float64)


class FocusModel(Predictor):
    """A loaded focus-rating network with its normalization and constants.

    Use :meth:`load` (or :func:`cytolens.models.load`); :meth:`predict` turns
    raw patches into level probabilities. Everything below comes from the
    model card (:class:`~cytolens.models.schema.FocusParameters`).

    Attributes
    ----------
    network : torch.nn.Module
        The network, in eval mode, on ``device`` (also ``net``).
    device : torch.device
        Where it runs.
    name : str
        Model name in the registry.
    normalizer : PercentileNormalization
        Percentile normalization applied per image before rating (the card's
        ``normalization``, also ``normalization``).
    n_levels : int
        Number of defocus levels.
    in_focus_levels : int
        Levels ``0 .. in_focus_levels - 1`` count as in focus.
    blank_certainty : float
        Patches rated with a certainty below this are reported as blank.
    patch_size : int
        Patch size the network was trained on.
    card : cytolens.models.ModelCard
        The model card.

    Examples
    --------
    >>> fm = FocusModel.load(device="cpu")
    >>> fm.n_levels, fm.in_focus_max_level, fm.patch_size
    (11, 2, 84)
    """

    capability = "focus"

    def configure(self) -> None:
        """Read the card's focus parameters; the normalization must be a percentile one."""
        from cytolens.models.schema import PercentileNormalization

        p = self.params
        self.n_levels: int = p.n_levels
        self.in_focus_levels: int = p.in_focus_levels
        self.blank_certainty: float = p.blank_certainty
        self.patch_size: int = p.patch_size
        if not isinstance(self.normalization, PercentileNormalization) or (
            self.normalization.per_channel
        ):
            raise ModelError(
                f"model card of {self.name!r}: a focus model needs a whole-image percentile "
                f"normalization, got {self.normalization!r}"
            )
        self.normalizer = self.normalization

    @classmethod
    def load(
        cls, name: str = DEFAULT_MODEL, *, device: Any = "auto", root: Any = None
    ) -> FocusModel:
        """Load a shipped model by name (:func:`cytolens.models.load`, one cache).

        Parameters
        ----------
        name : str
            Model name, e.g. ``"focus-miq-v1"``, or a model folder.
        device : {"auto", "cpu", "cuda", "mps"} or torch.device
            Where to run.
        root : path, optional
            Registry folder other than the package's (for tests and training).

        Raises
        ------
        cytolens.core.errors.ModelError
            For an unknown model, a model of another capability, or weights
            that fail their checksum.

        Examples
        --------
        >>> FocusModel.load("focus-miq-v1", device="cpu").name
        'focus-miq-v1'
        """
        from cytolens.models import load

        return load(name, device=device, root=root, capability="focus")

    @property
    def in_focus_max_level(self) -> int:
        """Highest level that counts as in focus."""
        return self.in_focus_levels - 1

    def predict(self, patches: Any, *, lo: float, hi: float, batch_size: int = 256) -> np.ndarray:
        """Level probabilities of a stack of raw patches.

        Parameters
        ----------
        patches : array_like
            ``(N, H, W)`` raw intensities.
        lo, hi : float
            The image's intensity percentiles ``normalizer.pmin`` and
            ``normalizer.pmax`` (``normalizer.limits(image)``); patches are
            scaled by ``(x - lo) / (hi - lo)`` (``normalizer.scale``).
        batch_size : int
            Patches per forward pass.

        Returns
        -------
        numpy.ndarray of float32
            ``(N, n_levels)`` probabilities.
        """
        import torch

        x = np.asarray(patches, dtype=np.float32)
        if x.ndim != 3:
            raise InputError(f"patches must be (N, H, W), got shape {x.shape}")
        x = self.normalization.scale(x, lo, hi)
        out = []
        with torch.inference_mode():
            for start in range(0, len(x), batch_size):
                t = torch.from_numpy(x[start : start + batch_size, None]).to(self.device)
                out.append(torch.softmax(self.network(t).float(), dim=1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.n_levels), np.float32)

    def features(self, image: Any, *, max_patches: int = FEATURE_PATCHES) -> np.ndarray:
        """Applicability features of one image: pooled activations of two conv blocks.

        At most ``max_patches`` patches of ``patch_size`` px, spread evenly
        over the image, are normalized with the whole image's percentiles
        (as :func:`~cytolens.focus.rate_focus` does) and go through the
        network; the per-channel mean and standard deviation of the blocks
        :data:`FEATURE_MODULES`, averaged over the patches, are the features.

        Returns
        -------
        numpy.ndarray of float64, shape (d,)

        Examples
        --------
        >>> fm = FocusModel.load("focus-miq-v1", device="cpu")
        >>> fm.features(np.random.default_rng(0).random((100, 100))).shape
        (72,)
        """
        from cytolens.focus.rate import _as_2d, _check_patch_size
        from cytolens.models.applicability import PooledFeatures, sample_windows

        arr = _as_2d(image)
        ps = _check_patch_size(self.patch_size, arr.shape, "image")
        lo, hi = self.normalizer.limits(arr)
        windows = sample_windows(
            (arr.shape[0] - arr.shape[0] % ps, arr.shape[1] - arr.shape[1] % ps), ps, max_patches
        )
        patches = np.stack([np.asarray(arr[w], dtype=np.float32) for w in windows])
        if not np.isfinite(patches).all():
            raise InputError("image has non-finite values (NaN or inf); replace them first")
        with PooledFeatures(self.network, FEATURE_MODULES) as pooled:
            self.predict(patches, lo=lo, hi=hi)
        return pooled.take().mean(0)


def _load_cached(name: str, device: str, root: str | None) -> FocusModel:
    """Former cached loader: now :func:`cytolens.models.load` (one cache)."""
    return FocusModel.load(name, device=device, root=root)
