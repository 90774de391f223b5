"""Pipeline steps of the segmentation capability: ``segment.nuclei`` and ``segment.measure``."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from cytolens.core.image import Image
from cytolens.pipeline.step import Item, Step, StepParams, model_provenance

__all__ = ["Measure", "SegmentNuclei"]


class SegmentNucleiParams(StepParams):
    """Parameters of ``segment.nuclei`` (see :func:`cytolens.segment.nuclei`)."""

    method: Literal["model", "classical"] = "model"
    model: str = "nuclei-v1"
    diameter: float | None = Field(None, gt=0, description="pixels; estimated when absent")
    channel: int | None = Field(None, ge=0)
    tile_shape: int = Field(512, ge=64)
    device: str = "auto"


class SegmentNuclei(Step):
    """Label the nuclei of the item's image: ``item.labels`` (uint32) and a labels output.

    Examples
    --------
    >>> from cytolens import data
    >>> from cytolens.pipeline import Item
    >>> item = Item(data.sample_path("nuclei_bbbc006.png"), "n", data.nuclei())
    >>> SegmentNuclei({"method": "classical"}).run(item)
    >>> item.labels.dtype, item.row["nuclei"] > 5
    (dtype('uint32'), True)
    """

    name = "segment.nuclei"
    Params = SegmentNucleiParams
    gives = ("labels",)

    def models(self) -> list[dict[str, str]]:
        return [model_provenance(self.params.model)] if self.params.method == "model" else []

    def run(self, item: Item) -> None:
        from cytolens.segment import nuclei, nuclei_classical

        p = self.params
        if p.method == "model":
            labels = nuclei(
                item.image,
                model=p.model,
                diameter=p.diameter,
                channel=p.channel,
                tile_shape=p.tile_shape,
                device=p.device,
            )
        else:
            labels = nuclei_classical(item.image, diameter=p.diameter, channel=p.channel)
        item.labels = np.asarray(labels).astype(np.uint32, copy=False)
        sizes = {a: s for a, s in item.image.pixel_size_um.items() if a in "YX"}
        item.images["labels"] = Image(item.labels, "YX", sizes)
        item.row["nuclei"] = int(item.labels.max())
        if p.method == "model":
            from cytolens.models.applicability import score_input
            from cytolens.segment.model import NucleusSegmenter

            segmenter = NucleusSegmenter.from_pretrained(p.model, device=p.device)
            trust = score_input(
                segmenter, item.image, item.name, diameter=p.diameter, channel=p.channel
            )
            item.row.update(trust)


class MeasureParams(StepParams):
    """Parameters of ``segment.measure`` (see :func:`cytolens.segment.measure`)."""

    pixel_size_um: float | None = Field(None, gt=0, description="default: from the file")
    channel: int | None = Field(None, ge=0)


class Measure(Step):
    """Measure every labelled object: the ``nuclei`` table (one row per nucleus, units named).

    Examples
    --------
    >>> from cytolens import data
    >>> from cytolens.pipeline import Item
    >>> item = Item(data.sample_path("nuclei_bbbc006.png"), "n", data.nuclei())
    >>> SegmentNuclei({"method": "classical"}).run(item)
    >>> Measure().run(item)
    >>> len(item.tables["nuclei"]) == item.row["nuclei"]
    True
    """

    name = "segment.measure"
    Params = MeasureParams
    needs = ("image", "labels")
    gives = ("table:nuclei",)

    def run(self, item: Item) -> None:
        from cytolens.core.plane import single_plane
        from cytolens.segment import measure
        from cytolens.segment.classical import pixel_size_scalar

        size = self.params.pixel_size_um
        if size is None:
            size = pixel_size_scalar(item.image.pixel_size_um)
        plane = single_plane(item.image, channel=self.params.channel, name=item.source.name)[0]
        table = measure(item.labels, plane, pixel_size_um=size)
        table.insert(0, "image", item.name)
        item.tables["nuclei"] = table
        area = "area_um2" if "area_um2" in table else "area_px"
        item.row[f"median_{area}"] = float(table[area].median()) if len(table) else None
