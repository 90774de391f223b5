"""The tracker's settings as a validated, serializable pydantic model."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cytolens.core.errors import InputError

__all__ = ["TrackerConfig", "make_config"]


class TrackerConfig(BaseModel):
    """Settings of :func:`cytolens.track.track`; save with ``model_dump_json()`` to rerun a result.

    Examples
    --------
    >>> TrackerConfig(gap_closing=1).gap_closing
    1
    >>> TrackerConfig(gap_clsoing=1)
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for TrackerConfig
    gap_clsoing
      Extra inputs are not permitted [type=extra_forbidden, input_value=1, input_type=int]
        For further information visit https://errors.pydantic.dev/.../v/extra_forbidden
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_distance: float | None = Field(
        None,
        gt=0,
        description="Largest centroid displacement (pixels) between linked objects in "
        "consecutive frames; None derives it from object size and motion "
        "(cytolens.track.estimate_max_distance).",
    )
    gap_closing: int = Field(
        2,
        ge=0,
        description="Most frames an object may be missing and still be linked across "
        "the gap (0 turns gap closing off). The allowed displacement grows as "
        "max_distance * sqrt(frames elapsed).",
    )
    divisions: bool = Field(
        True, description="Detect divisions: one object at t-1 becoming two at t."
    )
    overlap_weight: float = Field(
        1.0,
        ge=0,
        le=1,
        description="How much pixel overlap lowers a link's cost: cost = (d / max_distance)^2 "
        "* (1 - overlap_weight * IoU). 0 links on centroid distance alone.",
    )
    division_max_cost: float = Field(
        1.5,
        gt=0,
        description="Acceptance threshold of the division cost, a sum of three cues that "
        "are each 0 for an ideal division and 1 where that cue alone says 'not a division' "
        "(mother off the daughters' midpoint, area not conserved, continuing daughter "
        "not displaced more than a typical step).",
    )
    method: Literal["lap", "nearest"] = Field(
        "lap",
        description="Frame-to-frame assignment: 'lap' solves the linear assignment "
        "problem (Jaqaman et al. 2008); 'nearest' links greedily by increasing cost "
        "(a nearest-neighbour baseline).",
    )


def make_config(config: TrackerConfig | None = None, **options: Any) -> TrackerConfig:
    """A :class:`TrackerConfig` from keyword options (or ``config`` updated by them).

    Validation errors become :class:`~cytolens.core.errors.InputError`.

    Examples
    --------
    >>> make_config(max_distance=20).max_distance
    20.0
    >>> make_config(gap_closing=-1)
    Traceback (most recent call last):
    ...
    cytolens.core.errors.InputError: invalid tracker option gap_closing=-1: Input should be ...
    """
    try:
        if config is None:
            return TrackerConfig(**options)
        if not isinstance(config, TrackerConfig):
            raise InputError(f"config must be a TrackerConfig, got {type(config).__name__}")
        return TrackerConfig(**{**config.model_dump(), **options})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise InputError(
            f"invalid tracker option {field}={first.get('input')!r}: {first['msg']}"
        ) from None
