"""Batch augmentation of cell crops in torch: dihedral flips/rotations, small scale, intensity.

Imports torch; used by training only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["augment"]


def augment(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    scale: float = 0.1,
    gain: float = 0.2,
    offset: float = 0.05,
    noise: float = 0.0,
) -> torch.Tensor:
    """A randomly transformed copy of a batch ``(N, C, Y, X)`` (square crops).

    Each crop gets one of the 8 flips/90-degree rotations, a zoom by a factor
    in ``[1 - scale, 1 + scale]`` (bilinear, border values repeated), an
    intensity gain in ``[1 - gain, 1 + gain]`` and offset in
    ``[-offset, offset]`` (per crop), and Gaussian noise of standard deviation
    up to ``noise``.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.rand(4, 2, 16, 16)
    >>> y = augment(x, g)
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
    if scale > 0:
        s = 1.0 + (torch.rand(n, generator=generator) * 2 - 1) * scale
        theta = torch.zeros(n, 2, 3, dtype=x.dtype)
        theta[:, 0, 0] = 1 / s
        theta[:, 1, 1] = 1 / s
        grid = F.affine_grid(theta.to(x.device), list(out.shape), align_corners=False)
        out = F.grid_sample(out, grid, mode="bilinear", padding_mode="border", align_corners=False)
    shape = (n,) + (1,) * (x.ndim - 1)
    g = 1.0 + (torch.rand(shape, generator=generator) * 2 - 1) * gain
    o = (torch.rand(shape, generator=generator) * 2 - 1) * offset
    out = out * g.to(x.device) + o.to(x.device)
    if noise > 0:
        sd = torch.rand(shape, generator=generator) * noise
        out = out + torch.randn(out.shape, generator=generator) * sd
    return out
