"""Pipeline step of protein localization in HPA images: ``classify.localization``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from cytolens.classify.model import DEFAULT_MODEL
from cytolens.core.errors import InputError
from cytolens.core.image import Image
from cytolens.pipeline.step import Item, Step, StepParams, model_provenance

__all__ = ["CELL_TABLE", "Localize", "hpa_image"]

#: Name of the per-cell table ``classify.localization`` leaves in ``item.tables``.
CELL_TABLE = "hpa_cells"


class LocalizeParams(StepParams):
    """Parameters of ``classify.localization`` (see :func:`cytolens.classify.localization`)."""

    model: str = Field(DEFAULT_MODEL, description="shipped model name or a model folder")
    cells: bool = Field(True, description="also segment and classify every cell")
    nucleus_method: Literal["classical", "model"] = "classical"
    nucleus_diameter: float | None = Field(None, gt=0, description="pixels; estimated when absent")
    tile_size: int | None = Field(None, ge=32, description="pixels; default: the card's")
    device: str = "auto"


def hpa_image(item: Item) -> Image:
    """The item's 4-channel HPA image (``CYX``: red, green, blue, yellow).

    An item read from one channel file of an HPA sample (``<id>_green.png``,
    as a pipeline's ``inputs: hpa/*_green.png`` gives) is read as the whole
    sample with :func:`cytolens.io.read_hpa`; any other image must have a
    ``C`` axis of 4 channels in that order (or named as ``read_hpa`` names them).

    Examples
    --------
    >>> from pathlib import Path
    >>> import numpy as np
    >>> hpa_image(Item(Path("x.tif"), "x", Image(np.zeros((3, 8, 8)), "CYX")))
    Traceback (most recent call last):
    ...
    cytolens.core.errors.InputError: x.tif has axes 'CYX' and shape (3, 8, 8); ...
    """
    from cytolens.io.hpa import HPA_CHANNELS

    image = item.image
    if image.sizes.get("C") == 4:
        return image
    stem = item.source.name.split(".")[0]
    if stem.endswith(tuple(f"_{c}" for c in HPA_CHANNELS)) and item.source.is_file():
        from cytolens.io import read_hpa

        return read_hpa(item.source)
    raise InputError(
        f"{item.source.name} has axes {image.axes!r} and shape {image.shape}; "
        "classify.localization needs an HPA image: 4 channels (C axis: red, green, blue, "
        "yellow) or one channel file <id>_green.png of an HPA sample"
    )


class Localize(Step):
    """Where the green protein of an HPA image sits: per image, and per cell.

    Leaves in the row the image's localization
    (:meth:`~cytolens.classify.model.LocalizationResult.summary`:
    ``predicted``, ``labels``, ``signal``, ``no_signal``,
    ``nucleolar_probability``, ``tiles``, ``p_00`` ... ``p_27``), the
    model's applicability (``ood_score``, ``domain_percentile``,
    ``in_domain``), ``labels_at_chance`` when the card lists classes at
    chance, and with ``cells`` the counts ``cells`` and ``cells_nucleoli``
    and the per-cell table ``item.tables["hpa_cells"]`` (``image`` then the
    columns of :func:`~cytolens.classify.classify_cells`, box in ``_px``).

    Examples
    --------
    >>> from cytolens import data
    >>> hpa = data.hpa_cells()  # a quarter of it: quick
    >>> image = Image(hpa.data[:, :256, :256], "CYX", channel_names=hpa.channel_names)
    >>> item = Item(data.sample_path("hpa_nucleoli_green.png"), "h", image)
    >>> Localize({"device": "cpu"}).run(item)
    >>> item.row["signal"], item.row["cells"] == len(item.tables["hpa_cells"]) > 1
    (True, True)
    >>> sum(key.startswith("p_") for key in item.row)  # one probability per class
    28
    >>> list(item.tables["hpa_cells"].columns[:6])
    ['image', 'cell_id', 'xmin_px', 'ymin_px', 'xmax_px', 'ymax_px']
    """

    name = "classify.localization"
    Params = LocalizeParams
    gives = (f"table:{CELL_TABLE}",)

    def models(self) -> list[dict[str, str]]:
        return [model_provenance(self.params.model)]

    def run(self, item: Item) -> None:
        """Localize the protein of ``item`` (see the class)."""
        from cytolens.classify.model import LocalizationModel, classify_cells, localization
        from cytolens.models.applicability import score_input
        from cytolens.models.check import at_chance

        p = self.params
        model: Any = LocalizationModel.load(p.model, device=p.device)
        chance = at_chance(model.card)
        image = hpa_image(item)
        res = localization(image, model=model, tile_size=p.tile_size)
        item.row.update(res.summary())
        item.row.update(score_input(model, image, item.source.name))
        if chance.get("classes"):  # called labels whose held-out F1 is at chance
            item.row["labels_at_chance"] = ";".join(c for c in res.labels if c in chance["classes"])
        if p.cells:
            table, _, _ = classify_cells(
                image,
                model=model,
                nucleus_method=p.nucleus_method,
                nucleus_diameter=p.nucleus_diameter,
            )
            item.row["cells"] = len(table)
            item.row["cells_nucleoli"] = int((table["nucleolar"] == "Nucleoli").sum())
            if chance.get("nucleolar"):
                table = table.assign(nucleolar_at_chance=True)
            table.insert(0, "image", item.name)
            item.tables[CELL_TABLE] = table
