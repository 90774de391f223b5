"""``cytolens restore ...``: deconvolution from the command line.

The command only parses arguments, reads files with :mod:`cytolens.io`, calls
:func:`cytolens.restore.deconvolve` and writes the result, plus a before/after
PNG of maximum projections next to it.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console

from cytolens.core.errors import InputError, MissingFileError

app = typer.Typer(
    help="Restore images: fast deconvolution (Richardson-Lucy, Wiener-Butterworth).",
    no_args_is_help=True,
)
console = Console(stderr=True)


@app.callback()
def _group() -> None:
    """Restore images: fast deconvolution (Richardson-Lucy, Wiener-Butterworth)."""


_OUT_SUFFIXES = (".tif", ".tiff", ".ome.tif", ".ome.tiff", ".ome.zarr", ".zarr")


def _floats(text: str | None, name: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise InputError(
            f"{name} {text!r} must be numbers separated by commas, e.g. 0.3,0.1,0.1"
        ) from None


def _spatial(image: Any) -> Any:
    """The image with singleton non-spatial axes dropped; must end up YX or ZYX."""
    from cytolens.core.image import Image

    keep = [i for i, a in enumerate(image.axes) if a in "ZYX" or image.shape[i] != 1]
    axes = "".join(image.axes[i] for i in keep)
    if axes not in ("YX", "ZYX"):
        raise InputError(
            f"{image.path}: axes {image.axes!r} with shape {image.shape}; deconvolution needs one "
            f"channel and one time point (YX or ZYX); split the file first"
        )
    data = image.data.reshape(tuple(image.shape[i] for i in keep))
    return Image(data, axes, dict(image.pixel_size_um), path=image.path)


def _voxel_size(image: Any, given: tuple[float, ...] | None) -> tuple[float, ...]:
    ndim = len(image.axes)
    if given is not None:
        if len(given) == 1:
            given = given * ndim
        if len(given) != ndim:
            raise InputError(
                f"--voxel-size {given} must give {ndim} values ({', '.join(image.axes)}) or one"
            )
        return given
    sizes = image.pixel_size_um
    if all(a in sizes for a in image.axes):
        return tuple(sizes[a] for a in image.axes)
    raise InputError(
        f"{image.path} does not state its voxel size along {image.axes!r} (has {sizes}); "
        f"pass --voxel-size, e.g. --voxel-size 0.3,0.1,0.1 (um, in {image.axes} order)"
    )


def _theoretical_shape(
    image_shape: tuple[int, ...], voxel: tuple[float, ...], na: float, wavelength: float, n: float
) -> tuple[int, ...]:
    """Odd PSF shape: ~5 Airy rings laterally, 3 axial FWHMs each way, within the image."""
    lateral = 3.0 * wavelength / na
    axial = 3.0 * 2.0 * wavelength * n / na**2
    halves = [math.ceil(lateral / v) for v in voxel[-2:]]
    if len(image_shape) == 3:
        halves.insert(0, math.ceil(axial / voxel[0]))
    return tuple(
        min(2 * h + 1, s if s % 2 else s - 1) if s > 1 else 1
        for h, s in zip(halves, image_shape, strict=True)
    )


@app.command()
def deconvolve(
    image: Annotated[
        Path, typer.Argument(help="2D (YX) or 3D (ZYX) image: TIFF, OME-TIFF, OME-Zarr.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .tif, .ome.tif or .ome.zarr.")],
    psf: Annotated[
        Path | None, typer.Option("--psf", help="Measured PSF (bead image); background removed.")
    ] = None,
    na: Annotated[
        float | None, typer.Option("--na", help="Numerical aperture (theoretical PSF).")
    ] = None,
    wavelength: Annotated[
        float | None,
        typer.Option("--wavelength", help="Emission wavelength, um (theoretical PSF)."),
    ] = None,
    refractive_index: Annotated[
        float, typer.Option("--refractive-index", help="Immersion index: 1.33 water, 1.515 oil.")
    ] = 1.33,
    voxel_size: Annotated[
        str | None,
        typer.Option("--voxel-size", help="Voxel size in um, Z,Y,X (default: from the file)."),
    ] = None,
    psf_kind: Annotated[
        str, typer.Option("--psf-kind", help="widefield, confocal or lightsheet.")
    ] = "widefield",
    excitation_wavelength: Annotated[
        float | None, typer.Option("--excitation-wavelength", help="Confocal excitation, um.")
    ] = None,
    sheet_fwhm: Annotated[
        float | None, typer.Option("--sheet-fwhm", help="Light-sheet thickness (FWHM), um.")
    ] = None,
    method: Annotated[
        str, typer.Option("--method", help="wiener-butterworth or richardson-lucy.")
    ] = "wiener-butterworth",
    iterations: Annotated[
        int | None, typer.Option("--iterations", "-n", help="Iterations (default 2 WB, 30 RL).")
    ] = None,
    alpha: Annotated[float, typer.Option("--alpha", help="Wiener parameter (WB).")] = 0.05,
    beta: Annotated[
        str, typer.Option("--beta", help="Cutoff gain (WB), 'auto' = OTF gain at resolution limit.")
    ] = "auto",
    order: Annotated[int, typer.Option("--order", help="Butterworth order (WB).")] = 10,
    acceleration: Annotated[
        str | None, typer.Option("--acceleration", help="biggs-andrews (RL).")
    ] = None,
    tv: Annotated[float, typer.Option("--tv", help="Total-variation weight, e.g. 0.002.")] = 0.0,
    background: Annotated[
        float, typer.Option("--background", help="Camera offset to subtract first.")
    ] = 0.0,
    chunk_shape: Annotated[
        str | None, typer.Option("--chunk-shape", help="Deconvolve in chunks, e.g. 64,512,512.")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON summary on stdout.")
    ] = False,
) -> None:
    """Deconvolve IMAGE with a measured (--psf) or theoretical (--na --wavelength) PSF."""
    from cytolens.io import imread, imwrite
    from cytolens.report import image_panel, save_figure
    from cytolens.restore import DEFAULT_ITERATIONS, load_psf, theoretical_psf
    from cytolens.restore import deconvolve as run_deconvolve

    t0 = time.perf_counter()
    if not image.exists():
        raise MissingFileError(f"{image}: no such file or folder")
    if not out.name.lower().endswith(_OUT_SUFFIXES):
        raise InputError(f"--out {out} must end with one of {', '.join(_OUT_SUFFIXES)}")
    if (psf is None) == (na is None or wavelength is None):
        raise InputError(
            "give either --psf FILE (a measured PSF) or --na and --wavelength (a theoretical "
            "PSF), not both"
        )
    img = _spatial(imread(image))
    if psf is not None:
        if not psf.exists():
            raise MissingFileError(f"--psf {psf}: no such file")
        kernel = load_psf(psf)
        psf_note = f"measured {psf.name}, shape {kernel.shape}"
    else:
        voxel = _voxel_size(img, _floats(voxel_size, "--voxel-size"))
        shape = _theoretical_shape(img.shape, voxel, na, wavelength, refractive_index)
        kernel = theoretical_psf(
            shape,
            na=na,
            wavelength_um=wavelength,
            voxel_size_um=voxel,
            refractive_index=refractive_index,
            kind=psf_kind,
            excitation_wavelength_um=excitation_wavelength,
            sheet_fwhm_um=sheet_fwhm,
        )
        psf_note = f"theoretical {psf_kind}, NA {na}, {wavelength} um, shape {kernel.shape}"
    data = img.data.astype(np.float32)
    if background:
        data = data - np.float32(background)
    chunks = _floats(chunk_shape, "--chunk-shape")
    options = dict(
        method=method,
        iterations=iterations,
        alpha=alpha,
        beta=beta if beta == "auto" else _floats(beta, "--beta")[0],
        order=order,
        acceleration=acceleration,
        tv=tv,
        device=device,
    )
    chunked = img.is_lazy or chunks is not None
    history: list[dict[str, float]] = []
    if chunked:
        console.print(f"deconvolving {image.name} {img.shape} chunk by chunk ({psf_note})")
        result = run_deconvolve(
            data,
            kernel,
            chunk_shape=None if chunks is None else tuple(int(c) for c in chunks),
            progress=not img.is_lazy,
            **options,
        )
    else:
        from cytolens.core.progress import progress_bar

        with progress_bar() as bar:
            task = bar.add_task(f"deconvolving {image.name} ({psf_note})", total=None)
            result, history = run_deconvolve(
                data,
                kernel,
                return_history=True,
                progress=lambda k, n: bar.update(task, completed=k, total=n),
                **options,
            )
    written = imwrite(out, result, axes=img.axes, pixel_size_um=img.pixel_size_um or None)
    after = imread(written).data
    before_mip = np.asarray(img.data.max(axis=0) if img.ndim == 3 else img.data)
    after_mip = np.asarray(after.max(axis=0) if after.ndim == 3 else after)
    png = written.with_name(written.name.split(".")[0] + "_before_after.png")
    fig = image_panel(
        {
            f"before: {image.name}" + (" (max projection)" if img.ndim == 3 else ""): before_mip,
            f"after: {method}" + (" (max projection)" if img.ndim == 3 else ""): after_mip,
        }
    )
    save_figure(fig, png)
    summary = {
        "input": str(image),
        "output": str(written),
        "before_after_png": str(png),
        "method": method,
        "psf": psf_note,
        "iterations_run": len(history) if history else (iterations or DEFAULT_ITERATIONS[method]),
        "final_relative_change": history[-1]["relative_change"] if history else None,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        change = summary["final_relative_change"]
        note = f", last relative change {change:.3g}" if change is not None else ""
        console.print(
            f"[green]wrote[/] {written} and {png.name} in {summary['seconds']} s "
            f"({summary['iterations_run']} iteration(s){note})"
        )
