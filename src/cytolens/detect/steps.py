"""Pipeline step of object detection: ``detect.boxes``."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from cytolens.pipeline.step import Item, Step, StepParams, model_provenance

__all__ = ["BOX_TABLE", "DetectBoxes"]

#: Name of the per-box table ``detect.boxes`` leaves in ``item.tables`` (combined over a run).
BOX_TABLE = "boxes"
#: The shipped detector.
DEFAULT_MODEL = "detect-bccd-v1"


class DetectBoxesParams(StepParams):
    """Parameters of ``detect.boxes`` (see :meth:`cytolens.detect.Detector.predict`)."""

    model: str = Field(DEFAULT_MODEL, description="shipped model name or a trained model folder")
    min_score: float | None = Field(
        None, ge=0, le=1, description="keep boxes at or above this confidence; default: the card's"
    )
    iou_threshold: float = Field(0.5, ge=0, le=1)
    tile_size: int = Field(512, ge=32)
    device: str = "auto"


class DetectBoxes(Step):
    """Detect objects in the item's image: one box per object, counted per class.

    Leaves the table ``item.tables["boxes"]`` (one row per box: ``image``,
    ``class``, ``xmin_px``, ``ymin_px``, ``xmax_px``, ``ymax_px`` in input
    pixels, ``score``) and in the row ``boxes`` (their number), ``n <class>``
    for each class of the model (0 when absent), and the applicability of
    the model to the image (``ood_score``, ``domain_percentile``,
    ``in_domain``; an :class:`~cytolens.models.applicability.OutOfDomainWarning`
    when it is out of domain).

    Examples
    --------
    >>> from cytolens import data
    >>> from cytolens.pipeline import Item
    >>> item = Item(data.sample_path("blood_smear.jpg"), "b", data.blood_smear())
    >>> DetectBoxes({"device": "cpu"}).run(item)
    >>> list(item.tables["boxes"].columns)
    ['image', 'class', 'xmin_px', 'ymin_px', 'xmax_px', 'ymax_px', 'score']
    >>> counts = [item.row[f"n {c}"] for c in ("RBC", "WBC", "Platelets")]
    >>> item.row["boxes"] == len(item.tables["boxes"]) == sum(counts), counts[1]
    (True, 1)
    """

    name = "detect.boxes"
    Params = DetectBoxesParams
    gives = (f"table:{BOX_TABLE}",)

    def models(self) -> list[dict[str, str]]:
        return [model_provenance(self.params.model)]

    def run(self, item: Item) -> None:
        """Detect the boxes of ``item`` (see the class)."""
        from cytolens.detect.model import Detector
        from cytolens.models.applicability import score_input

        p = self.params
        det: Any = Detector.load(p.model, device=p.device)
        boxes = det.predict(
            item.image,
            min_score=p.min_score,
            iou_threshold=p.iou_threshold,
            tile_size=p.tile_size,
            name=str(item.source),
        )
        counts = boxes["class"].value_counts().to_dict()
        item.tables[BOX_TABLE] = boxes.reset_index(drop=True).assign(image=item.name)[
            ["image", *boxes.columns]
        ]
        item.row["boxes"] = len(boxes)
        item.row.update({f"n {c}": int(counts.get(c, 0)) for c in det.classes})
        item.row.update(score_input(det, item.image, item.source.name))
