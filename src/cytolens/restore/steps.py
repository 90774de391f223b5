"""Pipeline steps of the restoration capability: ``restore.deconvolve``, ``restore.denoise``."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from cytolens.core.image import Image
from cytolens.pipeline.step import Item, Step, StepParams

__all__ = ["Deconvolve", "Denoise"]


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


class DenoiseParams(StepParams):
    """Parameters of ``restore.denoise`` (see :func:`cytolens.restore.denoise`)."""

    model: str = Field("denoise-w2s-v1", description="shipped denoiser name or model folder")
    tile_shape: int = Field(512, ge=16)
    device: str = "auto"


class Denoise(Step):
    """Denoise the item's image with a learned model; it replaces the image and is written.

    The row gets the input's applicability (``ood_score``, ``domain_percentile``,
    ``in_domain``) and ``warning`` (the model's notes on the input, ``" | "``
    joined, empty when none); an out-of-domain input also warns.

    Examples
    --------
    >>> import warnings
    >>> from cytolens import data
    >>> from cytolens.pipeline import Item
    >>> item = Item(data.sample_path("nuclei_bbbc006.png"), "n", data.nuclei())
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     Denoise({"device": "cpu"}).run(item)
    >>> item.images["denoised"].shape == data.nuclei().shape, "ood_score" in item.row
    (True, True)
    """

    name = "restore.denoise"
    Params = DenoiseParams
    gives = ("image", "denoised")

    def models(self) -> list[dict[str, str]]:
        from cytolens.pipeline.step import model_provenance

        return [model_provenance(self.params.model)]

    def run(self, item: Item) -> None:
        from cytolens.restore.denoise import _restorer

        p = self.params
        image = item.image
        result, info = _restorer(p.model, p.device).restore(
            image.data, axes=image.axes, tile_shape=p.tile_shape, name=item.source.name
        )
        item.image = Image(result, image.axes, dict(image.pixel_size_um), path=image.path)
        item.images["denoised"] = item.image
        item.row.update(
            {k: info[k] for k in ("ood_score", "domain_percentile", "in_domain") if k in info}
        )
        item.row["warning"] = " | ".join(info["warnings"])
