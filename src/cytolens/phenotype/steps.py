"""Pipeline step of the phenotype capability: ``phenotype.classify`` (one class per cell)."""

from __future__ import annotations

from pydantic import Field

from cytolens.pipeline.step import Item, Step, StepParams, model_provenance

__all__ = ["ClassifyPhenotypes"]


class ClassifyPhenotypesParams(StepParams):
    """Parameters of ``phenotype.classify`` (see :func:`cytolens.phenotype.predict_cells`)."""

    model: str = "mitocheck-v1"
    crop_size: int | None = Field(None, ge=4, description="px; default: the model's")
    channel: int | None = Field(None, ge=0, description="plane of a multichannel image")
    device: str = "auto"


class ClassifyPhenotypes(Step):
    """Crop every labelled cell and classify it: the ``cells`` table and counts per phenotype.

    Examples
    --------
    >>> import numpy as np
    >>> from pathlib import Path
    >>> from cytolens.core.image import Image
    >>> img = np.zeros((80, 80), np.uint8); img[20:34, 20:36] = 120
    >>> item = Item(Path("a.tif"), "a", Image(img, "YX"))
    >>> item.labels = (img > 0).astype(np.uint32)
    >>> ClassifyPhenotypes({"device": "cpu"}).run(item)
    >>> len(item.tables["cells"]), item.row["cells"]
    (1, 1)
    """

    name = "phenotype.classify"
    Params = ClassifyPhenotypesParams
    needs = ("image", "labels")
    gives = ("table:cells",)

    def models(self) -> list[dict[str, str]]:
        return [model_provenance(self.params.model)]

    def run(self, item: Item) -> None:
        from cytolens.phenotype.crops import image_for_crops
        from cytolens.phenotype.model import PhenotypeClassifier, predict_cells

        p = self.params
        model = PhenotypeClassifier.load(p.model, device=p.device)
        image = image_for_crops(item.image, channels=model.in_channels, channel=p.channel)
        axes = "YX" if model.in_channels == 1 else "CYX"
        table = predict_cells(
            image, item.labels, model=model, axes=axes, crop_size=p.crop_size, name=item.name
        )
        table.insert(0, "image", item.name)
        item.tables["cells"] = table
        item.row["cells"] = len(table)
        for name in model.class_names:
            item.row[f"n_{name}"] = int((table["phenotype"] == name).sum()) if len(table) else 0
        if len(table) and "in_domain" in table:
            item.row["fraction_in_domain"] = round(float(table["in_domain"].mean()), 4)
