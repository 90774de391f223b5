"""The step contract: what every capability gives the runner.

A :class:`Step` has typed parameters (a pydantic model with ``extra="forbid"``),
says what it reads from an :class:`Item` (``needs``) and what it adds
(``gives``), and fills the item: images to write, per-object tables, and
columns of the item's row in the run's summary table. The runner, not the
step, finds files, names and writes outputs atomically, keeps the journal,
records provenance, combines tables and writes the report.

Every image between steps is a :class:`~cytolens.core.image.Image` (axes and
pixel sizes travel with it); labels are uint32 in memory, written in the
smallest type that fits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from cytolens.core.image import Image

__all__ = ["NOTES_SEPARATOR", "Item", "Step", "StepParams"]

#: How a step joins several notes (warnings) into one column of its row.
NOTES_SEPARATOR = " | "


class StepParams(BaseModel):
    """Base of every step's parameters: unknown keys are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class Item:
    """One input flowing through the steps of a pipeline.

    Attributes
    ----------
    source : Path
        The input file.
    name : str
        Output stem, unique within the run.
    image : Image
        The current image (a step like deconvolution replaces it).
    labels : numpy.ndarray or None
        Instance labels (uint32) once a segmentation step ran.
    images : dict of str to Image
        Images to write, by output kind (``"labels"``, ``"deconvolved"``).
    tables : dict of str to pandas.DataFrame
        Per-object tables by name (``"nuclei"``); combined over the run.
    row : dict
        This item's columns in the run's summary table.
    """

    source: Path
    name: str
    image: Image
    labels: Any = None
    images: dict[str, Image] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    row: dict[str, Any] = field(default_factory=dict)


class Step:
    """Base class of the pipeline steps (one per capability verb).

    Subclasses set ``name`` (``"segment.nuclei"``), ``Params`` (a
    :class:`StepParams` subclass), ``needs`` and ``gives`` (from ``"image"``,
    ``"labels"`` and ``"table:<name>"``), and implement :meth:`run`. Models
    are loaded in :meth:`models` / on first use and cached per process, so a
    worker loads each model once.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[StepParams]] = StepParams
    needs: ClassVar[tuple[str, ...]] = ("image",)
    gives: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: StepParams | dict[str, Any] | None = None) -> None:
        if isinstance(params, StepParams):
            self.params = params
        else:
            self.params = self.Params.model_validate(params or {})

    def run(self, item: Item) -> None:  # pragma: no cover - abstract
        """Read from ``item`` and add this step's results to it."""
        raise NotImplementedError

    def models(self) -> list[dict[str, str]]:
        """Name, version and weights sha256 of the models this step uses (for provenance)."""
        return []

    def spec(self) -> dict[str, Any]:
        """``{"step": name, "params": {...}}``: what the journal and provenance record."""
        return {"step": self.name, "params": self.params.model_dump(mode="json")}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"


def model_provenance(name: str) -> dict[str, str]:
    """Name, version and weights sha256 of a shipped model or a model folder.

    Examples
    --------
    >>> model_provenance("nuclei-v1")["name"]
    'nuclei-v1'
    """
    from cytolens.models import _locate, load_card

    model, root = _locate(name, None)
    card = load_card(model, root=root)
    return {"name": card.name, "version": card.version, "sha256": card.sha256}
