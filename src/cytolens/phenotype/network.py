"""A compact CNN for cell crops: an encoder (embedding) and a linear head, in plain torch.

Imported only when a model runs, so ``import cytolens.phenotype`` stays free of torch.
"""

from __future__ import annotations

import torch
from torch import nn

from cytolens.models.layers import conv_bn_relu

__all__ = ["CropEncoder", "PhenotypeNet", "ProjectionHead"]


class CropEncoder(nn.Module):
    """Strided conv stages, then average + max global pooling: one embedding per crop.

    Parameters
    ----------
    in_channels : int
        Channels of the crops.
    widths : tuple of int
        Features per stage; the first stage (stem) keeps the resolution, each
        later one halves it and holds two 3x3 convolutions.

    Attributes
    ----------
    dim : int
        Length of the embedding (``2 * widths[-1]``: mean and max pooled).

    Examples
    --------
    >>> enc = CropEncoder(2, (8, 16)).eval()
    >>> enc(torch.zeros(3, 2, 32, 32)).shape, enc.dim
    (torch.Size([3, 32]), 32)
    """

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = (16, 32, 64, 96)) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn_relu(in_channels, widths[0], 2)]
        c_prev = widths[0]
        for c in widths[1:]:
            layers += [conv_bn_relu(c_prev, c, 2), conv_bn_relu(c, c)]
            c_prev = c
        self.features = nn.Sequential(*layers)
        self.dim = 2 * c_prev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)


class ProjectionHead(nn.Module):
    """The MLP of self-supervised (SimCLR) pretraining, dropped after it.

    Examples
    --------
    >>> ProjectionHead(32, 16)(torch.zeros(2, 32)).shape
    torch.Size([2, 16])
    """

    def __init__(self, dim: int, out: int = 64) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class PhenotypeNet(nn.Module):
    """:class:`CropEncoder` + dropout + one linear layer: class logits of cell crops.

    With ``n_features > 0`` the linear layer (a hybrid head) also reads
    ``n_features`` classical per-cell features, signed-log scaled
    (:meth:`feature_transform`), beside the embedding: a multinomial logistic
    regression on both, fitted after the encoder
    (:func:`cytolens.phenotype.train.fit_hybrid_head`).

    Parameters
    ----------
    in_channels : int
        Channels of the crops (1 for a nucleus marker, N for N markers).
    n_classes : int
        Outputs (raw logits; softmax for probabilities).
    widths : tuple of int
        Encoder widths (see :class:`CropEncoder`).
    dropout : float
        Dropout before the linear layer (training only).
    n_features : int
        Classical features the head reads beside the embedding (0: none).

    Notes
    -----
    Fully convolutional up to the global pooling, so any crop size of at
    least ``2 ** len(widths)`` px works; :meth:`embed` gives the pooled
    embedding the head reads (used by exploration and applicability).

    Examples
    --------
    >>> net = PhenotypeNet(1, 5).eval()
    >>> net(torch.zeros(2, 1, 64, 64)).shape, net.embed(torch.zeros(2, 1, 64, 64)).shape
    (torch.Size([2, 5]), torch.Size([2, 192]))
    >>> sum(p.numel() for p in net.parameters()) < 500_000
    True
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 2,
        widths: tuple[int, ...] = (16, 32, 64, 96),
        dropout: float = 0.2,
        n_features: int = 0,
    ) -> None:
        super().__init__()
        self.encoder = CropEncoder(in_channels, tuple(widths))
        self.dropout = nn.Dropout(dropout)
        self.n_features = int(n_features)
        self.head = nn.Linear(self.encoder.dim + self.n_features, n_classes)

    @staticmethod
    def feature_transform(features: torch.Tensor) -> torch.Tensor:
        """``sign(f) * log(1 + |f|)``: tames areas, intensities and their sums."""
        return torch.sign(features) * torch.log1p(features.abs())

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled embedding ``(N, dim)`` of crops ``(N, C, Y, X)``."""
        return self.encoder(x)

    def classify(
        self, embedding: torch.Tensor, features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits from an embedding ``(N, dim)`` (and the features ``(N, n_features)``)."""
        z = self.dropout(embedding)
        if self.n_features:
            if features is None or features.shape[-1] != self.n_features:
                raise ValueError(f"this head reads {self.n_features} classical features per crop")
            z = torch.cat([z, self.feature_transform(features.to(z.dtype))], dim=1)
        return self.head(z)

    def forward(self, x: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        return self.classify(self.encoder(x), features)
