"""Building blocks shared by the shipped networks (imports torch; not loaded by ``cytolens``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["UNetTrunk", "conv_bn_relu"]


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


class UNetTrunk(nn.Module):
    """The encoder-decoder of a U-Net with skip connections; subclasses add their heads.

    ``down`` (one ``block`` per level, max pooling between levels), ``up``
    (transposed convolutions) and ``merge`` (one ``block`` per decoder level)
    are the state-dict names of the shipped U-Nets; :meth:`trunk` returns the
    finest decoder features (``channels[0]`` of them).

    Parameters
    ----------
    in_channels : int
        Input channels.
    channels : tuple of int
        Features per level, finest first.
    block : callable
        ``block(c_in, c_out)`` -> module of one level.
    dims : {2, 3}
        2-D or 3-D convolutions.

    Examples
    --------
    >>> trunk = UNetTrunk(1, (4, 8), lambda a, b: nn.Conv2d(a, b, 3, padding=1))
    >>> trunk.trunk(torch.zeros(1, 1, 8, 8)).shape, trunk.divisor
    (torch.Size([1, 4, 8, 8]), 2)
    """

    def __init__(
        self,
        in_channels: int,
        channels: tuple[int, ...],
        block: Callable[[int, int], nn.Module],
        dims: int = 2,
    ) -> None:
        super().__init__()
        self.dims = dims
        self.divisor = 2 ** (len(channels) - 1)
        up_conv = nn.ConvTranspose3d if dims == 3 else nn.ConvTranspose2d
        self.down = nn.ModuleList()
        c_prev = in_channels
        for c in channels:
            self.down.append(block(c_prev, c))
            c_prev = c
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for c in reversed(channels[:-1]):
            self.up.append(up_conv(c_prev, c, 2, stride=2))
            self.merge.append(block(2 * c, c))
            c_prev = c

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The finest decoder features of ``x`` (``(N, channels[0], *spatial)``)."""
        pool = nn.functional.max_pool3d if self.dims == 3 else nn.functional.max_pool2d
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = pool(x, 2)
            x = block(x)
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1]), strict=True):
            x = merge(torch.cat([up(x), skip], dim=1))
        return x
