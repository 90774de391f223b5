"""The focus-rating network: a small CNN that maps a patch to 11 defocus-level logits.

It replaces the two-conv, 1024-unit MNIST-style network of Yang et al. 2018
(about 29 M parameters) with a narrower, deeper, fully convolutional one
(about 0.1 M parameters): a 5x5 convolution at full resolution keeps the
finest detail, strided and pooled 3x3 convolutions widen the view, and a
global average + max pooling makes it accept any patch size. Imported only
when a model is loaded (torch is heavy).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FocusNet"]


def _block(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class FocusNet(nn.Module):
    """CNN from a normalized ``(N, 1, H, W)`` patch batch to ``(N, n_levels)`` logits.

    Parameters
    ----------
    n_levels : int
        Number of defocus levels (classes).
    width : int
        Channels of the first layer; deeper layers use 2x and 4x.

    Examples
    --------
    >>> net = FocusNet().eval()
    >>> net(torch.zeros(2, 1, 84, 84)).shape
    torch.Size([2, 11])
    """

    def __init__(self, n_levels: int = 11, width: int = 16) -> None:
        super().__init__()
        c = width
        self.n_levels = n_levels
        self.width = width
        self.features = nn.Sequential(
            *_block(1, c, kernel=5),
            *_block(c, c, stride=2),
            *_block(c, 2 * c),
            nn.MaxPool2d(2),
            *_block(2 * c, 4 * c),
            nn.MaxPool2d(2),
            *_block(4 * c, 4 * c),
        )
        self.head = nn.Sequential(
            nn.Linear(8 * c, 64),
            nn.ReLU(inplace=True),
            nn.Dropout(0.2),
            nn.Linear(64, n_levels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return self.head(pooled)
