"""Batch augmentation of cell crops in torch: dihedral flips/rotations, small rotation and
scale, intensity (gain, offset, gamma), blur and noise.

Imports torch; used by training only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["augment", "dihedral_views"]


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Each crop blurred by a separable Gaussian of its own ``sigma`` (0: unchanged)."""
    n, c = x.shape[:2]
    r = max(1, math.ceil(2 * float(sigma.max())))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    s = sigma.to(x.device).clamp_min(1e-3)[:, None]
    k = torch.exp(-0.5 * (t[None] / s) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)
    flat = x.reshape(1, n * c, *x.shape[2:])
    flat = F.pad(flat, (r, r, r, r), mode="replicate")
    flat = F.conv2d(flat, k[:, None, None, :], groups=n * c)
    flat = F.conv2d(flat, k[:, None, :, None], groups=n * c)
    return flat.reshape(x.shape)


def augment(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    scale: float = 0.1,
    rotate: float = 0.0,
    gain: float = 0.2,
    offset: float = 0.05,
    gamma: float = 0.0,
    blur: float = 0.0,
    noise: float = 0.0,
) -> torch.Tensor:
    """A randomly transformed copy of a batch ``(N, C, Y, X)`` (square crops).

    Each crop gets one of the 8 flips/90-degree rotations, a zoom by a factor
    in ``[1 - scale, 1 + scale]`` and a rotation by up to ``rotate`` degrees
    (bilinear, border values repeated), a gamma ``exp(u)`` with ``u`` in
    ``[-gamma, gamma]`` (on the non-negative part), an intensity gain in
    ``[1 - gain, 1 + gain]`` and offset in ``[-offset, offset]`` (per crop), a
    Gaussian blur of sigma up to ``blur`` px on half the crops, and Gaussian
    noise of standard deviation up to ``noise``.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.rand(4, 2, 16, 16)
    >>> y = augment(x, g, rotate=15, gamma=0.3, blur=1.0, noise=0.02)
    >>> y.shape, bool((y != x).any())
    (torch.Size([4, 2, 16, 16]), True)
    """
    n = x.shape[0]
    if n == 0:
        return x
    k = torch.randint(0, 4, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    out = torch.empty_like(x)
    for i in range(n):
        xi = x[i].flip(-1) if bool(flip[i]) else x[i]
        out[i] = torch.rot90(xi, int(k[i]), dims=(-2, -1))
    if scale > 0 or rotate > 0:
        s = 1.0 + (torch.rand(n, generator=generator) * 2 - 1) * scale
        a = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(rotate)
        theta = torch.zeros(n, 2, 3, dtype=x.dtype)
        theta[:, 0, 0] = torch.cos(a) / s
        theta[:, 0, 1] = -torch.sin(a) / s
        theta[:, 1, 0] = torch.sin(a) / s
        theta[:, 1, 1] = torch.cos(a) / s
        grid = F.affine_grid(theta.to(x.device), list(out.shape), align_corners=False)
        out = F.grid_sample(out, grid, mode="bilinear", padding_mode="border", align_corners=False)
    shape = (n,) + (1,) * (x.ndim - 1)
    if gamma > 0:
        e = torch.exp((torch.rand(shape, generator=generator) * 2 - 1) * gamma).to(x.device)
        out = out.clamp_min(0) ** e
    if blur > 0:
        sigma = torch.rand(n, generator=generator) * blur
        sigma = torch.where(torch.rand(n, generator=generator) < 0.5, sigma, 0.0)
        if bool((sigma > 0.1).any()):
            out = _blur(out, sigma)
    g = 1.0 + (torch.rand(shape, generator=generator) * 2 - 1) * gain
    o = (torch.rand(shape, generator=generator) * 2 - 1) * offset
    out = out * g.to(x.device) + o.to(x.device)
    if noise > 0:
        sd = torch.rand(shape, generator=generator) * noise
        out = out + torch.randn(out.shape, generator=generator) * sd
    return out


def dihedral_views(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 flips/90-degree rotations of a batch ``(N, C, Y, X)`` (the first is ``x``).

    Used for test-time augmentation: a prediction averaged over the views.

    Examples
    --------
    >>> v = dihedral_views(torch.arange(4.0).reshape(1, 1, 2, 2))
    >>> len(v), v[0].flatten().tolist(), len({tuple(t.flatten().tolist()) for t in v})
    (8, [0.0, 1.0, 2.0, 3.0], 8)
    """
    views = []
    for k in range(4):
        r = torch.rot90(x, k, dims=(-2, -1))
        views += [r, r.flip(-1)]
    return views
