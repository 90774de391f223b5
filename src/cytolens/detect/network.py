"""CenterNet-style detector network in plain torch.

Why this design: an anchor-free, single-stage, "objects as points" detector
(Zhou et al. 2019) needs no anchor boxes to tune, no RoI pooling (which would
need torchvision's compiled ops) and only one non-maximum suppression step;
every object is a peak in a per-class heatmap at stride 4, with its width and
height regressed at the peak. Cells are compact, rarely overlap by much and
come in few classes of characteristic size: the case where CenterNet is both
simplest and strong. The backbone is a small 4-stage conv net with a
top-down path (FPN-like) back to stride 4, so training from scratch on a few
hundred images runs on a CPU.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cytolens.models.layers import conv_bn_relu

__all__ = ["CenterNet"]

#: Output stride of the heatmap relative to the network input.
STRIDE = 4


class CenterNet(nn.Module):
    """Heatmap (one channel per class), box size and centre offset at stride 4.

    Parameters
    ----------
    in_channels : int
        Image channels (3 for RGB, 1 for grey, 4 for HPA).
    n_classes : int
        Object classes.
    width : int
        Channels of the first stage (doubled at each of the 4 stages).

    Examples
    --------
    >>> net = CenterNet(3, 2, width=8).eval()
    >>> heat, size, offset = net(torch.zeros(1, 3, 64, 96))
    >>> tuple(heat.shape), tuple(size.shape), tuple(offset.shape)
    ((1, 2, 16, 24), (1, 2, 16, 24), (1, 2, 16, 24))
    """

    def __init__(self, in_channels: int = 3, n_classes: int = 3, width: int = 16) -> None:
        super().__init__()
        chans = [width, 2 * width, 4 * width, 8 * width]
        self.stages = nn.ModuleList()
        c_prev = in_channels
        for i, c in enumerate(chans):  # strides 2, 4, 8, 16
            self.stages.append(
                nn.Sequential(
                    conv_bn_relu(c_prev, c, 2),
                    conv_bn_relu(c, c),
                    conv_bn_relu(c, c) if i else nn.Identity(),
                )
            )
            c_prev = c
        top = 4 * width  # decoder width
        self.lateral = nn.ModuleList([nn.Conv2d(c, top, 1) for c in chans[1:]])
        self.smooth = nn.ModuleList([conv_bn_relu(top, top) for _ in chans[1:-1]])

        def head(n_out: int) -> nn.Sequential:
            return nn.Sequential(conv_bn_relu(top, top), nn.Conv2d(top, n_out, 1))

        self.heat = head(n_classes)
        self.size = head(2)
        self.offset = head(2)
        # prior probability 0.1 of an object at each position (as in CenterNet / focal loss)
        nn.init.constant_(self.heat[-1].bias, -math.log((1 - 0.1) / 0.1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Heatmap logits ``(B, C, H/4, W/4)``, log box size and centre offset ``(B, 2, ...)``.

        Input height and width must be multiples of 16.
        """
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        y = self.lateral[-1](feats[-1])
        for lateral, smooth, f in zip(
            reversed(self.lateral[:-1]), reversed(self.smooth), reversed(feats[1:-1]), strict=True
        ):
            y = nn.functional.interpolate(y, size=f.shape[-2:], mode="nearest") + lateral(f)
            y = smooth(y)
        return self.heat(y), self.size(y), self.offset(y)
