"""A compact 4-channel CNN for multi-label HPA localization, in plain torch (< 1 M parameters).

Imported only when a model runs, so ``import cytolens.classify`` stays free of torch.
"""

from __future__ import annotations

import torch
from torch import nn

from cytolens.models.layers import conv_bn_relu

__all__ = ["HPANet"]


class HPANet(nn.Module):
    """Strided conv stages, then average + max global pooling and one linear layer.

    Parameters
    ----------
    in_channels : int
        Input channels: red (microtubules), green (protein), blue (nucleus),
        yellow (ER), each scaled to ``[0, 1]``.
    n_classes : int
        Outputs (raw logits, one per class; multi-label, so sigmoid each).
    widths : tuple of int
        Features per stage; each stage halves the resolution (the first is
        the stem, stride 2) and holds two 3x3 convolutions.
    dropout : float
        Dropout before the linear layer (training only).

    Notes
    -----
    Fully convolutional up to the global pooling, so any input size of at
    least ``2 ** len(widths)`` px works; the shipped model sees HPA images at
    half resolution (256 x 256 for a 512 x 512 image). Concatenated average
    and max pooling let small bright structures (nucleoli, centrosomes) and
    diffuse ones (cytosol) both reach the classifier.

    Examples
    --------
    >>> net = HPANet().eval()
    >>> net(torch.zeros(2, 4, 64, 80)).shape
    torch.Size([2, 28])
    >>> sum(p.numel() for p in net.parameters()) < 1_000_000
    True
    """

    def __init__(
        self,
        in_channels: int = 4,
        n_classes: int = 28,
        widths: tuple[int, ...] = (24, 32, 64, 128, 160),
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn_relu(in_channels, widths[0], 2)]
        c_prev = widths[0]
        for c in widths[1:]:
            layers += [conv_bn_relu(c_prev, c, 2), conv_bn_relu(c, c)]
            c_prev = c
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * c_prev, n_classes)
        self.divisor = 2 ** len(widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return self.head(self.dropout(pooled))
