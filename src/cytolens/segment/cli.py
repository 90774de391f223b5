"""``cytolens segment ...``: batch nucleus segmentation and measurement from the command line.

The command parses arguments into the parameters of the pipeline steps
``segment.nuclei`` and ``segment.measure`` (:mod:`cytolens.segment.steps`, the
same values a pipeline YAML accepts), runs them on each image, and writes the
results from what they leave on the item (labels, table, summary row); errors
are raised as :class:`~cytolens.core.errors.CytolensError` for the main
command line to print as one line.

Before any work: numeric options are checked where they are parsed, the
``--axes`` letters, the model, device and tile size, and the output folder
(:func:`~cytolens.core.files.prepare_output_dir`: new or empty unless
``--overwrite``, never holding an input). Each image then runs through
:func:`~cytolens.core.batch.run_batch`: everything about it (axes against its
shape, size, diameter, finite measurements) is checked and computed before
its three files are written, so a bad image fails alone, leaves no file of
its own, and is listed in ``failures.csv`` and the report (exit 1). With a
single input, its error is the command's (exit 2).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from cytolens.core.errors import CytolensError, InputError
from cytolens.core.options import at_least, positive

__all__ = ["app"]

app = typer.Typer(
    help="Segment nuclei and measure them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _group() -> None:
    """Segment nuclei and measure them."""


#: Colour of the nucleus outlines in overlays (RGB).
#: Overlays embedded in the HTML report (all are written as PNG files).
REPORT_OVERLAYS = 24


class Method(str, Enum):
    """Which segmenter runs."""

    model = "model"
    classical = "classical"


class LabelFormat(str, Enum):
    """How label images are written (``--format``)."""

    auto = "auto"
    tif = "tif"
    zarr = "zarr"


def _display_plane(image: Any) -> np.ndarray:
    """What the overlay shows: RGB(A) as colour, else the plane the segmenter used."""
    from cytolens.core.plane import single_plane
    from cytolens.segment.preprocess import SEGMENT_HINT

    data = np.asarray(image.data)
    if image.axes == "YXC" and data.shape[-1] in (3, 4):
        return data[..., :3]
    return single_plane(image, hint=SEGMENT_HINT)[0]


@dataclass
class _Done:
    """What one image left: its summary row, its table and its overlay."""

    row: dict[str, Any]
    table: Any
    overlay: Path


def _write_all(writes: list[tuple[Path, Callable[[Path], Any]]]) -> None:
    """Write every output of one image (each atomically); on any failure remove those written."""
    done: list[Path] = []
    try:
        for target, write in writes:
            write(target)
            done.append(target)
    except BaseException:
        for target in done:
            target.unlink(missing_ok=True)
        raise


@app.command("nuclei")
def nuclei_command(
    images: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    method: Annotated[
        Method, typer.Option(help="'model' (deep learning) or 'classical' (Otsu + watershed).")
    ] = Method.model,
    model: Annotated[str, typer.Option(help="Shipped model name.")] = "nuclei-v2",
    diameter: Annotated[
        float | None,
        typer.Option(
            help="Typical nucleus diameter in pixels (default: estimated per image); "
            "between 3 px and the image's shorter side.",
            callback=positive,
        ),
    ] = None,
    diameter_um: Annotated[
        float | None,
        typer.Option(
            "--diameter-um",
            help="Typical nucleus diameter in um (needs --pixel-size-um or a pixel size in "
            "the file).",
            callback=positive,
        ),
    ] = None,
    pixel_size_um: Annotated[
        float | None,
        typer.Option(
            "--pixel-size-um",
            help="Pixel size in um for measurements (default: from the file).",
            callback=positive,
        ),
    ] = None,
    channel: Annotated[
        int | None, typer.Option(help="Index of the nuclear channel (RGB is averaged).")
    ] = None,
    axes: Annotated[
        str | None,
        typer.Option(help="Axes of the images, overriding the files' own, e.g. CYX."),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    tile_shape: Annotated[
        int,
        typer.Option(
            "--tile-shape",
            help="Tile size (px at the network's scale; more than twice the model's overlap).",
            callback=at_least(1),
        ),
    ] = 512,
    report: Annotated[bool, typer.Option(help="Write report.html with overlays.")] = True,
    roi: Annotated[
        bool,
        typer.Option("--roi", help="Also write NAME_rois.zip: an ImageJ/Fiji ROI set (outlines)."),
    ] = False,
    geojson: Annotated[
        bool,
        typer.Option("--geojson", help="Also write NAME_nuclei.geojson: outlines for QuPath."),
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Allow an --out folder that holds an earlier run."),
    ] = False,
    label_format: Annotated[
        LabelFormat,
        typer.Option(
            "--format",
            help="Labels as 'tif' or 'zarr' (OME-Zarr written chunk by chunk); 'auto': zarr for "
            "images segmented chunk by chunk (over 4096 x 4096 px, or read lazily), else tif.",
        ),
    ] = LabelFormat.auto,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Segment nuclei: label TIFFs, per-image and combined CSVs, overlay PNGs, an HTML report.

    Per image: NAME_labels.tif (0 = background, 1..N nuclei; uint16 below
    65536 nuclei), NAME_nuclei.csv (one row per nucleus: area, perimeter,
    centroid, diameter, shape, intensity; um columns when the pixel size is
    known) and NAME_overlay.png (outlines on the image). Images over
    4096 x 4096 px, read lazily, or with --format zarr are segmented chunk by
    chunk in bounded memory: NAME_labels.ome.zarr written chunk by chunk,
    measurements per chunk, the overlay drawn on a copy downsampled to at
    most 2048 px (--roi/--geojson are refused there). Then nuclei.csv
    (all images) and report.html. An image that cannot be segmented fails
    alone: the others finish, it is listed in failures.csv and the report,
    and the command exits with 1. With a single input, its error ends the
    command (exit 2) and nothing is written. With --roi and --geojson, each
    image's nucleus outlines also go to NAME_rois.zip (Fiji's ROI Manager)
    and NAME_nuclei.geojson (QuPath detections, pixel coordinates).
    """

    from cytolens.core.axes import check_axes
    from cytolens.core.batch import exit_if_failed, naming_file, run_batch
    from cytolens.core.errors import AxesError
    from cytolens.core.files import atomic_path, prepare_output_dir
    from cytolens.core.summary import strict_json
    from cytolens.io import find_images, imread, imwrite, output_stems
    from cytolens.io.interop import write_geojson
    from cytolens.models.applicability import OutOfDomainWarning, out_of_domain_note
    from cytolens.pipeline import Item, make_step
    from cytolens.report import overlay_outlines
    from cytolens.segment.chunked import chunked_output, segment_to_files
    from cytolens.segment.classical import pixel_size_scalar
    from cytolens.segment.model import _cached
    from cytolens.segment.whole_cells import whole_cell_note

    if diameter is not None and diameter_um is not None:
        raise InputError("give --diameter (pixels) or --diameter-um (micrometres), not both")
    if axes is not None:
        try:
            axes = check_axes(axes)
        except AxesError as exc:
            raise AxesError(f"--axes: {exc}") from None
    paths = find_images(images)
    prepare_output_dir(out, protected=paths, overwrite=overwrite)
    params: dict[str, Any] = {"method": method.value, "channel": channel, "device": device}
    if method is Method.model:  # an unknown model, device or too small a tile fails before any work
        _cached(model, str(device)).check_tile_shape(tile_shape, "--tile-shape")
        params.update(model=model, tile_shape=tile_shape)
    # the same steps and parameters as a pipeline's segment.nuclei -> segment.measure
    segment_step = make_step(
        "segment.nuclei",
        {
            **params,
            "diameter": diameter,
            "diameter_um": diameter_um,
            "pixel_size_um": pixel_size_um,
        },
        where="options",
    )
    measure_step = make_step(
        "segment.measure", {"pixel_size_um": pixel_size_um, "channel": channel}
    )
    names = dict(zip(paths, output_stems(paths), strict=True))

    def process(path: Path) -> _Done:
        try:
            return segment_one(path)
        except CytolensError as exc:
            raise naming_file(path, exc) from None

    def segment_one(path: Path) -> _Done:
        image = imread(path, axes=axes)  # AxesError naming the file when axes do not fit
        size = pixel_size_um
        if size is None:  # the file's own (mean of Y and X), when it states both
            size = pixel_size_scalar(image.pixel_size_um)
        if diameter_um is not None and size is None:
            raise InputError(
                f"{path}: --diameter-um needs a pixel size, and the file states none; "
                f"pass --pixel-size-um or --diameter in pixels"
            )
        if method is Method.model and chunked_output(image, label_format.value):
            if roi or geojson:  # bounded memory: the labels are never held whole
                raise InputError(
                    f"{path}: --roi and --geojson are not written for images segmented chunk by "
                    "chunk (large or --format zarr); drop them or pass a smaller image"
                )
            options = {
                "diameter": diameter_um if diameter_um is not None else diameter,
                "pixel_size_um": size if diameter_um is not None else None,
                "channel": channel,
            }
            return _Done(*segment_to_files(
                _cached(model, str(device)), image, out=out, stem=names[path], name=path.name,
                options=options, pixel_size_um=size, tile_shape=tile_shape,
                zarr=label_format is not LabelFormat.tif,
            ))  # fmt: skip
        item = Item(path, names[path], image)
        with warnings.catch_warnings():
            # both are reported once for the whole run below
            warnings.simplefilter("ignore", OutOfDomainWarning)
            warnings.filterwarnings("ignore", message="warning: .* looks like a whole-cell")
            segment_step.run(item)
        measure_step.run(item)
        labels = item.labels
        table = item.tables["nuclei"].assign(image=path.name)  # the CLI's tables name the file
        overlay = overlay_outlines(_display_plane(image), labels)
        # uint16 (an ImageJ hyperstack every viewer opens) unless there are too many nuclei
        stored = labels.astype(np.uint16) if labels.max() < 2**16 else labels
        name = names[path]
        targets = {
            "labels": out / f"{name}_labels.tif",
            "csv": out / f"{name}_nuclei.csv",
            "overlay": out / f"{name}_overlay.png",
        }

        def write_csv(target: Path) -> None:
            with atomic_path(target) as tmp:
                table.to_csv(tmp, index=False)

        writes = [
            (targets["labels"], lambda t: imwrite(t, stored, axes="YX", pixel_size_um=size)),
            (targets["csv"], write_csv),
            (targets["overlay"], lambda t: imwrite(t, overlay, axes="YXC")),
        ]
        if roi:
            targets["rois"] = out / f"{name}_rois.zip"
            writes.append((targets["rois"], lambda t: _write_rois(t, labels)))
        if geojson:
            targets["geojson"] = out / f"{name}_nuclei.geojson"
            writes.append((targets["geojson"], lambda t: write_geojson(t, labels=labels)))
        _write_all(writes)
        row = {
            "image": path.name,
            **item.row,
            **{
                key: targets[key].name
                for key in ("labels", "csv", "rois", "geojson")
                if key in targets
            },
        }
        return _Done(row, table, targets["overlay"])

    result = run_batch(
        paths,
        process,
        description="segmenting",
        stop_on_error=len(paths) == 1,  # one input: its error is the command's (exit 2)
    )
    done = result.results
    rows = [d.row for d in done]
    summary = _write_tables(out, "nuclei.csv", result)
    note = out_of_domain_note(rows, model) if method is Method.model else None
    scores = [(r["whole_cell_score"], r["image"]) for r in rows if "whole_cell_score" in r]
    whole_cell = [n for score, image in scores if (n := whole_cell_note(score, image))]
    note = "\n".join(n for n in [note, *whole_cell] if n) or None
    if note:
        summary["warnings"] = note.splitlines()
        typer.echo(note, err=True)
    if report:
        overlays = [(d.row["image"], d.overlay) for d in done]
        summary["report"] = str(
            _write_report(out, rows, overlays, method, model, result.failures, note)
        )
    if as_json:
        typer.echo(strict_json(summary))
    else:
        total = sum(r["nuclei"] for r in rows)
        typer.echo(f"{total} nuclei in {len(rows)} image(s); results in {out}")
    exit_if_failed(result, out)


def _write_tables(out: Path, combined_name: str, result: Any) -> dict[str, Any]:
    """The combined CSV of a batch's tables and its failures.csv; the JSON summary naming them.

    ``result`` is :func:`~cytolens.core.batch.run_batch`'s, its results :class:`_Done`.
    """
    import pandas as pd

    from cytolens.core.batch import write_failures
    from cytolens.core.files import atomic_path

    done = result.results
    summary: dict[str, Any] = {
        "images": [d.row for d in done],
        "failed": [f.__dict__ for f in result.failures],
    }
    combined = out / combined_name
    # with --overwrite, an earlier run's combined table must not pass for this run's
    # (write_failures below removes an earlier failures.csv the same way)
    combined.unlink(missing_ok=True)
    if done:
        with atomic_path(combined) as tmp:
            pd.concat([d.table for d in done], ignore_index=True).to_csv(tmp, index=False)
        summary["combined_csv"] = str(combined)
    failures_csv = write_failures(out, result.failures)
    if failures_csv is not None:
        summary["failures_csv"] = str(failures_csv)
    return summary


def _write_rois(target: Path, labels: np.ndarray) -> None:
    """An ImageJ ROI set of the outlines; an empty set for an image without nuclei."""
    from cytolens.io.interop import write_imagej_rois

    write_imagej_rois(target, labels=labels, empty_ok=True)


def _write_report(
    out: Path,
    rows: list[dict[str, Any]],
    overlays: list[tuple[str, Path]],
    method: Method,
    model: str,
    failures: list[Any],
    note: str | None = None,
) -> Path:
    from cytolens.core.batch import report_failures
    from cytolens.report import Report

    rep = Report("Nucleus segmentation")
    what = f"model {model}" if method is Method.model else "classical baseline (Otsu + watershed)"
    rep.text(f"Segmented with the {what}. Per-nucleus measurements are in nuclei.csv.")
    if note:
        rep.text(note)
    rep.heading("Images")
    rep.table(rows)
    rep.heading("Overlays")
    if len(overlays) > REPORT_OVERLAYS:
        rep.text(
            f"The first {REPORT_OVERLAYS} of {len(overlays)} overlays; all are in the output "
            f"folder as <image>_overlay.png."
        )
    for name, png in overlays[:REPORT_OVERLAYS]:
        rep.figure(png, caption=f"{name}: nucleus outlines")
    report_failures(rep, failures)
    return rep.save(out / "report.html")


def _mount_cells() -> None:
    """``cytolens segment cells`` lives in :mod:`.cells_cli`."""
    from cytolens.segment.cells_cli import cells_command

    app.command("cells")(cells_command)


_mount_cells()
