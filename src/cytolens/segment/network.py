"""A compact 2-D U-Net in plain torch (Ronneberger et al. 2015), about 0.5 M parameters.

Imported only when a model runs, so ``import cytolens.segment`` stays free of torch.
"""

from __future__ import annotations

import torch
from torch import nn

from cytolens.models.layers import UNetTrunk

__all__ = ["UNet"]


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class UNet(UNetTrunk):
    """U-Net: ``len(channels) - 1`` poolings, two 3x3 conv + BN + ReLU per level.

    Parameters
    ----------
    in_channels, out_channels : int
        Input channels (1: the normalized plane) and output maps (raw logits).
    channels : tuple of int
        Features per level, finest first.

    Notes
    -----
    Input height and width must be multiples of ``2 ** (len(channels) - 1)``
    (:attr:`divisor`). The receptive field is about 90 px for 4 levels.

    Examples
    --------
    >>> net = UNet(1, 2).eval()
    >>> net(torch.zeros(1, 1, 32, 48)).shape
    torch.Size([1, 2, 32, 48])
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        channels: tuple[int, ...] = (16, 32, 64, 128),
    ) -> None:
        super().__init__(in_channels, channels, _block)
        self.head = nn.Conv2d(channels[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))
