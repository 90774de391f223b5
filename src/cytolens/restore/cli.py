"""``cytolens restore ...``: deconvolution from the command line.

The command only parses arguments into the parameters of the pipeline step
``restore.deconvolve`` (:class:`cytolens.restore.steps.Deconvolve`, the values
a pipeline YAML accepts), reads the file with :mod:`cytolens.io`, runs the
step and writes the result, plus a before/after PNG of maximum projections
next to it.

Everything that can be checked without the pixels is checked first: option
values (one line naming the option), the output (never an input, the PSF or
a folder; see :func:`cytolens.core.files.check_output_file`). With
``--chunk-shape`` (or an image too large to read whole) memory stays bounded
from reading to writing: chunks go to a scratch store on disk, the output is
written from it and the PNG from small previews (see
:mod:`cytolens.restore.chunked_files`); that path calls the step's
:meth:`~cytolens.restore.steps.Deconvolve.deconvolve` with the scratch store
as ``out``, since an :class:`~cytolens.pipeline.Item` holds its image in memory.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from cytolens.core.errors import InputError, MissingFileError, OutputError
from cytolens.core.options import at_least, finite, non_negative, parse_floats, positive
from cytolens.core.summary import strict_json

app = typer.Typer(
    help="Restore images: fast deconvolution (Richardson-Lucy, Wiener-Butterworth).",
    no_args_is_help=True,
)
console = Console(stderr=True)


@app.callback()
def _group() -> None:
    """Restore images: fast deconvolution (Richardson-Lucy, Wiener-Butterworth)."""


_OUT_SUFFIXES = (".tif", ".tiff", ".ome.tif", ".ome.tiff", ".ome.zarr", ".zarr")
#: How the restore.deconvolve step's errors name its parameters here.
_OPTION_NAMES = {
    "psf": "--psf",
    "voxel_size_um": "--voxel-size",
    "chunk_shape": "--chunk-shape",
    "tv": "--tv",
}


@contextmanager
def _named(image: Path, background: float) -> Iterator[None]:
    """Re-raise the API's errors naming the input file and the options at fault."""
    from cytolens.restore.deconvolution import NoSignalError

    try:
        yield
    except NoSignalError as exc:
        if exc.background:
            raise InputError(
                f"--background {exc.background:g} is at or above the maximum of {image} "
                f"({exc.maximum:g}): nothing positive is left to deconvolve; give the camera "
                f"offset, below {exc.maximum:g}"
            ) from None
        raise InputError(
            f"{image} has no positive signal to deconvolve: its maximum is {exc.maximum:g} "
            f"(--background {exc.background:g}); Richardson-Lucy needs non-negative data"
        ) from None
    except OutputError:
        raise
    except InputError as exc:
        raise InputError(f"{image}: {exc}") from None


def _beta(text: str) -> float | str:
    if text == "auto":
        return text
    (value,) = parse_floats(text, "--beta", count=(1,))
    if not value < 1:
        raise InputError(f"--beta {text!r}: must be 'auto' or a number between 0 and 1")
    return value


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
        float | None,
        typer.Option("--na", help="Numerical aperture (theoretical PSF).", callback=positive),
    ] = None,
    wavelength: Annotated[
        float | None,
        typer.Option(
            "--wavelength", help="Emission wavelength, um (theoretical PSF).", callback=positive
        ),
    ] = None,
    refractive_index: Annotated[
        float,
        typer.Option(
            "--refractive-index",
            help="Immersion index: 1.33 water, 1.515 oil.",
            callback=positive,
        ),
    ] = 1.33,
    voxel_size: Annotated[
        str | None,
        typer.Option("--voxel-size", help="Voxel size in um, Z,Y,X (default: from the file)."),
    ] = None,
    psf_kind: Annotated[
        str, typer.Option("--psf-kind", help="widefield, confocal or lightsheet.")
    ] = "widefield",
    excitation_wavelength: Annotated[
        float | None,
        typer.Option("--excitation-wavelength", help="Confocal excitation, um.", callback=positive),
    ] = None,
    sheet_fwhm: Annotated[
        float | None,
        typer.Option("--sheet-fwhm", help="Light-sheet thickness (FWHM), um.", callback=positive),
    ] = None,
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="wiener-butterworth, richardson-lucy, or network (one pass of a trained 3-D "
            "network, see --model).",
        ),
    ] = "wiener-butterworth",
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="Network deconvolution model (--method network): default decon-llsm-v1."
        ),
    ] = None,
    iterations: Annotated[
        int | None,
        typer.Option(
            "--iterations", "-n", help="Iterations (default 2 WB, 30 RL).", callback=at_least(1)
        ),
    ] = None,
    alpha: Annotated[
        float, typer.Option("--alpha", help="Wiener parameter (WB).", callback=positive)
    ] = 0.05,
    beta: Annotated[
        str, typer.Option("--beta", help="Cutoff gain (WB), 'auto' = OTF gain at resolution limit.")
    ] = "auto",
    order: Annotated[
        int, typer.Option("--order", help="Butterworth order (WB).", callback=at_least(1))
    ] = 10,
    acceleration: Annotated[
        str | None, typer.Option("--acceleration", help="biggs-andrews (RL).")
    ] = None,
    tv: Annotated[
        float,
        typer.Option("--tv", help="Total-variation weight, e.g. 0.002.", callback=non_negative),
    ] = 0.0,
    background: Annotated[
        float,
        typer.Option("--background", help="Camera offset to subtract first.", callback=finite),
    ] = 0.0,
    chunk_shape: Annotated[
        str | None,
        typer.Option(
            "--chunk-shape",
            help="Deconvolve in chunks, e.g. 64,512,512 (memory then bounded by the chunk).",
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON summary on stdout.")
    ] = False,
) -> None:
    """Deconvolve IMAGE with a measured (--psf) or theoretical (--na --wavelength) PSF."""
    from cytolens.core.devices import resolve_device
    from cytolens.core.files import check_output_file
    from cytolens.io import imread
    from cytolens.pipeline import Item, make_step
    from cytolens.report import image_panel, save_figure
    from cytolens.restore import METHODS
    from cytolens.restore.chunked_files import (
        bound_heap,
        preview,
        release_memory,
        scratch_array,
        write_from_scratch,
        write_output,
    )
    from cytolens.restore.psf import PSF_KINDS

    t0 = time.perf_counter()
    # everything that can be checked without reading pixels, before any work
    for option, value, choices in (
        ("--method", method, (*METHODS, "network")),
        ("--psf-kind", psf_kind, PSF_KINDS),
        ("--acceleration", acceleration, (None, "biggs-andrews")),
    ):
        if value not in choices:
            expected = ", ".join(str(c) for c in choices if c is not None)
            raise InputError(
                f"{option}: unknown {option[2:]} {value!r}; expected one of {expected}"
            )
    try:
        resolve_device(device)
    except InputError as exc:
        raise InputError(f"--device: {exc}") from None
    if model is not None and method != "network":
        raise InputError(f"--model is for --method network, not --method {method}")
    if method == "network" and (iterations is not None or tv or background or acceleration):
        raise InputError(
            "--method network is one forward pass of a trained network: --iterations, --tv, "
            "--background and --acceleration do not apply (subtract the offset first)"
        )
    if not image.exists():
        raise MissingFileError(f"{image}: no such file or folder")
    if not out.name.lower().endswith(_OUT_SUFFIXES):
        raise InputError(f"--out {out} must end with one of {', '.join(_OUT_SUFFIXES)}")
    if (psf is None) == (na is None or wavelength is None):
        raise InputError(
            "give either --psf FILE (a measured PSF) or --na and --wavelength (a theoretical "
            "PSF), not both"
        )
    if psf is not None and not psf.exists():
        raise MissingFileError(f"--psf {psf}: no such file")
    if na is not None and not na < refractive_index:
        raise InputError(
            f"--na {na:g} must be below --refractive-index {refractive_index:g} (the NA of an "
            "objective is at most the index of its immersion medium)"
        )
    voxel_given = parse_floats(voxel_size, "--voxel-size", count=(1, 2, 3))
    beta_value = _beta(beta)
    chunk_given = parse_floats(chunk_shape, "--chunk-shape", count=(1, 2, 3))
    if chunk_given is not None and not all(v == int(v) for v in chunk_given):
        raise InputError(f"--chunk-shape {chunk_shape!r}: expected whole numbers of pixels")
    protected = (image, psf)
    out = check_output_file(out, protected=protected)
    png = out.with_name(out.name.split(".")[0] + "_before_after.png")
    check_output_file(png, protected=protected, option="the before/after PNG of --out")
    if method == "network":
        params: dict[str, Any] = {"method": method, "model": model}
    else:
        params = dict(
            method=method,
            iterations=iterations,
            alpha=alpha,
            beta=beta_value,
            order=order,
            acceleration=acceleration,
            tv=tv,
            background=background,
        )
    params.update(
        psf=str(psf)
        if psf is not None
        else {
            "na": na,
            "wavelength_um": wavelength,
            "refractive_index": refractive_index,
            "kind": psf_kind,
            "excitation_wavelength_um": excitation_wavelength,
            "sheet_fwhm_um": sheet_fwhm,
        },
        voxel_size_um=None if voxel_given is None else list(voxel_given),
        chunk_shape=None if chunk_given is None else [int(v) for v in chunk_given],
        device=device,
    )

    # the same step and parameters as a pipeline's restore.deconvolve
    step = make_step("restore.deconvolve", params, where="options")
    step.option_names = _OPTION_NAMES

    img = step.prepare(imread(image))  # YX or ZYX, with --voxel-size as its pixel size
    kernel = step.kernel(img)
    psf_note = step.describe_psf(kernel)
    chunks = step.chunks(img)
    axes, sizes, ndim = img.axes, dict(img.pixel_size_um), img.ndim
    before = preview(img.data)
    if chunks is not None:  # chunk by chunk, from the file to a scratch store on disk
        console.print(f"deconvolving {image.name} {img.shape} chunk by chunk ({psf_note})")
        bound_heap()
        with scratch_array(out, img.shape) as scratch:
            with _named(image, background):
                step.deconvolve(img, kernel, out=scratch, progress=True)
            del img  # from here on only the scratch store holds the result
            after = preview(scratch)
            release_memory()
            written = write_from_scratch(out, scratch, axes=axes, pixel_size_um=sizes)
        row = step.summary(kernel, [])  # every chunk ran all iterations: no history
    else:
        from cytolens.core.progress import progress_bar

        item = Item(image, out.name.split(".")[0], img)
        del img  # only the item holds the pixels, so they can be freed before writing
        with progress_bar() as bar, _named(image, background):
            task = bar.add_task(f"deconvolving {image.name} ({psf_note})", total=None)
            step.run(item, progress=lambda k, n: bar.update(task, completed=k, total=n))
        result, row = item.image.data, item.row
        del item
        after = preview(result)
        written = write_output(out, result, axes=axes, pixel_size_um=sizes)
        del result
    mip = " (max projection)" if ndim == 3 else ""
    fig = image_panel({f"before: {image.name}{mip}": before, f"after: {method}{mip}": after})
    save_figure(fig, png)
    summary = {
        "input": str(image),
        "output": str(written),
        "before_after_png": str(png),
        "method": method,
        "psf": row["psf"],
        "model": row["model"],
        "iterations_run": row["iterations_run"],
        "final_relative_change": row["final_relative_change"],
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if as_json:
        typer.echo(strict_json(summary))
    else:
        change = summary["final_relative_change"]
        note = f", last relative change {change:.3g}" if change is not None else ""
        how = (
            f"one pass of {summary['model']}"
            if method == "network"
            else f"{summary['iterations_run']} iteration(s){note}"
        )
        console.print(f"[green]wrote[/] {written} and {png.name} in {summary['seconds']} s ({how})")


# ---------------------------------------------------------------------------- denoising
#: Before/after panels embedded in the denoising report (all are written as PNG files).
REPORT_PANELS = 24


@app.command("denoise")
def denoise_command(
    images: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    model: Annotated[
        str, typer.Option("--model", help="Shipped denoiser name or a model folder.")
    ] = "denoise-w2s-v1",
    axes: Annotated[
        str | None,
        typer.Option("--axes", help="Axes of the images, overriding the files' own, e.g. ZYX."),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or mps.")] = "auto",
    tile_shape: Annotated[
        int,
        typer.Option("--tile-shape", help="Tile side in px (halo included).", callback=at_least(1)),
    ] = 512,
    report: Annotated[bool, typer.Option(help="Write report.html with before/after PNGs.")] = True,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Allow an --out folder holding an earlier run.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Denoise images with a learned model: NAME_denoised.tif, NAME_before_after.png, a table.

    Each output is float32 on the input's intensity scale. denoise.csv lists,
    per image, its applicability to the model (ood_score > 1: outside the
    training domain; the report and the console warn), and report.html shows
    the before/after pictures. An image that fails is listed in failures.csv
    (exit 1); with a single input its error ends the command (exit 2).
    """
    import warnings

    import pandas as pd

    from cytolens.core.axes import check_axes
    from cytolens.core.batch import exit_if_failed, naming_file, run_batch, write_failures
    from cytolens.core.errors import AxesError, CytolensError
    from cytolens.core.files import atomic_path, prepare_output_dir
    from cytolens.core.summary import strict_json
    from cytolens.io import find_images, imread, imwrite, output_stems
    from cytolens.models import load
    from cytolens.models.applicability import OutOfDomainWarning
    from cytolens.pipeline import Item, make_step
    from cytolens.pipeline.step import NOTES_SEPARATOR
    from cytolens.report import image_panel, save_figure
    from cytolens.restore.chunked_files import preview

    if axes is not None:
        try:
            axes = check_axes(axes)
        except AxesError as exc:
            raise AxesError(f"--axes: {exc}") from None
    restorer = load(model, device=device, capability="restore")  # bad model/device: before work
    restorer.check_tile_shape(tile_shape)
    # the same step and parameters as a pipeline's restore.denoise
    step = make_step(
        "restore.denoise",
        {"model": model, "tile_shape": tile_shape, "device": device},
        where="options",
    )
    paths = find_images(images)
    prepare_output_dir(out, protected=paths, overwrite=overwrite)
    names = dict(zip(paths, output_stems(paths), strict=True))

    def process(path: Path) -> dict[str, Any]:
        try:
            return denoise_one(path)
        except CytolensError as exc:
            raise naming_file(path, exc) from None

    def denoise_one(path: Path) -> dict[str, Any]:
        image = imread(path, axes=axes)
        item = Item(path, names[path], image)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OutOfDomainWarning)  # reported below, per image
            step.run(item)
        result = item.images["denoised"].data
        if item.row["warning"]:
            for message in item.row["warning"].split(NOTES_SEPARATOR):
                console.print(f"[yellow]warning:[/] {message}")
        name = names[path]
        tif, png = out / f"{name}_denoised.tif", out / f"{name}_before_after.png"
        imwrite(tif, result, axes=image.axes, pixel_size_um=dict(image.pixel_size_um))
        mip = " (max projection)" if result.ndim > 2 else ""
        ood = item.row.get("ood_score")
        flag = "" if ood is None or ood <= 1 else f"  [OUT OF DOMAIN, ood_score {ood:.2f}]"
        panels = {f"before: {path.name}{mip}": preview(image.data)}
        panels[f"after: {model}{flag}"] = preview(result)
        save_figure(image_panel(panels), png)
        return {
            "image": path.name,
            "output": tif.name,
            "before_after_png": png.name,
            "ood_score": ood,
            "domain_percentile": item.row.get("domain_percentile"),
            "in_domain": item.row.get("in_domain"),
            "warning": item.row["warning"],
        }

    result = run_batch(paths, process, description="denoising", stop_on_error=len(paths) == 1)
    rows = result.results
    table = out / "denoise.csv"
    table.unlink(missing_ok=True)
    summary: dict[str, Any] = {
        "model": restorer.name,
        "images": rows,
        "failed": [f.__dict__ for f in result.failures],
    }
    if rows:
        with atomic_path(table) as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
        summary["table"] = str(table)
    failures_csv = write_failures(out, result.failures)
    if failures_csv is not None:
        summary["failures_csv"] = str(failures_csv)
    if report:
        summary["report"] = str(_denoise_report(out, rows, restorer, result.failures))
    if as_json:
        typer.echo(strict_json(summary))
    else:
        outside = sum(1 for r in rows if r["in_domain"] is False)
        note = f", {outside} outside the model's training domain" if outside else ""
        console.print(f"[green]denoised[/] {len(rows)} image(s){note}; results in {out}")
    exit_if_failed(result, out)


def _denoise_report(
    out: Path, rows: list[dict[str, Any]], restorer: Any, failures: list[Any]
) -> Path:
    from cytolens.core.batch import report_failures
    from cytolens.report import Report

    rep = Report("Denoising")
    rep.text(
        f"Denoised with {restorer.name} ({restorer.card.task}). ood_score is the distance of "
        "each input to the model's training images, calibrated on held-out training-domain "
        "images: above 1 the input lies outside the domain and its restoration may hold "
        "artifacts (learned restoration is brittle outside its training domain)."
    )
    outside = [r for r in rows if r["in_domain"] is False]
    if outside:
        rep.heading("Warnings")
        for r in outside:
            rep.text(f"{r['image']}: {r['warning']}")
    rep.heading("Images")
    rep.table([{k: v for k, v in r.items() if k != "warning"} for r in rows])
    rep.heading("Before / after")
    for r in rows[:REPORT_PANELS]:
        rep.figure(out / r["before_after_png"], caption=r["image"])
    report_failures(rep, failures)
    return rep.save(out / "report.html")


@app.command("train-denoiser")
def train_denoiser_command(
    noisy: Annotated[Path, typer.Option("--noisy", help="Folder (or glob) of noisy images.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write.")],
    clean: Annotated[
        Path | None,
        typer.Option("--clean", help="Folder of clean images, same names (supervised, CARE)."),
    ] = None,
    val_fraction: Annotated[
        float, typer.Option("--val-fraction", help="Share of groups held out for validation.")
    ] = 0.1,
    group_pattern: Annotated[
        str | None,
        typer.Option(
            "--group-pattern",
            help=r"Regex giving a file's group (e.g. '^\d+' for the field of 003_1.png); "
            "groups never straddle the split (default: the file name).",
        ),
    ] = None,
    steps: Annotated[int, typer.Option("--steps", callback=at_least(1))] = 2000,
    patch: Annotated[
        int, typer.Option("--patch", help="Crop side, px.", callback=at_least(16))
    ] = 64,
    batch: Annotated[int, typer.Option("--batch", callback=at_least(1))] = 16,
    lr: Annotated[float, typer.Option("--lr", callback=positive)] = 2e-3,
    threads: Annotated[int, typer.Option("--threads", callback=at_least(1))] = 2,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")] = "cpu",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing model folder.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Train a denoiser: with --clean, supervised (CARE); without, self-supervised (Noise2Void).

    Files are paired by name; the validation split (whole groups, fixed by
    sorted order) is recorded in the card, and calibrates the model's
    applicability reference. Load the result with `cytolens restore denoise
    --model OUT`.
    """
    from cytolens.core.devices import resolve_device
    from cytolens.core.summary import strict_json
    from cytolens.io import find_images
    from cytolens.restore.train_denoiser import pair_files, split_by_group, train_denoiser

    try:
        dev = str(resolve_device(device))
    except InputError as exc:
        raise InputError(f"--device: {exc}") from None
    if out.exists() and not overwrite:
        raise OutputError(f"--out {out} exists; pass --overwrite to replace it")
    noisy_files = find_images([str(noisy)])
    if clean is not None:
        clean_files = find_images([str(clean)])
        if {p.resolve() for p in clean_files} & {p.resolve() for p in noisy_files}:
            raise InputError(f"--clean {clean} and --noisy {noisy} hold the same files")
        items: list[Any] = pair_files(noisy_files, clean_files)
    else:
        items = noisy_files
    train, val = split_by_group(items, val_fraction=val_fraction, group_pattern=group_pattern)
    first = (lambda xs: [x[0] for x in xs]) if clean is not None else (lambda xs: list(xs))
    second = (lambda xs: [x[1] for x in xs]) if clean is not None else (lambda xs: None)
    console.print(
        f"training a {'supervised' if clean is not None else 'self-supervised'} denoiser on "
        f"{len(train)} image(s), validating on {len(val)}"
    )
    t0 = time.perf_counter()
    _, card = train_denoiser(
        first(train),
        second(train),
        val_noisy=first(val),
        val_clean=second(val),
        out=out,
        steps=steps,
        patch=patch,
        batch=batch,
        lr=lr,
        threads=threads,
        seed=seed,
        device=dev,
        training_command="cytolens restore train-denoiser "
        f"--noisy {noisy}{f' --clean {clean}' if clean else ''} --steps {steps}",
        progress=True,
    )
    summary = {
        "model": str(out),
        "mode": card.parameters["training_mode"],
        "train_images": len(train),
        "val_images": len(val),
        "final_val_loss": card.training.get("final_val_loss"),
        "ood_limit": card.applicability.get("limit"),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if as_json:
        typer.echo(strict_json(summary))
    else:
        console.print(
            f"[green]wrote[/] {out} ({summary['mode']}, validation loss "
            f"{summary['final_val_loss']}) in {summary['seconds']} s"
        )


@app.command("train-deconvolver")
def train_deconvolver_command(
    psf: Annotated[Path, typer.Option("--psf", help="Measured 3-D PSF (bead) file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write.")],
    steps: Annotated[int, typer.Option("--steps", callback=at_least(1))] = 300,
    iterations: Annotated[
        int | None,
        typer.Option(
            "--iterations",
            help="Wiener-Butterworth iterations of the target (default: the best of 1-12 on "
            "simulated volumes).",
            callback=at_least(1),
        ),
    ] = None,
    crop: Annotated[
        str, typer.Option("--crop", help="PSF window Z,Y,X around its peak (voxels).")
    ] = "31,25,25",
    threads: Annotated[int, typer.Option("--threads", callback=at_least(1))] = 2,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing model folder.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Train a network deconvolution model for a PSF (reproduces Wiener-Butterworth).

    Simulated spheres, filaments and points are blurred with the PSF plus
    Poisson noise; the target is Wiener-Butterworth deconvolution of each
    noisy volume. Use the result with
    `deconvolve(image, psf, method="network", model=OUT)`.
    """
    from cytolens.restore.network_deconvolution import train_deconvolver

    if not psf.is_file():
        raise MissingFileError(f"--psf {psf}: no such file")
    if out.exists() and not overwrite:
        raise OutputError(f"--out {out} exists; pass --overwrite to replace it")
    try:
        window = tuple(int(v) for v in crop.split(","))
    except ValueError:
        raise InputError(f"--crop {crop!r}: expected three integers Z,Y,X") from None
    if len(window) != 3 or min(window) < 1:
        raise InputError(f"--crop {crop!r}: expected three positive integers Z,Y,X")
    t0 = time.perf_counter()
    folder = train_deconvolver(
        psf,
        out,
        steps=steps,
        iterations=iterations,
        crop=window,
        threads=threads,
        seed=seed,
        progress=not as_json,
        training_command=f"cytolens restore train-deconvolver --psf {psf.name} --steps {steps}",
    )
    from cytolens.models import load_card

    card = load_card(folder.name, root=folder.parent)
    summary = {
        "model": str(folder),
        "wb_iterations": card.training.get("wb_iterations"),
        "final_val_loss": card.training.get("final_val_loss"),
        "ood_limit": card.applicability.get("limit"),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if as_json:
        typer.echo(strict_json(summary))
    else:
        console.print(
            f"[green]wrote[/] {folder} (target: Wiener-Butterworth, {summary['wb_iterations']} "
            f"iterations; validation loss {summary['final_val_loss']}) in {summary['seconds']} s"
        )
