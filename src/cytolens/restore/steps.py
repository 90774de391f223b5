"""Pipeline steps of the restoration capability: ``restore.deconvolve``, ``restore.denoise``."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import cache, lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Discriminator, Field, Tag, ValidationInfo, field_validator

from cytolens.core.errors import InputError
from cytolens.core.image import Image
from cytolens.core.validate import is_dask
from cytolens.pipeline.step import NOTES_SEPARATOR, Item, Step, StepParams

__all__ = ["Deconvolve", "DeconvolveParams", "Denoise", "TheoreticalPSF"]


class TheoreticalPSF(StepParams):
    """A theoretical PSF (see :func:`cytolens.restore.theoretical_psf`), sized for each image.

    Its shape is odd, about five Airy rings laterally and three axial FWHMs
    each way (within the image); its sampling is the image's voxel size.

    Examples
    --------
    >>> TheoreticalPSF(na=1.0, wavelength_um=0.5).kind
    'widefield'
    >>> TheoreticalPSF(na=1.4, wavelength_um=0.5)
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for TheoreticalPSF
    ...
    """

    na: float = Field(gt=0, allow_inf_nan=False, description="numerical aperture")
    wavelength_um: float = Field(gt=0, allow_inf_nan=False, description="emission wavelength, um")
    refractive_index: float = Field(
        1.33,
        gt=0,
        allow_inf_nan=False,
        validate_default=True,  # so that the NA is checked against the default index too
        description="immersion index: 1.33 water, 1.515 oil",
    )
    kind: Literal["widefield", "confocal", "lightsheet"] = Field(
        "widefield", description="microscope: widefield, confocal or lightsheet"
    )
    excitation_wavelength_um: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="confocal excitation wavelength, um"
    )
    sheet_fwhm_um: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="light-sheet thickness (FWHM), um"
    )

    @field_validator("refractive_index")
    @classmethod
    def _above_na(cls, value: float, info: ValidationInfo) -> float:
        na = info.data.get("na")
        if na is not None and not na < value:
            raise ValueError(
                f"na {na:g} must be below refractive_index {value:g} (the NA of an objective is "
                "at most the index of its immersion medium)"
            )
        return value

    def shape(self, image_shape: tuple[int, ...], voxel: tuple[float, ...]) -> tuple[int, ...]:
        """Odd PSF shape: ~5 Airy rings laterally, 3 axial FWHMs each way, within the image.

        Examples
        --------
        >>> TheoreticalPSF(na=1.0, wavelength_um=0.5).shape((16, 48, 48), (0.4, 0.1, 0.1))
        (15, 31, 31)
        """
        lateral = 3.0 * self.wavelength_um / self.na
        axial = 3.0 * 2.0 * self.wavelength_um * self.refractive_index / self.na**2
        halves = [math.ceil(lateral / v) for v in voxel[-2:]]
        if len(image_shape) == 3:
            halves.insert(0, math.ceil(axial / voxel[0]))
        return tuple(
            min(2 * h + 1, s if s % 2 else s - 1) if s > 1 else 1
            for h, s in zip(halves, image_shape, strict=True)
        )


@lru_cache(maxsize=8)  # a few image shapes per run; each kernel is small
def _theoretical(
    spec: TheoreticalPSF, image_shape: tuple[int, ...], voxel: tuple[float, ...]
) -> np.ndarray:
    from cytolens.restore import theoretical_psf

    return theoretical_psf(
        spec.shape(image_shape, voxel),
        na=spec.na,
        wavelength_um=spec.wavelength_um,
        voxel_size_um=voxel,
        refractive_index=spec.refractive_index,
        kind=spec.kind,
        excitation_wavelength_um=spec.excitation_wavelength_um,
        sheet_fwhm_um=spec.sheet_fwhm_um,
    )


def _psf_form(value: Any) -> str:
    """Which form ``psf`` takes: a file name, or a theoretical PSF (a mapping)."""
    return "file" if isinstance(value, str) else "theoretical"


class DeconvolveParams(StepParams):
    """Parameters of ``restore.deconvolve`` (see :func:`cytolens.restore.deconvolve`).

    Everything ``cytolens restore deconvolve`` accepts: the PSF as a file or
    as a theoretical-PSF spec, the method and its options, the voxel size
    and the chunking.

    Examples
    --------
    >>> p = DeconvolveParams(psf={"na": 1.0, "wavelength_um": 0.5}, voxel_size_um=[0.3, 0.1, 0.1])
    >>> p.psf.kind, p.method, p.beta
    ('widefield', 'wiener-butterworth', 'auto')
    """

    psf: Annotated[
        Annotated[str, Tag("file")] | Annotated[TheoreticalPSF, Tag("theoretical")],
        Discriminator(_psf_form),
    ] = Field(
        description="measured PSF file (bead image, same dimensionality as the image), or a "
        "theoretical PSF: {na, wavelength_um, refractive_index, kind, ...}"
    )
    method: Literal["wiener-butterworth", "richardson-lucy", "network"] = Field(
        "wiener-butterworth",
        description="wiener-butterworth, richardson-lucy, or network (one pass of a trained 3-D "
        "network, see model)",
    )
    model: str | None = Field(
        None, description="network deconvolution model (method network); default decon-llsm-v1"
    )
    iterations: int | None = Field(
        None, ge=1, le=1000, description="iterations (default 2 Wiener-Butterworth, 30 RL)"
    )
    alpha: float = Field(0.05, gt=0, allow_inf_nan=False, description="Wiener parameter (WB)")
    beta: Literal["auto"] | Annotated[float, Field(gt=0, lt=1)] = Field(
        "auto", description="cutoff gain (WB), 'auto' = OTF gain at the resolution limit"
    )
    order: int = Field(10, ge=1, description="Butterworth order (WB)")
    acceleration: Literal["biggs-andrews"] | None = Field(
        None, description="biggs-andrews vector extrapolation (RL)"
    )
    tv: float = Field(
        0.0,
        ge=0,
        allow_inf_nan=False,
        description="total-variation weight, e.g. 0.002; below 1 / (2 ndim): 0.25 for a 2-D "
        "image, 1/6 for a 3-D one",
    )
    background: float = Field(
        0.0, allow_inf_nan=False, description="camera offset subtracted first"
    )
    voxel_size_um: list[Annotated[float, Field(gt=0, allow_inf_nan=False)]] | None = Field(
        None,
        min_length=1,
        max_length=3,
        description="voxel size in um, one value per image axis (Z, Y, X) or one for all; "
        "replaces the file's (needed for a theoretical PSF when the file states none) and is "
        "recorded in the output",
    )
    chunk_shape: list[Annotated[int, Field(ge=1)]] | None = Field(
        None,
        min_length=1,
        max_length=3,
        description="deconvolve in chunks of this shape (one value per axis or one for all); "
        "memory is then bounded by the chunk",
    )
    device: str = Field("auto", description="auto, cpu or cuda")

    @field_validator("psf")
    @classmethod
    def _psf_file_exists(cls, value: str | TheoreticalPSF) -> str | TheoreticalPSF:
        if isinstance(value, str) and not Path(value).is_file():
            raise ValueError(f"{value}: no such file")
        return value

    @field_validator("beta", mode="before")
    @classmethod
    def _auto_or_fraction(cls, value: Any) -> Any:
        if value != "auto" and not (
            isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1
        ):
            raise ValueError(f"must be 'auto' or a number between 0 and 1, got {value!r}")
        return value

    @field_validator("model")
    @classmethod
    def _network_model(cls, value: str | None, info: ValidationInfo) -> str | None:
        method = info.data.get("method")
        if value is not None and method != "network":
            raise ValueError(f"model is for method network, not method {method}")
        return value

    @field_validator("iterations", "acceleration", "tv", "background")
    @classmethod
    def _not_for_network(cls, value: Any, info: ValidationInfo) -> Any:
        if value and info.data.get("method") == "network":
            raise ValueError(
                "method network is one forward pass of a trained network: iterations, tv, "
                "background and acceleration do not apply (subtract the offset first)"
            )
        return value


@cache
def _psf(path: str) -> np.ndarray:
    from cytolens.restore import load_psf

    return load_psf(path)


def _per_axis(values: Sequence[float], image: Image, option: str) -> tuple[float, ...]:
    """``values`` (one, or one per axis of ``image``) as one value per axis."""
    ndim = len(image.axes)
    if len(values) == 1:
        return tuple(values) * ndim
    if len(values) != ndim:
        raise InputError(
            f"{option} {','.join(f'{v:g}' for v in values)} must give {ndim} values "
            f"({', '.join(image.axes)}) or one, for {image.path}"
        )
    return tuple(values)


class Deconvolve(Step):
    """Deconvolve the item's image; it replaces the image for later steps and is written.

    The image may carry singleton channel or time axes (they are dropped: it
    must be YX or ZYX). ``voxel_size_um``, when given, becomes the image's
    pixel size (and the output's). The row gets ``method``, ``psf`` (what
    PSF was used), ``model`` (network only), ``iterations_run`` and
    ``final_relative_change`` (None for chunked and network runs).

    Examples
    --------
    >>> from cytolens import data
    >>> from cytolens.pipeline import Item
    >>> item = Item(data.sample_path("bead.tif"), "b", data.bead())
    >>> Deconvolve({"psf": str(data.sample_path("bead_psf.tif"))}).run(item)
    >>> item.images["deconvolved"].shape == data.bead().shape, item.row["iterations_run"]
    (True, 2)
    """

    name = "restore.deconvolve"
    Params = DeconvolveParams
    gives = ("image", "deconvolved")

    #: How error messages name the parameters (a command sets its option names).
    option_names: Mapping[str, str] = MappingProxyType({})

    def _option(self, key: str) -> str:
        return self.option_names.get(key, key)

    def models(self) -> list[dict[str, str]]:
        from cytolens.pipeline.step import model_provenance

        if self.params.method != "network":
            return []
        return [model_provenance(self.model_name)]

    @property
    def model_name(self) -> str | None:
        """The network model used (``method="network"``), else None."""
        from cytolens.restore.network_deconvolution import DEFAULT_DECONVOLVER

        if self.params.method != "network":
            return None
        return self.params.model or DEFAULT_DECONVOLVER

    def prepare(self, image: Image) -> Image:
        """The image as deconvolved: YX or ZYX, with ``voxel_size_um`` as its pixel size.

        Raises
        ------
        InputError
            For more than one channel or time point, a voxel size with a wrong
            number of values, or ``tv`` too large for the image's dimensionality.
        """
        keep = [i for i, a in enumerate(image.axes) if a in "ZYX" or image.shape[i] != 1]
        axes = "".join(image.axes[i] for i in keep)
        if axes not in ("YX", "ZYX"):
            raise InputError(
                f"{image.path}: axes {image.axes!r} with shape {image.shape}; deconvolution needs "
                f"one channel and one time point (YX or ZYX); split the file first"
            )
        tv, ndim = self.params.tv, len(axes)
        if not tv < 1 / (2 * ndim):
            raise InputError(
                f"{self._option('tv')} {tv:g} must be below {1 / (2 * ndim):.3g} for a "
                f"{ndim}D image"
            )
        data = image.data.reshape(tuple(image.shape[i] for i in keep))
        given = self.params.voxel_size_um
        spatial = Image(data, axes, dict(image.pixel_size_um), path=image.path)
        if given is not None:  # what the user stated replaces the file's, and is recorded
            voxel = _per_axis(given, spatial, self._option("voxel_size_um"))
            spatial = Image(data, axes, dict(zip(axes, voxel, strict=True)), path=image.path)
        return spatial

    def kernel(self, image: Image) -> np.ndarray:
        """The PSF for ``image`` (from :meth:`prepare`): loaded, or computed for its voxel size.

        Raises
        ------
        InputError
            A PSF of other dimensionality, or a theoretical PSF for an image
            whose voxel size is unknown.
        """
        psf = self.params.psf
        if isinstance(psf, str):
            kernel = _psf(psf)
            if kernel.ndim != image.ndim:
                raise InputError(
                    f"{self._option('psf')} {psf}: a {kernel.ndim}D PSF (shape {kernel.shape}) "
                    f"for the {image.ndim}D image {image.path} (shape {image.shape}); give a PSF "
                    "with one axis per image axis"
                )
            return kernel
        sizes = image.pixel_size_um
        if not all(a in sizes for a in image.axes):
            option = self._option("voxel_size_um")
            raise InputError(
                f"{image.path} does not state its voxel size along {image.axes!r} (has {sizes}); "
                f"give {option}, e.g. {option} 0.3,0.1,0.1 (um, in {image.axes} order)"
            )
        voxel = tuple(float(sizes[a]) for a in image.axes)
        return _theoretical(psf, tuple(image.shape), voxel)

    def describe_psf(self, kernel: np.ndarray) -> str:
        """One line on the PSF used, e.g. ``"measured bead.tif, shape (31, 63, 63)"``."""
        psf = self.params.psf
        if isinstance(psf, str):
            return f"measured {Path(psf).name}, shape {kernel.shape}"
        return f"theoretical {psf.kind}, NA {psf.na}, {psf.wavelength_um} um, shape {kernel.shape}"

    def chunks(self, image: Image) -> tuple[int, ...] | None:
        """The chunk shape: ``chunk_shape`` per axis; for Dask data about 512 MiB of work."""
        given = self.params.chunk_shape
        if given is not None:
            return tuple(int(c) for c in _per_axis(given, image, self._option("chunk_shape")))
        if is_dask(image.data):  # a lazily read (large) image: ~12 float32 copies of a chunk
            from cytolens.core.tiling import tile_shape_for_budget

            return tile_shape_for_budget(image.shape, 4 * 12, max_bytes=512 * 2**20)
        return None

    def deconvolve(
        self,
        image: Image,
        kernel: np.ndarray,
        *,
        out: Any = None,
        progress: bool | Callable[[int, int], None] = False,
    ) -> tuple[Any, list[dict[str, float]]]:
        """Deconvolve ``image`` (from :meth:`prepare`) with ``kernel`` (from :meth:`kernel`).

        Parameters
        ----------
        out : array_like, optional
            Written chunk by chunk (e.g. a Zarr array on disk) and returned.
        progress : bool or callable
            As for :func:`cytolens.restore.deconvolve`.

        Returns
        -------
        result : numpy.ndarray, dask.array.Array or ``out``
        history : list of dict
            Per iteration (empty for chunked, Dask and network runs).
        """
        from cytolens.restore import deconvolve

        p = self.params
        chunks = self.chunks(image)
        if p.method == "network":
            options: dict[str, Any] = {"model": self.model_name}
        else:
            options = dict(
                iterations=p.iterations,
                alpha=p.alpha,
                beta=p.beta,
                order=p.order,
                acceleration=p.acceleration,
                tv=p.tv,
                background=p.background,
            )
        history = p.method != "network" and chunks is None and not is_dask(image.data)
        result = deconvolve(
            image.data,
            kernel,
            method=p.method,
            chunk_shape=chunks,
            device=p.device,
            out=out,
            return_history=history,
            progress=progress,
            **options,
        )
        return result if history else (result, [])

    def summary(self, kernel: np.ndarray, history: list[dict[str, float]]) -> dict[str, Any]:
        """The row: method, psf, model, iterations_run, final_relative_change."""
        from cytolens.restore import DEFAULT_ITERATIONS

        p = self.params
        if p.method == "network":
            iterations = 0
        else:
            iterations = len(history) or p.iterations or DEFAULT_ITERATIONS[p.method]
        return {
            "method": p.method,
            "psf": self.describe_psf(kernel),
            "model": self.model_name,
            "iterations_run": iterations,
            "final_relative_change": history[-1]["relative_change"] if history else None,
        }

    def run(self, item: Item, *, progress: bool | Callable[[int, int], None] = False) -> None:
        image = self.prepare(item.image)
        kernel = self.kernel(image)
        result, history = self.deconvolve(image, kernel, progress=progress)
        item.image = Image(result, image.axes, dict(image.pixel_size_um), path=image.path)
        item.images["deconvolved"] = item.image
        item.row.update(self.summary(kernel, history))


class DenoiseParams(StepParams):
    """Parameters of ``restore.denoise`` (see :func:`cytolens.restore.denoise`)."""

    model: str = Field("denoise-w2s-v1", description="shipped denoiser name or model folder")
    tile_shape: int = Field(512, ge=16)
    device: str = "auto"


class Denoise(Step):
    """Denoise the item's image with a learned model; it replaces the image and is written.

    The row gets the input's applicability (``ood_score``, ``domain_percentile``,
    ``in_domain``) and ``warning`` (the model's notes on the input, joined by
    :data:`~cytolens.pipeline.step.NOTES_SEPARATOR`, empty when none); an
    out-of-domain input also warns.

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

    def run(self, item: Item, *, progress: bool | Callable[[int, int], None] = False) -> None:
        """Denoise ``item``; ``progress(done, total)`` follows the tiles."""
        from cytolens.restore.denoise import _restorer

        p = self.params
        image = item.image
        result, info = _restorer(p.model, p.device).restore(
            image.data,
            axes=image.axes,
            tile_shape=p.tile_shape,
            name=item.source.name,
            progress=progress,
        )
        item.image = Image(result, image.axes, dict(image.pixel_size_um), path=image.path)
        item.images["denoised"] = item.image
        item.row.update(
            {k: info[k] for k in ("ood_score", "domain_percentile", "in_domain") if k in info}
        )
        item.row["warning"] = NOTES_SEPARATOR.join(info["warnings"])
