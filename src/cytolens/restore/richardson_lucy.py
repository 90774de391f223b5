"""The Richardson-Lucy iteration in torch (CPU or CUDA), with any back projector.

One iteration, for an image ``y``, forward OTF ``H`` and back-projector OTF
``B`` (``conj(H)`` for classic RL, Wiener-Butterworth for Guo et al.)::

    x <- max(x * F^-1[B F[y / F^-1[H F[x]]]], 0)

optionally from a Biggs-Andrews extrapolated point instead of ``x`` and
divided by the total-variation term of Dey et al. Everything runs on float32
tensors; convolutions are circular (the caller pads the image).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["kernel_otf", "richardson_lucy_iterate"]


def kernel_otf(kernel: Any, shape: tuple[int, ...], device: Any) -> torch.Tensor:
    """``rfftn`` of ``kernel`` (centre at ``n // 2``) embedded in ``shape`` with its centre at 0."""
    import numpy as np
    import torch

    k = np.asarray(kernel, dtype=np.float32)
    big = np.zeros(shape, dtype=np.float32)
    # scatter the kernel with wrap-around (cheaper than rolling the big array)
    index = np.ix_(*[(np.arange(n) - n // 2) % m for n, m in zip(k.shape, shape, strict=True)])
    big[index] = k
    return torch.fft.rfftn(torch.from_numpy(big).to(device))


def richardson_lucy_iterate(
    image: torch.Tensor,
    otf_fp: torch.Tensor,
    otf_bp: torch.Tensor,
    *,
    iterations: int,
    region: tuple[slice, ...],
    acceleration: str | None = None,
    tv: float = 0.0,
    init: str = "observed",
    stop_tol: float | None = None,
    metrics: bool = True,
    callback: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """Run up to ``iterations`` RL iterations on a padded, non-negative ``image``.

    Parameters
    ----------
    image : torch.Tensor
        Padded observation (float32, >= 0).
    otf_fp, otf_bp : torch.Tensor
        ``rfftn`` of the forward PSF and of the back projector on ``image``'s grid.
    iterations : int
        Maximum number of iterations.
    region : tuple of slice
        The unpadded part of ``image``; convergence metrics are computed there.
    acceleration : {None, "biggs-andrews"}
    tv : float
        Total-variation weight (0 disables it).
    init : {"observed", "flat"}
        Start from the observation, or from its mean.
    stop_tol : float, optional
        Stop after the first iteration whose relative change is below it.
    metrics : bool
        Compute the I-divergence each iteration (costs about one FFT's time);
        the relative change is computed whenever ``metrics`` or ``stop_tol``.
    callback : callable, optional
        Called as ``callback(iteration, iterations)`` after each iteration.

    Returns
    -------
    estimate : torch.Tensor
        Same shape as ``image``.
    history : list of dict
        Per iteration: ``iteration``, ``relative_change`` (L2 norm of the
        update over the L2 norm of the previous estimate, in ``region``),
        ``i_divergence`` (Csiszar I-divergence between the image and the
        re-blurred estimate that entered the iteration, per unit image flux,
        in ``region``) and ``elapsed_s``.
    """
    import torch

    shape = tuple(image.shape)
    dims = tuple(range(image.ndim))
    scale = float(image[region].mean())
    tiny = max(scale, 1e-30) * 1e-6

    def conv(x: torch.Tensor, otf: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfftn(torch.fft.rfftn(x, dim=dims).mul_(otf), s=shape, dim=dims)

    if init == "flat":
        x = torch.full_like(image, max(scale, tiny))
    else:
        x = image.clamp_min(tiny)
    x_prev = g1 = g2 = None
    y_reg = image[region]
    flux = float(y_reg.sum()) or 1.0
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    for k in range(1, iterations + 1):
        point = x
        if acceleration == "biggs-andrews" and x_prev is not None:
            a = 0.0
            if g2 is not None:
                a = float((g1 * g2).sum() / ((g2 * g2).sum() + 1e-30))
                a = min(max(a, 0.0), 1.0)
            if a > 0:
                point = (x + a * (x - x_prev)).clamp_min_(0)
        blurred = conv(point, otf_fp).clamp_min_(tiny)
        idiv = math.nan
        if metrics:
            b_reg = blurred[region]
            idiv = float(torch.xlogy(y_reg, y_reg / b_reg).sum() - y_reg.sum() + b_reg.sum()) / flux
            del b_reg
        ratio = torch.div(image, blurred, out=blurred)
        new = conv(ratio, otf_bp).mul_(point)
        del ratio, blurred
        if tv > 0:
            new = new / (1.0 - tv * _tv_divergence(point, tiny))
        new.clamp_min_(0)
        rel = math.nan
        if metrics or stop_tol is not None:
            diff = float(torch.linalg.vector_norm(new[region] - x[region]))
            rel = diff / (float(torch.linalg.vector_norm(x[region])) + 1e-30)
        if acceleration == "biggs-andrews":
            g2, g1 = g1, new - point
            x_prev = x
        x = new
        history.append(
            {
                "iteration": k,
                "relative_change": rel,
                "i_divergence": idiv,
                "elapsed_s": time.perf_counter() - t0,
            }
        )
        if callback is not None:
            callback(k, iterations)
        if stop_tol is not None and rel < stop_tol:
            break
    return x, history


def _tv_divergence(x: torch.Tensor, eps: float) -> torch.Tensor:
    """``div(grad x / |grad x|)`` with forward differences and their adjoint."""
    import torch

    grads = []
    for d in range(x.ndim):
        g = torch.zeros_like(x)
        n = x.shape[d]
        g.narrow(d, 0, n - 1).copy_(x.narrow(d, 1, n - 1) - x.narrow(d, 0, n - 1))
        grads.append(g)
    norm = torch.sqrt(sum(g * g for g in grads) + eps * eps)
    div = torch.zeros_like(x)
    for d, g in enumerate(grads):
        u = g / norm
        n = x.shape[d]
        div.narrow(d, 0, 1).add_(u.narrow(d, 0, 1))
        div.narrow(d, 1, n - 1).add_(u.narrow(d, 1, n - 1) - u.narrow(d, 0, n - 1))
    return div
