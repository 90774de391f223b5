"""The label-free network: a U-Net from a transmitted-light z-stack to per-pixel distributions.

Imported only when a model runs (it imports torch), so ``import cytolens.label_free``
stays light.
"""

from __future__ import annotations

import torch
from torch import nn

from cytolens.models.layers import conv_bn_relu

__all__ = ["LabelFreeNet"]


class LabelFreeNet(nn.Module):
    """U-Net whose input channels are the z planes and whose outputs are two maps per target.

    For every target the network predicts a Gaussian per pixel: its mean (the
    predicted normalized fluorescence) and the log of its standard deviation
    (the per-pixel uncertainty), as *in silico labeling* (Christiansen et al.
    2018) predicts a distribution per pixel.

    Parameters
    ----------
    in_channels : int
        Number of transmitted-light planes (z planes).
    n_targets : int
        Number of predicted fluorescence channels.
    channels : tuple of int
        Features per level, finest first; each level is two 3x3 conv + BN + ReLU.

    Notes
    -----
    The output is ``(N, 2 * n_targets, H, W)``: the means first, then the
    log standard deviations. Input height and width must be multiples of
    :attr:`divisor`.

    Examples
    --------
    >>> net = LabelFreeNet(13, 3).eval()
    >>> net(torch.zeros(1, 13, 32, 48)).shape
    torch.Size([1, 6, 32, 48])
    """

    def __init__(
        self,
        in_channels: int = 13,
        n_targets: int = 3,
        channels: tuple[int, ...] = (16, 32, 64, 128),
    ) -> None:
        super().__init__()
        self.n_targets = n_targets
        self.divisor = 2 ** (len(channels) - 1)
        self.down = nn.ModuleList()
        c_prev = in_channels
        for c in channels:
            self.down.append(nn.Sequential(conv_bn_relu(c_prev, c), conv_bn_relu(c, c)))
            c_prev = c
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for c in reversed(channels[:-1]):
            self.up.append(nn.ConvTranspose2d(c_prev, c, 2, stride=2))
            self.merge.append(nn.Sequential(conv_bn_relu(2 * c, c), conv_bn_relu(c, c)))
            c_prev = c
        self.mean = nn.Conv2d(c_prev, n_targets, 1)
        self.log_sigma = nn.Conv2d(c_prev, n_targets, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = nn.functional.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1]), strict=True):
            x = merge(torch.cat([up(x), skip], dim=1))
        return torch.cat([self.mean(x), self.log_sigma(x)], dim=1)
