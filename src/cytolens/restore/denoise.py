"""Learned denoising (CARE-style supervised or Noise2Void-style self-supervised models).

:func:`denoise` runs a shipped or user-trained restoration model
(:class:`Restorer`, a compact residual U-Net,
:class:`~cytolens.restore.network.RestoreUNet`) tile by tile on images of any
size (numpy or Dask, CPU or GPU). Every result carries its applicability
(:mod:`cytolens.models.applicability`): the Mahalanobis distance of the
network's pooled encoder features on the input to those on the training
images, calibrated on held-out training-domain images (``ood_score``,
``domain_percentile``, ``in_domain``); an :class:`OutOfDomainWarning` is
issued when the input lies outside the domain, and when its dtype (bit
depth) differs from the training images'.

Intensities: the input is percentile-normalized as the card says (1 -> 99.8 %
by default, no clipping), restored, and mapped back to the input's range, so
the output is float32 on the input's intensity scale (the estimate of the
noise-free input).

Train a model with :func:`cytolens.restore.train_denoiser.train_denoiser` or
``cytolens restore train-denoiser``.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np

from cytolens.core.errors import InputError, ModelError
from cytolens.core.validate import is_dask
from cytolens.models.predictor import Predictor

__all__ = ["DEFAULT_DENOISER", "Restorer", "denoise"]

logger = logging.getLogger(__name__)

#: The shipped denoiser (W2S widefield fluorescence, single frames).
DEFAULT_DENOISER = "denoise-w2s-v1"
_SPATIAL = "YX"


class Restorer(Predictor):
    """A restoration network (denoiser or network deconvolution) with its card.

    Parameters
    ----------
    network : cytolens.restore.network.RestoreUNet
        Weights loaded.
    card : cytolens.models.ModelCard
        ``parameters``: :class:`~cytolens.models.schema.RestoreParameters`;
        ``normalization``: a whole-image percentile normalization.
    device : str or torch.device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.

    Examples
    --------
    >>> from cytolens.models import load
    >>> r = load("denoise-w2s-v1", device="cpu")
    >>> r.params.task, r.overlap
    ('denoise', 32)
    """

    capability = "restore"

    def configure(self) -> None:
        """Read the card's parameters; the normalization must be a whole-image percentile one."""
        from cytolens.models.schema import PercentileNormalization

        self.overlap = int(self.params.tile_overlap)
        if not isinstance(self.normalization, PercentileNormalization) or (
            self.normalization.per_channel
        ):
            raise ModelError(
                f"model card of {self.name!r}: a restoration model needs a whole-image "
                f"percentile normalization, got {self.normalization!r}"
            )

    # ------------------------------------------------------------------ inference
    def _forward(self, x: np.ndarray) -> np.ndarray:
        """Network on a batch ``(B, Y, X)`` of normalized tiles (padded to the divisor)."""
        import torch

        div = self.network.divisor
        h, w = x.shape[-2:]
        pad = ((0, 0), (0, -h % div), (0, -w % div))
        t = torch.from_numpy(np.pad(x, pad, mode="reflect" if min(h, w) > 1 else "edge"))
        with torch.inference_mode():
            y = self.network(t[:, None].to(self.device))[:, 0, :h, :w]
        return y.float().cpu().numpy()

    def restore_plane(
        self,
        plane: Any,
        *,
        limits: tuple[float, float] | None = None,
        tile_shape: Any = 512,
        progress: Any = False,
    ) -> Any:
        """Restore one ``(Y, X)`` plane (numpy or Dask), float32 on the input's scale.

        Parameters
        ----------
        plane : numpy.ndarray or dask.array.Array
            The plane.
        limits : (float, float), optional
            Normalization limits (default: the plane's percentiles).
        tile_shape : int or (int, int)
            Tile side in pixels, halo included (at least ``2 * overlap + 16``).
        progress : bool or callable
            See :func:`~cytolens.core.tiling.apply_tiled`.
        """
        from cytolens.core.tiling import apply_tiled

        lo, hi = limits if limits is not None else self.normalization.limits(plane)
        span = float(hi - lo) or 1.0
        norm = self.normalization

        def run(tile: np.ndarray) -> np.ndarray:
            x = norm.scale(tile, lo, lo + span)
            return self._forward(x[None])[0] * np.float32(span) + np.float32(lo)

        return apply_tiled(
            run,
            plane,
            tile_shape=tile_shape,
            overlap=self.overlap,
            blend="linear",
            dtype=np.float32,
            progress=progress,
        )

    def features(
        self, image: Any, *, limits: tuple[float, float] | None = None, pooled: bool = True
    ) -> np.ndarray:
        """Applicability features ``(d,)`` of one ``(Y, X)`` plane.

        The mean and standard deviation of the activations of the card's
        ``feature_modules``, pooled over at most 4 windows of
        ``feature_window`` px spread over the plane, and averaged (with
        ``pooled=False``: one row per window, ``(n_windows, d)``).

        Examples
        --------
        >>> from cytolens.models import load
        >>> r = load("denoise-w2s-v1", device="cpu")
        >>> r.features(np.random.default_rng(0).random((64, 64))).shape
        (160,)
        """
        from cytolens.models.applicability import PooledFeatures, sample_windows

        plane = image
        lo, hi = limits if limits is not None else self.normalization.limits(plane)
        side = int(self.params.feature_window)
        rows = []
        with PooledFeatures(self.network, list(self.params.feature_modules)) as hooks:
            for window in sample_windows(plane.shape[-2:], side, 4):
                crop = np.asarray(plane[window], dtype=np.float32)
                self._forward(self.normalization.scale(crop, lo, hi)[None])
                rows.append(hooks.take()[0])
        return np.mean(rows, axis=0) if pooled else np.stack(rows)

    def applicability(
        self, image: Any, *, limits: tuple[float, float] | None = None
    ) -> dict[str, Any]:
        """How far a ``(Y, X)`` plane lies from the training data, calibrated.

        Each window of :meth:`features` is scored against the reference (which
        is fitted and calibrated per window, so the score does not depend on
        the image size) and the window scores are averaged: ``ood_score`` (> 1:
        outside the domain), ``domain_percentile`` (0-100), ``in_domain``.

        Examples
        --------
        >>> from cytolens.models import load
        >>> r = load("denoise-w2s-v1", device="cpu")
        >>> sorted(r.applicability(np.random.default_rng(0).random((64, 64))))
        ['domain_percentile', 'in_domain', 'ood_score']
        """
        from cytolens.models.applicability import applicability_columns

        scores = self.domain().score(self.features(image, limits=limits, pooled=False))
        ood = float(np.mean(scores["ood_score"]))
        mean = {
            "ood_score": np.array([ood]),
            "domain_percentile": np.array([float(np.mean(scores["domain_percentile"]))]),
            "in_domain": np.array([ood <= 1.0]),
        }
        return applicability_columns(mean)

    def check_input(self, image: Any, name: str = "image") -> str | None:
        """Warn (and return the message) when ``image``'s dtype differs from the training dtype."""
        from cytolens.models.applicability import OutOfDomainWarning

        want = self.params.input_dtype
        got = np.dtype(image.dtype).name
        if got == want or (want.startswith("float") and got.startswith("float")):
            return None
        message = (
            f"{name} is {got} but {self.name} was trained on {want} images; its noise and "
            "quantization differ from the training data: check the result (ood_score) or "
            "train a denoiser on images like these"
        )
        warnings.warn(message, OutOfDomainWarning, stacklevel=3)
        return message

    def restore(
        self,
        image: Any,
        *,
        axes: str | None = None,
        tile_shape: Any = 512,
        progress: Any = False,
        name: str = "image",
    ) -> tuple[Any, dict[str, Any]]:
        """Restore every ``(Y, X)`` plane of ``image``; see :func:`denoise`.

        Returns
        -------
        restored : numpy.ndarray or dask.array.Array
            float32, same shape (and kind) as ``image``.
        info : dict
            ``ood_score``, ``domain_percentile``, ``in_domain`` (of the least
            applicable plane), ``warnings`` (messages) and ``model``.
        """
        from cytolens.models.applicability import warn_out_of_domain

        data, axes = _check_image(image, axes, self.name)
        self.check_tile_shape(tile_shape)
        messages = [m for m in [self.check_input(data, name)] if m]
        lead = data.shape[:-2]
        planes = list(np.ndindex(*lead)) if lead else [()]
        limits = self.normalization.limits(data)  # one intensity scale for the whole image
        if limits[1] <= limits[0]:
            raise InputError(
                f"{name} is flat (percentiles {limits[0]:g} .. {limits[1]:g}): nothing to denoise"
            )
        outputs = [
            self.restore_plane(data[idx], limits=limits, tile_shape=tile_shape, progress=progress)
            for idx in planes
        ]
        info: dict[str, Any] = {"model": self.name}
        if self.has_domain:
            probe = planes[:: max(1, len(planes) // 4)][:4]  # at most 4 planes scored
            scored = [self.applicability(data[idx], limits=limits) for idx in probe]
            info.update(max(scored, key=lambda s: s["ood_score"]))
            msg = warn_out_of_domain(self.name, name, info["ood_score"], stacklevel=3)
            if msg:
                messages.append(msg)
        info["warnings"] = messages
        if not lead:
            return outputs[0], info
        if is_dask(data):
            import dask.array as da

            stacked = da.stack(outputs).reshape(data.shape)
        else:
            stacked = np.stack(outputs).reshape(data.shape)
        return stacked, info

    def check_tile_shape(self, tile_shape: Any) -> None:
        """Refuse tiles smaller than ``2 * overlap + 16`` px (``-1``/None: whole axis)."""
        sides = [tile_shape] * 2 if np.isscalar(tile_shape) else list(tile_shape)
        least = 2 * self.overlap + 16
        if any(s is not None and int(s) != -1 and int(s) < least for s in sides):
            raise InputError(
                f"tile_shape {tile_shape} is too small for model {self.name!r}: "
                f"at least {least} px (twice its overlap of {self.overlap} px + 16)"
            )


def _check_image(image: Any, axes: str | None, model: str) -> tuple[Any, str]:
    """``(data, axes)`` of an array or Image whose last two axes are Y, X."""
    from cytolens.core.validate import check_array

    if hasattr(image, "axes") and hasattr(image, "data"):
        axes = axes or image.axes
        image = image.data
    data = check_array(image, name="image", finite=not is_dask(image))
    if axes is None:
        if data.ndim != 2:
            raise InputError(
                f"model {model!r} is 2-D (YX) but the image is {data.ndim}-D {tuple(data.shape)}; "
                "pass axes (e.g. 'ZYX', 'CYX') to restore it plane by plane"
            )
        axes = _SPATIAL
    axes = axes.upper()
    if len(axes) != data.ndim or len(set(axes)) != len(axes) or not set(axes) <= set("TCZYX"):
        raise InputError(
            f"axes {axes!r} do not describe an image of shape {tuple(data.shape)} "
            "(one distinct letter of TCZYX per dimension)"
        )
    if axes[-2:] != _SPATIAL:
        raise InputError(f"axes {axes!r}: the last two axes must be 'YX'")
    if min(data.shape[-2:]) < 8:
        raise InputError(f"image of shape {tuple(data.shape)} is too small (at least 8 x 8 px)")
    if np.dtype(data.dtype).kind not in "uif" and np.dtype(data.dtype) != np.bool_:
        raise InputError(f"image dtype {data.dtype} is not numeric")
    return data, axes


def denoise(
    image: Any,
    *,
    model: Any = DEFAULT_DENOISER,
    axes: str | None = None,
    device: str = "auto",
    tile_shape: Any = 512,
    return_info: bool = False,
    progress: Any = False,
) -> Any:
    """Denoise an image with a learned model (tiled, numpy or Dask, CPU or GPU).

    Parameters
    ----------
    image : array_like, dask.array.Array or cytolens.io.Image
        ``(Y, X)``, or any leading axes (``axes="ZYX"``, ``"TCYX"``...): each
        ``(Y, X)`` plane is restored with one intensity normalization for the
        whole image.
    model : str, path-like or Restorer
        A shipped model's name, a model folder written by
        :func:`~cytolens.restore.train_denoiser.train_denoiser`, or a loaded
        :class:`Restorer`.
    axes : str, optional
        Axes of a plain array (required when it is not 2-D).
    device : {"auto", "cpu", "cuda", "mps"}
        Where the network runs.
    tile_shape : int or (int, int)
        Tile side in pixels, halo included (memory is bounded by a few tiles).
    return_info : bool
        Also return the applicability of the input (see below).
    progress : bool or callable
        Show a progress bar over tiles, or call ``progress(done, total)``.

    Returns
    -------
    denoised : numpy.ndarray or dask.array.Array
        float32, same shape as ``image``, on the input's intensity scale.
    info : dict
        Only with ``return_info``: ``ood_score`` (> 1: outside the training
        domain), ``domain_percentile``, ``in_domain``, ``warnings``, ``model``.

    Warns
    -----
    OutOfDomainWarning
        The input lies outside the model's training domain, or its dtype
        (bit depth) differs from the training images'.

    Raises
    ------
    InputError
        Empty, non-finite, flat or non-numeric images; a 3-D+ array without
        ``axes``; axes not ending in ``YX``; tiles under twice the overlap.
    ModelError
        An unknown model, a model of another capability, damaged weights.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> yy, xx = np.mgrid[:96, :96]
    >>> clean = 50 + 150 * (((yy - 48) ** 2 + (xx - 48) ** 2) < 20**2)
    >>> noisy = np.clip(clean + rng.normal(0, 30, clean.shape), 0, 255).astype(np.uint8)
    >>> out = denoise(noisy, device="cpu")
    >>> out.dtype.name, out.shape
    ('float32', (96, 96))
    >>> bool(np.abs(out - clean).mean() < np.abs(noisy - clean.astype(float)).mean())
    True
    """
    restorer = _restorer(model, device)
    name = str(getattr(image, "path", None) or "image")
    restored, info = restorer.restore(
        image, axes=axes, tile_shape=tile_shape, progress=progress, name=name
    )
    return (restored, info) if return_info else restored


def _restorer(model: Any, device: str) -> Restorer:
    if isinstance(model, Restorer):
        restorer = model
    else:
        from cytolens.models import load

        restorer = load(model, device=device, capability="restore")
    if restorer.params.task != "denoise":
        raise ModelError(
            f"model {restorer.name!r} is a {restorer.params.task} model, not a denoiser; "
            "use cytolens.restore.deconvolve(..., method='network') for it"
        )
    return restorer
