"""Pipeline steps of segmentation: ``segment.nuclei``, ``segment.measure``, ``segment.cells``."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from cytolens.core.errors import InputError
from cytolens.core.image import Image
from cytolens.pipeline.step import NOTES_SEPARATOR, Item, Step, StepParams, model_provenance
from cytolens.segment.model import DEFAULT_MODEL

__all__ = ["Measure", "SegmentCells", "SegmentNuclei"]


class SegmentNucleiParams(StepParams):
    """Parameters of ``segment.nuclei`` (see :func:`cytolens.segment.nuclei`)."""

    method: Literal["model", "classical"] = "model"
    model: str = DEFAULT_MODEL
    diameter: float | None = Field(None, gt=0, description="pixels; estimated when absent")
    diameter_um: float | None = Field(
        None, gt=0, description="micrometres (instead of diameter), with the pixel size below"
    )
    pixel_size_um: float | None = Field(
        None, gt=0, description="converts diameter_um; default: the file's (mean of Y and X)"
    )
    channel: int | None = Field(None, ge=0)
    tile_shape: int = Field(512, ge=64)
    device: str = "auto"

    @model_validator(mode="after")
    def _one_diameter(self) -> SegmentNucleiParams:
        if self.diameter is not None and self.diameter_um is not None:
            raise ValueError("give diameter (pixels) or diameter_um (micrometres), not both")
        return self


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

    def run(self, item: Item, *, progress: Any = False) -> None:
        """Segment ``item``; ``progress(done, total)`` follows the model's tiles."""
        from cytolens.segment import nuclei, nuclei_classical

        p = self.params
        diameter, size = p.diameter, None
        if p.diameter_um is not None:
            size = _pixel_size(item, p.pixel_size_um)
            if size is None:
                raise InputError(
                    f"{item.source}: diameter_um needs a pixel size, and the file states none; "
                    "give pixel_size_um, or diameter in pixels"
                )
            diameter = p.diameter_um
        options = {"diameter": diameter, "pixel_size_um": size, "channel": p.channel}
        if p.method == "model":
            labels = nuclei(
                item.image,
                model=p.model,
                tile_shape=p.tile_shape,
                device=p.device,
                progress=progress,
                **options,
            )
        else:
            labels = nuclei_classical(item.image, **options)
        item.labels = np.asarray(labels).astype(np.uint32, copy=False)
        sizes = {a: s for a, s in item.image.pixel_size_um.items() if a in "YX"}
        item.images["labels"] = Image(item.labels, "YX", sizes)
        item.row["nuclei"] = int(item.labels.max())
        _check_nuclear_stain(item, p.channel)
        if p.method == "model":
            from cytolens.models.applicability import score_input
            from cytolens.segment.model import NucleusSegmenter

            segmenter = NucleusSegmenter.from_pretrained(p.model, device=p.device)
            # the input preparation the model chose (fluorescence, brightfield, he; mean for v1)
            item.row["stain"] = segmenter.prepare(item.image, channel=p.channel)[1]["stain"]
            given = diameter / size if size is not None and diameter is not None else diameter
            trust = score_input(
                segmenter, item.image, item.source.name, diameter=given, channel=p.channel
            )
            item.row.update(trust)


def _pixel_size(item: Item, given: float | None) -> float | None:
    """``given``, else the item's own pixel size (mean of Y and X) when it states both."""
    from cytolens.segment.classical import pixel_size_scalar

    return given if given is not None else pixel_size_scalar(item.image.pixel_size_um)


def _check_nuclear_stain(item: Item, channel: int | None) -> None:
    """``whole_cell_score`` in the row, and a warning when the image is a whole-cell stain."""
    import warnings

    from cytolens.segment.whole_cells import whole_cell_note, whole_cell_stain_score

    score = whole_cell_stain_score(item.image, channel=channel)
    item.row["whole_cell_score"] = round(score, 4)
    note = whole_cell_note(score, item.source.name)
    if note:
        warnings.warn(note, UserWarning, stacklevel=3)


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
        from cytolens.segment.preprocess import SEGMENT_HINT

        size = _pixel_size(item, self.params.pixel_size_um)
        plane = single_plane(
            item.image, channel=self.params.channel, name=item.source.name, hint=SEGMENT_HINT
        )[0]
        table = measure(item.labels, plane, pixel_size_um=size)
        table.insert(0, "image", item.name)
        item.tables["nuclei"] = table
        item.row.update(_median_area(table))


def _median_area(table: Any) -> dict[str, float | None]:
    """``{"median_area_um2": ...}`` (``median_area_px`` without a pixel size); None if empty."""
    area = "area_um2" if "area_um2" in table else "area_px"
    return {f"median_{area}": float(table[area].median()) if len(table) else None}


class SegmentCellsParams(StepParams):
    """Parameters of ``segment.cells`` (see :func:`cytolens.segment.cells`)."""

    nuclear_channel: int | None = Field(None, ge=0)
    channel: list[int] | None = Field(None, description="cell (cytoplasm/membrane) channels")
    seed_from_labels: bool = Field(
        True, description="seed with the labels of an earlier segment.nuclei step when present"
    )
    cell_diameter: float | None = Field(None, gt=0, description="pixels; estimated when absent")
    nucleus_diameter: float | None = Field(None, gt=0)
    nucleus_method: Literal["classical", "model"] = "classical"
    threshold_factor: float = Field(0.5, gt=0, le=2)
    flood: Literal["signal", "gradient"] = "signal"
    pixel_size_um: float | None = Field(None, gt=0, description="default: from the file")
    tile_shape: int = Field(2048, ge=64)
    device: str = "auto"


class SegmentCells(Step):
    """Whole cells of the item's image: ``item.labels`` (the cells) and the ``cells`` table.

    Seeds: the labels of an earlier ``segment.nuclei`` step, else nuclei of
    ``nuclear_channel``, else the foreground's shape. Doubtful results add a
    ``cell_notes`` column to the summary row.

    Examples
    --------
    >>> from pathlib import Path
    >>> from cytolens.core.image import Image
    >>> from cytolens.pipeline import Item
    >>> yy, xx = np.mgrid[:96, :160]
    >>> data = np.zeros((2, 96, 160), np.float32)
    >>> for cx in (40, 120):
    ...     data[0][(yy - 48) ** 2 + (xx - cx) ** 2 < 30**2] = 1
    ...     data[1][(yy - 48) ** 2 + (xx - cx) ** 2 < 12**2] = 1
    >>> item = Item(Path("c.tif"), "c", Image(data, "CYX"))
    >>> SegmentCells({"nuclear_channel": 1, "nucleus_diameter": 24}).run(item)
    >>> item.row["cells"], len(item.tables["cells"])
    (2, 2)
    """

    name = "segment.cells"
    Params = SegmentCellsParams
    gives = ("labels", "table:cells")

    def models(self) -> list[dict[str, str]]:
        p = self.params
        seeded = p.nuclear_channel is not None and p.nucleus_method == "model"
        return [model_provenance(DEFAULT_MODEL)] if seeded else []

    def run(self, item: Item) -> None:
        import warnings

        from cytolens.segment.whole_cells import _planes, cell_table, cells

        p = self.params
        given = item.labels if p.seed_from_labels and item.labels is not None else None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            labels, nuclei = cells(
                item.image,
                given,
                channel=p.channel,
                nuclear_channel=p.nuclear_channel,
                cell_diameter=p.cell_diameter,
                nucleus_diameter=p.nucleus_diameter,
                nucleus_method=p.nucleus_method,
                threshold_factor=p.threshold_factor,
                flood=p.flood,
                tile_shape=p.tile_shape,
                device=p.device,
                return_nuclei=True,
            )
        seeded = given is not None or p.nuclear_channel is not None
        item.labels = labels
        sizes = {a: s for a, s in item.image.pixel_size_um.items() if a in "YX"}
        item.images["cells"] = Image(labels, "YX", sizes)
        if seeded:
            item.images["nuclei"] = Image(nuclei, "YX", sizes)
        planes, _ = _planes(item.image, None, p.channel, p.nuclear_channel, item.source.name)
        intensity = np.mean([np.asarray(q, np.float32) for q in planes], axis=0)
        size = _pixel_size(item, p.pixel_size_um)
        table = cell_table(labels, nuclei if seeded else None, intensity, pixel_size_um=size)
        table.insert(0, "image", item.name)
        item.tables["cells"] = table
        item.row["cells"] = len(table)
        item.row["seeded_by"] = "nuclei" if seeded else "foreground shape"
        item.row.update(_median_area(table))
        notes = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
        if notes:
            item.row["cell_notes"] = NOTES_SEPARATOR.join(notes)
