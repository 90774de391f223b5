"""Building blocks shared by the shipped networks (imports torch; not loaded by ``cytolens``)."""

from __future__ import annotations

from torch import nn

__all__ = ["conv_bn_relu"]


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution (no bias), batch norm, ReLU; ``stride`` 2 halves the resolution.

    Examples
    --------
    >>> import torch
    >>> conv_bn_relu(4, 8, stride=2)(torch.zeros(1, 4, 16, 16)).shape
    torch.Size([1, 8, 8, 8])
    """
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )
