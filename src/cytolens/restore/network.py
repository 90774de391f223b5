"""A compact residual 2-D U-Net for image restoration (CARE-style), in plain torch.

Unlike the segmentation U-Net (:mod:`cytolens.segment.network`) it has no
batch normalization (restoration outputs must follow the input's intensity
scale, tile by tile) and predicts a correction added to its input, as CARE
(Weigert et al. 2018) does. Imported only when a model runs, so
``import cytolens.restore`` stays free of torch.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["RestoreUNet"]


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.LeakyReLU(0.1, inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.LeakyReLU(0.1, inplace=True),
    )


class RestoreUNet(nn.Module):
    """U-Net with ``len(channels) - 1`` poolings and a residual output ``x + f(x)``.

    Parameters
    ----------
    in_channels, out_channels : int
        Input and output channels (1: a normalized plane).
    channels : tuple of int
        Features per level, finest first.
    residual : bool
        Add the input to the output (needs ``in_channels == out_channels``).

    Notes
    -----
    Height and width must be multiples of :attr:`divisor`
    (``2 ** (len(channels) - 1)``); the receptive field is about 40 px for
    3 levels. Module ``"down.<i>"`` is the encoder level ``i`` (its pooled
    activations are the model's applicability features).

    Examples
    --------
    >>> net = RestoreUNet(channels=(8, 16)).eval()
    >>> net(torch.zeros(1, 1, 32, 48)).shape
    torch.Size([1, 1, 32, 48])
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: tuple[int, ...] = (16, 32, 64),
        residual: bool = True,
    ) -> None:
        super().__init__()
        if residual and in_channels != out_channels:
            raise ValueError("a residual U-Net needs in_channels == out_channels")
        self.residual = residual
        self.divisor = 2 ** (len(channels) - 1)
        self.down = nn.ModuleList()
        c_prev = in_channels
        for c in channels:
            self.down.append(_block(c_prev, c))
            c_prev = c
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for c in reversed(channels[:-1]):
            self.up.append(nn.ConvTranspose2d(c_prev, c, 2, stride=2))
            self.merge.append(_block(2 * c, c))
            c_prev = c
        self.head = nn.Conv2d(c_prev, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inp = x
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = nn.functional.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1]), strict=True):
            x = merge(torch.cat([up(x), skip], dim=1))
        y = self.head(x)
        return inp + y if self.residual else y
