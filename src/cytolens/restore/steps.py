"""Pipeline step of the restoration capability: ``restore.deconvolve``."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from cytolens.core.image import Image
from cytolens.pipeline.step import Item, Step, StepParams

__all__ = ["Deconvolve"]


class DeconvolveParams(StepParams):
    """Parameters of ``restore.deconvolve`` (see :func:`cytolens.restore.deconvolve`)."""

    psf: str = Field(description="measured PSF file (bead image), same dimensionality")
    method: Literal["wiener-butterworth", "richardson-lucy"] = "wiener-butterworth"
    iterations: int | None = Field(None, ge=1, le=1000)
    background: float = Field(0.0, ge=0)
    chunk_shape: list[int] | None = None
    device: str = "auto"

    @model_validator(mode="after")
    def _psf_exists(self) -> DeconvolveParams:
        if not Path(self.psf).is_file():
            raise ValueError(f"psf {self.psf}: no such file")
        return self


@cache
def _psf(path: str) -> np.ndarray:
    from cytolens.restore import load_psf

    return load_psf(path)


class Deconvolve(Step):
    """Deconvolve the item's image; it replaces the image for later steps and is written.

    Examples
    --------
    >>> from cytolens import data
    >>> from cytolens.pipeline import Item
    >>> item = Item(data.sample_path("bead.tif"), "b", data.bead())
    >>> Deconvolve({"psf": str(data.sample_path("bead_psf.tif"))}).run(item)
    >>> item.images["deconvolved"].shape == data.bead().shape
    True
    """

    name = "restore.deconvolve"
    Params = DeconvolveParams
    gives = ("image", "deconvolved")

    def run(self, item: Item) -> None:
        from cytolens.restore import deconvolve

        p = self.params
        image = item.image
        result = deconvolve(
            image.data,
            _psf(p.psf),
            method=p.method,
            iterations=p.iterations,
            background=p.background,
            chunk_shape=None if p.chunk_shape is None else tuple(p.chunk_shape),
            device=p.device,
        )
        item.image = Image(result, image.axes, dict(image.pixel_size_um), path=image.path)
        item.images["deconvolved"] = item.image
