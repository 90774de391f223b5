"""Pipeline step of the label-free capability: ``label_free.predict``."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from cytolens.pipeline.step import Item, Step, StepParams, model_provenance

__all__ = ["PredictFluorescence"]


class PredictFluorescenceParams(StepParams):
    """Parameters of ``label_free.predict`` (see :func:`cytolens.label_free.predict`)."""

    model: str = "isl-v1"
    tile_shape: int = Field(512, ge=96)
    device: str = "auto"
    #: Make the predicted channels the item's image, so later steps (e.g.
    #: ``segment.nuclei`` with ``channel: 0``) run on the predicted stain.
    replace_image: bool = True


class PredictFluorescence(Step):
    """Predict the fluorescence channels of the item's transmitted-light stack.

    Adds the ``predicted`` and ``sigma`` images; to the row, the number of
    transmitted-light ``planes``, the mean of each predicted channel
    (``mean_<target>``, in the card's normalized target units) and the
    applicability columns (``ood_score``, ``domain_percentile``,
    ``in_domain``); by default it replaces the item's image with the
    predicted channels.
    """

    name = "label_free.predict"
    Params = PredictFluorescenceParams
    gives = ("image",)

    def models(self) -> list[dict[str, str]]:
        return [model_provenance(self.params.model)]

    def run(self, item: Item, *, progress: Any = False) -> None:
        """Predict the targets of ``item``; ``progress(done, total)`` follows the tiles."""
        from cytolens.label_free.model import LabelFreeModel, as_stack

        p = self.params
        model = LabelFreeModel.from_pretrained(p.model, device=p.device)
        pred, sigma = model.predict(
            item.image,
            tile_shape=p.tile_shape,
            uncertainty=True,
            name=item.source.name,
            progress=progress,
        )
        item.images["predicted"] = pred
        item.images["sigma"] = sigma
        item.row["planes"] = int(as_stack(item.image, None, model.n_planes, model.name)[0].shape[0])
        for i, target in enumerate(pred.channel_names):
            item.row[f"mean_{target}"] = round(float(np.mean(pred.data[i])), 4)
        item.row.update(pred.metadata.get("applicability", {}))
        if p.replace_image:
            item.image = pred
