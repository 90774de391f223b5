"""The label-free network: a U-Net from a transmitted-light z-stack to per-pixel distributions.

Imported only when a model runs (it imports torch), so ``import cytolens.label_free``
stays light.
"""

from __future__ import annotations

import torch
from torch import nn

from cytolens.models.layers import UNetTrunk, conv_bn_relu

__all__ = ["LabelFreeNet"]


class LabelFreeNet(UNetTrunk):
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
    downsample : int
        Run the U-Net at ``1 / downsample`` of the input resolution: the input
        is rearranged losslessly into ``downsample ** 2`` times more channels
        (space to depth, :func:`torch.nn.functional.pixel_unshuffle`) and the
        outputs are upsampled bilinearly back to the input grid. ``2`` costs a
        quarter of the compute per pixel and doubles the receptive field; the
        input and output stay at full resolution.

    Notes
    -----
    The output is ``(N, 2 * n_targets, H, W)``: the means first, then the
    log standard deviations. Input height and width must be multiples of
    :attr:`divisor` (``downsample * 2 ** (len(channels) - 1)``).

    Examples
    --------
    >>> net = LabelFreeNet(13, 3).eval()
    >>> net(torch.zeros(1, 13, 32, 48)).shape
    torch.Size([1, 6, 32, 48])
    >>> half = LabelFreeNet(13, 3, (8, 16), downsample=2).eval()
    >>> half(torch.zeros(1, 13, 32, 48)).shape, half.divisor
    (torch.Size([1, 6, 32, 48]), 4)
    """

    def __init__(
        self,
        in_channels: int = 13,
        n_targets: int = 3,
        channels: tuple[int, ...] = (16, 32, 64, 128),
        downsample: int = 1,
    ) -> None:
        if downsample < 1:
            raise ValueError(f"downsample must be >= 1, got {downsample}")
        super().__init__(
            in_channels * downsample**2,
            channels,
            lambda c_in, c_out: nn.Sequential(
                conv_bn_relu(c_in, c_out), conv_bn_relu(c_out, c_out)
            ),
        )
        self.n_targets = n_targets
        self.downsample = downsample
        self.divisor = downsample * 2 ** (len(channels) - 1)
        self.mean = nn.Conv2d(channels[0], n_targets, 1)
        self.log_sigma = nn.Conv2d(channels[0], n_targets, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.downsample
        if d > 1:
            x = nn.functional.pixel_unshuffle(x, d)
        x = self.trunk(x)
        out = torch.cat([self.mean(x), self.log_sigma(x)], dim=1)
        if d > 1:
            out = nn.functional.interpolate(
                out, scale_factor=d, mode="bilinear", align_corners=False
            )
        return out
