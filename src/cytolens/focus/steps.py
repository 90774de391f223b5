"""Pipeline step of the focus capability: ``focus.rate``."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from cytolens.focus.model import DEFAULT_MODEL
from cytolens.pipeline.step import Item, Step, StepParams, model_provenance

__all__ = ["RateFocus"]


class RateFocusParams(StepParams):
    """Parameters of ``focus.rate`` (see :func:`cytolens.focus.rate_focus`)."""

    model: str = DEFAULT_MODEL
    patch_size: int = Field(84, ge=16, le=4096)
    batch_size: int = Field(256, ge=1)
    channel: int | None = Field(None, ge=0)
    device: str = "auto"


class RateFocus(Step):
    """Rate the focus of the item's image; adds its verdict and levels to the row.

    Examples
    --------
    >>> from cytolens import data
    >>> from cytolens.pipeline import Item
    >>> item = Item(data.sample_path("nuclei_bbbc006.png"), "n", data.nuclei())
    >>> RateFocus({"patch_size": 84}).run(item)
    >>> item.row["focus_verdict"]
    'in focus'
    """

    name = "focus.rate"
    Params = RateFocusParams
    gives = ("focus",)

    def models(self) -> list[dict[str, str]]:
        return [model_provenance(self.params.model)]

    def run(self, item: Item) -> None:
        from cytolens.core.plane import single_plane
        from cytolens.focus.model import FocusModel
        from cytolens.focus.rate import rate_focus
        from cytolens.models.applicability import score_input

        p = self.params
        plane = single_plane(item.image, channel=p.channel, name=item.source.name, lazy=True)[0]
        model: Any = FocusModel.load(p.model, device=p.device)
        res = rate_focus(plane, patch_size=p.patch_size, model=model, batch_size=p.batch_size)
        summary = res.summary()
        for key in ("verdict", "mean_level", "p_in_focus", "certainty", "blank_fraction"):
            item.row[f"focus_{key}"] = summary[key]
        item.row.update(score_input(model, plane, item.name))
