"""Pipeline step of the registration capability: ``register.align``."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from cytolens.core.image import Image
from cytolens.pipeline.step import Item, Step, StepParams

__all__ = ["Align"]


class AlignParams(StepParams):
    """Parameters of ``register.align`` (see :func:`cytolens.register.register`)."""

    reference: str = Field(description="fixed image file every item is aligned onto")
    transform: Literal["translation", "rigid", "affine"] = "rigid"
    max_iterations: int = Field(100, ge=1, le=10000)
    device: str = "auto"

    @model_validator(mode="after")
    def _reference_exists(self) -> AlignParams:
        if not Path(self.reference).exists():
            raise ValueError(f"reference {self.reference}: no such file")
        return self


@cache
def _reference(path: str) -> Image:
    from cytolens.io import imread

    return imread(path, lazy=False)


class Align(Step):
    """Register the item's image onto ``reference``; the aligned image replaces it.

    The row gets ``ncc_before``, ``ncc_after``, ``converged`` and the
    transform's translation (``shift_<axis>``, in the transform's units).

    Examples
    --------
    >>> import tempfile
    >>> from cytolens.io import imwrite
    >>> from cytolens.pipeline import Item
    >>> from cytolens.register.synthetic import textured_scene
    >>> scene = textured_scene((64, 64))
    >>> ref = imwrite(Path(tempfile.mkdtemp()) / "ref.tif", scene[8:56, 8:56], axes="YX")
    >>> item = Item(ref, "m", Image(scene[10:58, 7:55], "YX"))
    >>> Align({"reference": str(ref), "transform": "translation", "device": "cpu"}).run(item)
    >>> round(item.row["shift_Y"], 1), round(item.row["shift_X"], 1)
    (-2.0, 1.0)
    """

    name = "register.align"
    Params = AlignParams
    gives = ("image", "aligned")

    def run(self, item: Item) -> None:
        from cytolens.register import register, transform_image

        p = self.params
        fixed = _reference(p.reference)
        image = item.image
        sizes = None
        if all(a in fixed.pixel_size_um for a in fixed.axes):
            sizes = tuple(fixed.pixel_size_um[a] for a in fixed.axes)
        moving = np.asarray(image.data)
        t = register(
            np.asarray(fixed.data),
            moving,
            transform=p.transform,
            pixel_size_um=sizes,
            max_iterations=p.max_iterations,
            device=p.device,
        )
        aligned = transform_image(moving, t, fixed.shape, pixel_size_um=sizes, device=p.device)
        item.image = Image(aligned, fixed.axes, dict(fixed.pixel_size_um), path=image.path)
        item.images["aligned"] = item.image
        item.row.update({k: t.quality[k] for k in ("ncc_before", "ncc_after", "converged")})
        item.row.update(
            {f"shift_{a}": float(v) for a, v in zip(fixed.axes, t.translation, strict=True)}
        )
