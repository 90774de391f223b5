"""A compact residual 2-D (or 3-D) U-Net for image restoration (CARE-style), in plain torch.

Unlike the segmentation U-Net (:mod:`cytolens.segment.network`) it has no
batch normalization (restoration outputs must follow the input's intensity
scale, tile by tile) and predicts a correction added to its input, as CARE
(Weigert et al. 2018) does. Imported only when a model runs, so
``import cytolens.restore`` stays free of torch.
"""

from __future__ import annotations

import torch
from torch import nn

from cytolens.models.layers import UNetTrunk

__all__ = ["RestoreUNet"]


def _block(c_in: int, c_out: int, dims: int = 2) -> nn.Sequential:
    conv = nn.Conv3d if dims == 3 else nn.Conv2d
    return nn.Sequential(
        conv(c_in, c_out, 3, padding=1),
        nn.LeakyReLU(0.1, inplace=True),
        conv(c_out, c_out, 3, padding=1),
        nn.LeakyReLU(0.1, inplace=True),
    )


class RestoreUNet(UNetTrunk):
    """U-Net with ``len(channels) - 1`` poolings and a residual output ``x + f(x)``.

    Parameters
    ----------
    in_channels, out_channels : int
        Input and output channels (1: a normalized plane).
    channels : tuple of int
        Features per level, finest first.
    residual : bool
        Add the input to the output (needs ``in_channels == out_channels``).
    dims : {2, 3}
        Spatial dimensions: 2 (``(N, C, Y, X)``) or 3 (``(N, C, Z, Y, X)``,
        used by network deconvolution).

    Notes
    -----
    Every spatial side must be a multiple of :attr:`divisor`
    (``2 ** (len(channels) - 1)``); the receptive field is about 40 px for
    3 levels. Module ``"down.<i>"`` is the encoder level ``i`` (its pooled
    activations are the model's applicability features).

    Examples
    --------
    >>> net = RestoreUNet(channels=(8, 16)).eval()
    >>> net(torch.zeros(1, 1, 32, 48)).shape
    torch.Size([1, 1, 32, 48])
    >>> RestoreUNet(channels=(4, 8), dims=3)(torch.zeros(1, 1, 8, 16, 16)).shape
    torch.Size([1, 1, 8, 16, 16])
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: tuple[int, ...] = (16, 32, 64),
        residual: bool = True,
        dims: int = 2,
    ) -> None:
        if residual and in_channels != out_channels:
            raise ValueError("a residual U-Net needs in_channels == out_channels")
        if dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, got {dims!r}")
        super().__init__(in_channels, channels, lambda c_in, c_out: _block(c_in, c_out, dims), dims)
        self.residual = residual
        self.head = (nn.Conv3d if dims == 3 else nn.Conv2d)(channels[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.head(self.trunk(x))
        return x + y if self.residual else y
