"""The one base class of the shipped models' predictors.

A :class:`Predictor` is a network with its card: the typed parameters
(:data:`~cytolens.models.schema.PARAMETER_SCHEMAS`) and normalization
(:data:`~cytolens.models.schema.Normalization`) read from the card, and the
device it runs on. Each capability's model class (``FocusModel``,
``NucleusSegmenter``, ``Detector``, ``LocalizationModel``) derives from it and
reads its own parameters in :meth:`Predictor.configure`. Load them with
:func:`cytolens.models.load` (one cache), or wrap a network in memory with
:meth:`Predictor.from_card`.

Examples
--------
>>> from cytolens.models import load
>>> fm = load("focus-miq-v1", device="cpu")
>>> isinstance(fm, Predictor), fm.params.n_levels, fm.normalization.kind
(True, 11, 'percentile')
"""

from __future__ import annotations

from typing import Any, ClassVar

from cytolens.core.errors import ModelError

__all__ = ["Predictor"]


def _typed(card: Any, capability: str) -> tuple[Any, Any]:
    """The card's parameters and normalization validated for ``capability``."""
    from pydantic import ValidationError

    from cytolens.models import _first_error
    from cytolens.models.schema import parse_normalization, parse_parameters

    try:
        params = parse_parameters(card.parameters, capability)
    except ValidationError as exc:
        raise ModelError(
            f"model card of {card.name!r}: {_first_error(exc, 'parameters')}"
        ) from None
    try:
        norm = parse_normalization(card.normalization)
    except ValidationError as exc:
        raise ModelError(
            f"model card of {card.name!r}: {_first_error(exc, 'normalization')}"
        ) from None
    return params, norm


class Predictor:
    """A network with its model card, typed parameters, normalization and device.

    Parameters
    ----------
    network : torch.nn.Module
        The network, weights loaded (moved to ``device``, eval mode).
    card : cytolens.models.ModelCard
        Its card; ``parameters`` and ``normalization`` must satisfy the contract
        of the class's capability.
    device : {"auto", "cpu", "cuda", "mps"} or torch.device
        Where the network runs.

    Attributes
    ----------
    card : ModelCard
    name : str
        The card's name.
    params : cytolens.models.schema.Parameters
        The card's parameters, typed.
    normalization : PercentileNormalization or DtypeRangeNormalization
        The card's normalization, typed (see :meth:`normalize`).
    network : torch.nn.Module
    device : torch.device

    Raises
    ------
    ModelError
        A card whose parameters or normalization break the contract, or that
        is made for another capability.
    """

    #: The capability served (``"focus"``, ``"segment"``, ``"detect"``, ``"classify"``).
    capability: ClassVar[str] = ""

    def __init__(self, network: Any, card: Any, *, device: Any = "auto") -> None:
        import torch

        from cytolens.core.devices import resolve_device
        from cytolens.models import card_capability

        found = card_capability(card)
        if found is not None and found != self.capability:
            raise ModelError(
                f"model {card.name!r} is a {found} model, not a {self.capability} model"
            )
        params, norm = _typed(card, self.capability)
        from cytolens.models.schema import SCHEMA_VERSION

        if params.schema_version != SCHEMA_VERSION:  # a card from a later cytolens
            raise ModelError(
                f"model card of {card.name!r}: parameters.schema_version "
                f"{params.schema_version}; this cytolens reads version {SCHEMA_VERSION}"
            )
        self.card = card
        self.name: str = card.name
        self.params = params
        self.normalization = norm
        self.device = torch.device(str(resolve_device(device)))
        self.network = network.to(self.device).eval()
        #: The model folder (set by :func:`cytolens.models.load`; None for a network in memory).
        self.folder: Any = None
        self._domain: Any = None
        self.configure()

    def configure(self) -> None:
        """Read the capability's parameters from :attr:`params` (subclasses)."""

    @classmethod
    def from_card(cls, network: Any, card: Any, device: Any = "auto") -> Any:
        """A predictor from a network in memory and its card (e.g. right after training).

        Examples
        --------
        >>> from cytolens.models import load_model
        >>> from cytolens.focus import FocusModel
        >>> net, card = load_model("focus-miq-v1")
        >>> FocusModel.from_card(net, card, device="cpu").patch_size
        84
        """
        return cls(network, card, device=device)

    @property
    def net(self) -> Any:
        """The network (an alias of :attr:`network`)."""
        return self.network

    def normalize(self, x: Any, **kwargs: Any) -> Any:
        """``x`` normalized as the card says (``normalization.apply``).

        Examples
        --------
        >>> import numpy as np
        >>> from cytolens.models import load
        >>> load("focus-miq-v1", device="cpu").normalize(np.arange(4.0)).dtype.name
        'float32'
        """
        return self.normalization.apply(x, **kwargs)

    # ------------------------------------------------------------------ applicability
    def features(self, image: Any, **kwargs: Any) -> Any:
        """Pooled features ``(d,)`` of one input, as the card's applicability reference was made.

        Each capability's predictor implements it (see
        :class:`~cytolens.models.applicability.PooledFeatures`).
        """
        raise ModelError(f"{type(self).__name__} has no applicability features")

    @property
    def has_domain(self) -> bool:
        """Whether the model ships a training-domain reference (card ``applicability``)."""
        return bool(self.card.applicability) and self.folder is not None

    def domain(self) -> Any:
        """The card's :class:`~cytolens.models.applicability.DomainReference` (cached).

        Raises
        ------
        ModelError
            A model without one, or a reference that is missing or fails its sha256.
        """
        from pathlib import Path

        from cytolens.models.applicability import DomainReference

        if self._domain is None:
            if not self.has_domain:
                raise ModelError(f"model {self.name!r} has no applicability reference")
            entry = self.card.applicability
            self._domain = DomainReference.load(
                Path(self.folder) / str(entry.get("file", "")),
                expected_sha256=str(entry.get("sha256", "")),
            )
        return self._domain

    def applicability(self, image: Any, **kwargs: Any) -> dict[str, Any]:
        """How far ``image`` lies from the model's training data, calibrated.

        Returns
        -------
        dict
            ``ood_score`` (> 1: outside the domain), ``domain_percentile``
            (0-100) and ``in_domain``; see :mod:`cytolens.models.applicability`.
        """
        from cytolens.models.applicability import applicability_columns

        return applicability_columns(self.domain().score(self.features(image, **kwargs)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, device={str(self.device)!r})"
