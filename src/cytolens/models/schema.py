"""The typed model contract: what a card's ``parameters`` and ``normalization`` may hold.

Each capability has one parameter schema holding exactly what its predictor
reads at inference (nothing else: ``extra="forbid"``); documentation-only
metadata (training configuration, splits, timing, supports...) goes to the
card's ``training`` section. Normalization is a union discriminated on
``kind``: :class:`PercentileNormalization` or :class:`DtypeRangeNormalization`,
each with an ``apply`` method built on :mod:`cytolens.core.normalize`.

Examples
--------
>>> p = parse_parameters({"n_levels": 11, "patch_size": 84, "in_focus_levels": 3,
...                       "blank_certainty": 0.01}, "focus")
>>> p.n_levels, p.schema_version
(11, 1)
>>> parse_normalization({"kind": "dtype_range"}).kind
'dtype_range'
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from cytolens.core.normalize import (
    Normalizer,
    normalize_dtype_range,
    normalize_per_channel,
    normalize_percentile,
    sample_percentiles,
)

__all__ = [
    "PARAMETER_SCHEMAS",
    "SCHEMA_VERSION",
    "ClassifyParameters",
    "DetectParameters",
    "DtypeRangeNormalization",
    "FocusParameters",
    "LabelFreeParameters",
    "Normalization",
    "Parameters",
    "PercentileNormalization",
    "RestoreParameters",
    "SegmentParameters",
    "parse_normalization",
    "parse_parameters",
]


#: The version of the parameter schemas this cytolens writes and reads.
SCHEMA_VERSION = 1


class Parameters(BaseModel):
    """Base of the per-capability parameter schemas: frozen, no unknown keys, a version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Version of the schema the card was written with (only 1 exists).
    schema_version: Literal[1] = 1


class FocusParameters(Parameters):
    """What :class:`~cytolens.focus.FocusModel` reads.

    Examples
    --------
    >>> FocusParameters(n_levels=11, patch_size=84, in_focus_levels=3, blank_certainty=0).n_levels
    11
    """

    n_levels: int = Field(ge=2)
    patch_size: int = Field(ge=16)
    in_focus_levels: int = Field(ge=1)
    blank_certainty: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _levels(self) -> FocusParameters:
        if self.in_focus_levels > self.n_levels:
            raise ValueError(
                f"in_focus_levels ({self.in_focus_levels}) exceeds n_levels ({self.n_levels})"
            )
        return self


class SegmentParameters(Parameters):
    """What :class:`~cytolens.segment.NucleusSegmenter` reads.

    Examples
    --------
    >>> SegmentParameters(diameter_px=16, fg_threshold=0.5, seed_threshold=0.5,
    ...                   min_size_px=15, tile_overlap=48).tile_overlap
    48
    """

    diameter_px: float = Field(gt=0)
    fg_threshold: float = Field(ge=0, le=1)
    seed_threshold: float = Field(ge=0, le=1)
    min_size_px: float = Field(ge=0)
    tile_overlap: int = Field(ge=0)
    #: input preparation (cytolens.segment.preprocess.prepared_plane): "mean" (nuclei-v1) or "auto"
    stain: Literal["mean", "auto"] = "mean"


class DetectParameters(Parameters):
    """What :class:`~cytolens.detect.Detector` reads.

    ``score_pivots`` (raw heatmap score of each class mapped to ``min_score``)
    is absent from a card made before calibration (right after training).

    Examples
    --------
    >>> DetectParameters(classes=["RBC"], scale=0.5, overlap=64, min_score=0.7).score_pivots
    """

    classes: list[str] = Field(min_length=1)
    scale: float = Field(gt=0)
    overlap: int = Field(ge=0)
    min_score: float = Field(ge=0, le=1)
    score_pivots: dict[str, float] | None = None

    @model_validator(mode="after")
    def _pivots(self) -> DetectParameters:
        unknown = set(self.score_pivots or {}) - set(self.classes)
        if unknown:
            raise ValueError(f"score_pivots of unknown classes {sorted(unknown)}")
        return self


class ClassifyParameters(Parameters):
    """What :class:`~cytolens.classify.LocalizationModel` reads.

    Examples
    --------
    >>> p = ClassifyParameters(scale=0.5, tile_size=512, class_names=["a", "b"],
    ...                        thresholds=[0.2, 0.3], nucleolar_classes=[1])
    >>> p.thresholds
    [0.2, 0.3]
    """

    scale: float = Field(gt=0)
    tile_size: int = Field(ge=16)
    class_names: list[str] = Field(min_length=1)
    thresholds: list[float]
    nucleolar_classes: list[int]

    @model_validator(mode="after")
    def _sizes(self) -> ClassifyParameters:
        if len(self.thresholds) != len(self.class_names):
            raise ValueError(
                f"{len(self.thresholds)} thresholds for {len(self.class_names)} classes"
            )
        if any(not 0 <= c < len(self.class_names) for c in self.nucleolar_classes):
            raise ValueError(f"nucleolar_classes {self.nucleolar_classes} out of range")
        return self


class RestoreParameters(Parameters):
    """What :class:`~cytolens.restore.denoise.Restorer` reads (denoising, network deconvolution).

    Examples
    --------
    >>> RestoreParameters(task="denoise", training_mode="self_supervised", tile_overlap=32,
    ...                   input_dtype="uint8").input_dtype
    'uint8'
    """

    task: Literal["denoise", "deconvolve"]
    training_mode: Literal["supervised", "self_supervised", "network_deconvolution"]
    tile_overlap: int = Field(ge=0)
    #: dtype of the training images (``"uint8"``, ``"uint16"``, ``"float32"``); another
    #: bit depth at inference gives a warning.
    input_dtype: str
    #: Spatial dimensionality of the network's input (3: network deconvolution of ZYX volumes).
    ndim: Literal[2, 3] = 2
    #: Network deconvolution: sha256 of the PSF file and FWHM (px, per axis) it was trained for.
    psf_sha256: str = ""
    psf_fwhm_px: list[float] = Field(default_factory=list)
    #: Modules whose pooled activations are the applicability features.
    feature_modules: list[str] = Field(default_factory=lambda: ["down.0", "down.2"])
    #: Side of the windows (at most 4) the applicability features are pooled over.
    feature_window: int = Field(256, ge=16)


class PhenotypeParameters(Parameters):
    """What :class:`~cytolens.phenotype.PhenotypeClassifier` reads (cell crop classes).

    Examples
    --------
    >>> PhenotypeParameters(class_names=["a", "b"], crop_size=64, input_size=32,
    ...                     in_channels=1, temperature=1.2).input_size
    32
    """

    class_names: list[str] = Field(min_length=2)
    #: Side (px) of the crops cut around each cell in the original image.
    crop_size: int = Field(ge=4)
    #: Side (px) the crops are resized to for the network.
    input_size: int = Field(ge=8)
    in_channels: int = Field(ge=1)
    #: Temperature of the calibrated probabilities (fitted on the validation split).
    temperature: float = Field(gt=0)
    #: Classical features (``cytolens.explore.classical_features`` columns) a hybrid head
    #: reads beside the embedding, in order; empty: the embedding only.
    features: list[str] = Field(default_factory=list)
    #: Dihedral views (flips/90-degree rotations) whose embeddings are averaged: 1 or 8.
    tta_views: Literal[1, 8] = 1


class LabelFreeParameters(Parameters):
    """What :class:`~cytolens.label_free.LabelFreeModel` reads (fluorescence from phase stacks).

    Examples
    --------
    >>> LabelFreeParameters(targets=["dapi"], n_planes=13, tile_overlap=32).feature_tile
    128
    """

    #: Names of the predicted fluorescence channels, in the network's output order.
    targets: list[str] = Field(min_length=1)
    #: Number of transmitted-light planes the network takes (its input channels).
    n_planes: int = Field(ge=1)
    tile_overlap: int = Field(ge=0)
    #: Modules whose pooled activations are the applicability features.
    feature_modules: list[str] = Field(default_factory=lambda: ["down.3"])
    #: Side of the windows the applicability features are pooled over.
    feature_tile: int = Field(128, ge=16)


#: Capability -> parameter schema.
PARAMETER_SCHEMAS: dict[str, type[Parameters]] = {
    "focus": FocusParameters,
    "segment": SegmentParameters,
    "detect": DetectParameters,
    "classify": ClassifyParameters,
    "restore": RestoreParameters,
    "phenotype": PhenotypeParameters,
    "label_free": LabelFreeParameters,
}


class PercentileNormalization(Normalizer):
    """Percentile normalization (csbdeep's): percentile ``pmin`` -> 0, ``pmax`` -> 1.

    Attributes
    ----------
    pmin, pmax : float
        Percentiles.
    clip : bool
        Clip to ``[0, 1]``.
    per_channel : bool
        Each channel by its own percentiles (colour images), else the whole image.
    description : str
        Notes for people (scope, channel choice...); not read by the code.

    Examples
    --------
    >>> n = PercentileNormalization(pmin=0, pmax=100)
    >>> n.apply(np.arange(5.0)).tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0]
    """

    kind: Literal["percentile"] = "percentile"  # type: ignore[assignment]
    per_channel: bool = False
    description: str = ""

    def apply(self, image: Any, *, channel_axis: int = 0) -> np.ndarray:
        """Normalize a whole image (float32).

        Without ``per_channel``: :func:`~cytolens.core.normalize.normalize_percentile`
        over the whole array. With it:
        :func:`~cytolens.core.normalize.normalize_per_channel` (channels
        first in the result, percentiles on a bounded sample).

        Examples
        --------
        >>> x = np.stack([np.ones((4, 4)), np.eye(4) * 10], axis=-1)
        >>> PercentileNormalization(pmin=0, pmax=100, per_channel=True).apply(
        ...     x, channel_axis=-1).max(axis=(1, 2)).tolist()
        [0.0, 1.0]
        """
        if self.per_channel:
            return normalize_per_channel(
                image, self.pmin, self.pmax, channel_axis=channel_axis, clip=self.clip
            )
        return normalize_percentile(image, self.pmin, self.pmax, clip=self.clip)

    def limits(self, image: Any) -> tuple[float, float]:
        """The image's ``pmin`` and ``pmax`` percentiles (bounded sample, for tiled input).

        Examples
        --------
        >>> PercentileNormalization(pmin=0, pmax=100).limits(np.arange(100.0).reshape(10, 10))
        (0.0, 99.0)
        """
        return sample_percentiles(image, self.pmin, self.pmax)

    def scale(self, x: Any, lo: float, hi: float) -> np.ndarray:
        """``(x - lo) / (hi - lo)`` in float32 (clipped if ``clip``), for tiles of one image.

        Examples
        --------
        >>> PercentileNormalization().scale(np.array([1.0, 3.0]), 1.0, 3.0).tolist()
        [0.0, 1.0]
        """
        out = (np.asarray(x, dtype=np.float32) - np.float32(lo)) / np.float32(hi - lo + 1e-20)
        if self.clip:
            np.clip(out, 0, 1, out=out)
        return out


class DtypeRangeNormalization(BaseModel):
    """Scale by the dtype range: uint8 / 255, uint16 / 65535, floats taken as ``[0, 1]``.

    Examples
    --------
    >>> DtypeRangeNormalization().apply(np.array([0, 255], np.uint8)).tolist()
    [0.0, 1.0]
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["dtype_range"] = "dtype_range"
    description: str = ""

    def apply(self, image: Any, *, name: str = "image") -> np.ndarray:
        """The image in ``[0, 1]`` as float32.

        See :func:`~cytolens.core.normalize.normalize_dtype_range`.

        Examples
        --------
        >>> DtypeRangeNormalization().apply(np.array([0.5, 2.0])).tolist()
        [0.5, 1.0]
        """
        return normalize_dtype_range(image, name=name)


#: A card's normalization, told apart by ``kind``.
Normalization = Annotated[
    PercentileNormalization | DtypeRangeNormalization, Field(discriminator="kind")
]
_NORMALIZATION: TypeAdapter[Any] = TypeAdapter(Normalization)


def parse_parameters(parameters: Any, capability: str) -> Parameters:
    """Validate a card's ``parameters`` against its capability's schema.

    Parameters
    ----------
    parameters : dict or Parameters
        The card's ``parameters``.
    capability : str
        ``"focus"``, ``"segment"``, ``"detect"`` or ``"classify"``.

    Returns
    -------
    Parameters
        The schema instance.

    Raises
    ------
    pydantic.ValidationError
        Missing, mistyped or unknown fields.
    KeyError
        For a capability without a schema.

    Examples
    --------
    >>> parse_parameters({"scale": 0.5, "classes": ["a"], "overlap": 8, "min_score": 0.7},
    ...                  "detect").classes
    ['a']
    """
    schema = PARAMETER_SCHEMAS[capability]
    if isinstance(parameters, schema):
        return parameters
    return schema.model_validate(dict(parameters or {}))


def parse_normalization(normalization: Any) -> PercentileNormalization | DtypeRangeNormalization:
    """Validate a card's ``normalization`` (a dict with ``kind``) into its typed form.

    Raises
    ------
    pydantic.ValidationError
        An unknown ``kind``, missing or unknown fields.

    Examples
    --------
    >>> parse_normalization({"kind": "percentile", "pmin": 1, "pmax": 99.8}).pmax
    99.8
    """
    if isinstance(normalization, (PercentileNormalization, DtypeRangeNormalization)):
        return normalization
    return _NORMALIZATION.validate_python(dict(normalization or {}))
