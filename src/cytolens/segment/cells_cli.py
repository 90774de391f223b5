"""``cytolens segment cells``: whole cells from the command line (mounted in :mod:`.cli`).

Same conventions as ``segment nuclei``: the options become the parameters of
the pipeline step ``segment.cells`` (:class:`cytolens.segment.steps.SegmentCells`,
the values a pipeline YAML accepts), the output folder is checked first
(new or empty unless ``--overwrite``), each image runs the step through
:func:`~cytolens.core.batch.run_batch` and writes all its files or none, a bad
image fails alone (``failures.csv``, exit 1) unless it is the only input
(its error is the command's, exit 2).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from cytolens.core.errors import CytolensError, InputError
from cytolens.core.options import at_least, non_negative, positive
from cytolens.segment.cli import Method as NucleusMethod  # how nuclei are found: same choices
from cytolens.segment.cli import _Done, _write_tables

__all__ = ["cells_command"]


class Flood(str, Enum):
    """Where cells seeded by nuclei meet."""

    signal = "signal"
    gradient = "gradient"


def cells_command(
    images: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    nuclear_channel: Annotated[
        int | None,
        typer.Option(
            "--nuclear-channel",
            help="Index of the nuclear stain (seeds the cells); without it cells are split "
            "by the shape of the foreground.",
            callback=non_negative,
        ),
    ] = None,
    cell_channel: Annotated[
        list[int] | None,
        typer.Option(
            "--cell-channel",
            help="Index of a cytoplasm/membrane channel (repeat for several; default: every "
            "channel but the nuclear one).",
        ),
    ] = None,
    axes: Annotated[
        str | None, typer.Option(help="Axes of the images, overriding the files' own, e.g. CYX.")
    ] = None,
    pixel_size_um: Annotated[
        float | None,
        typer.Option(
            "--pixel-size-um",
            help="Pixel size in um for measurements (default: from the file).",
            callback=positive,
        ),
    ] = None,
    cell_diameter: Annotated[
        float | None,
        typer.Option(
            help="Typical cell diameter in pixels (default: estimated).", callback=positive
        ),
    ] = None,
    nucleus_diameter: Annotated[
        float | None,
        typer.Option(
            help="Typical nucleus diameter in pixels (default: estimated).", callback=positive
        ),
    ] = None,
    nucleus_method: Annotated[
        NucleusMethod,
        typer.Option(help="'classical' (Otsu + watershed) or 'model' (nuclei-v1)."),
    ] = NucleusMethod.classical,
    threshold_factor: Annotated[
        float,
        typer.Option(help="Cell foreground: signal above this fraction of its Otsu level."),
    ] = 0.5,
    flood: Annotated[
        Flood,
        typer.Option(
            help="Where seeded cells meet: valleys of the cell 'signal' or its edges ('gradient')."
        ),
    ] = Flood.signal,
    tile_shape: Annotated[
        int,
        typer.Option(
            "--tile-shape",
            help="Tile side in px (halo included; at least 3 cell diameters).",
            callback=at_least(64),
        ),
    ] = 2048,
    device: Annotated[
        str, typer.Option(help="auto, cpu, cuda or mps (for --nucleus-method model).")
    ] = "auto",
    report: Annotated[bool, typer.Option(help="Write report.html with overlays.")] = True,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Allow an --out folder that holds an earlier run.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Segment whole cells: label TIFFs, per-cell CSVs, overlay PNGs, an HTML report.

    Per image: NAME_cells.tif (0 = background, cell k grows from nucleus k),
    NAME_nuclei.tif (with --nuclear-channel: the seeds), NAME_cells.csv (one
    row per cell: area, perimeter, centroid, shape, intensity of the cell
    channel, nucleus area; um columns when the pixel size is known) and
    NAME_overlay.png (cell outlines). Then cells.csv (all images) and
    report.html. Doubtful results (no seeds, cells barely larger than their
    nuclei, foreground without nuclei) are listed as notes in the summary,
    the report and on stderr.
    """

    from cytolens.core.axes import check_axes
    from cytolens.core.batch import exit_if_failed, naming_file, run_batch
    from cytolens.core.errors import AxesError
    from cytolens.core.files import atomic_path, prepare_output_dir
    from cytolens.core.summary import strict_json
    from cytolens.io import find_images, imread, imwrite, output_stems
    from cytolens.pipeline import Item, make_step
    from cytolens.pipeline.step import NOTES_SEPARATOR
    from cytolens.report import overlay_outlines
    from cytolens.segment.classical import pixel_size_scalar
    from cytolens.segment.cli import _display_plane, _write_all

    if axes is not None:
        try:
            axes = check_axes(axes)
        except AxesError as exc:
            raise AxesError(f"--axes: {exc}") from None
    if not 0 < threshold_factor <= 2:
        raise InputError(f"--threshold-factor must be in (0, 2], got {threshold_factor}")
    channels = list(cell_channel) if cell_channel else None
    if channels and any(c < 0 for c in channels):
        raise InputError(f"--cell-channel must be >= 0, got {channels}")
    # the same step and parameters as a pipeline's segment.cells
    step = make_step(
        "segment.cells",
        {
            "nuclear_channel": nuclear_channel,
            "channel": channels,
            "cell_diameter": cell_diameter,
            "nucleus_diameter": nucleus_diameter,
            "nucleus_method": nucleus_method.value,
            "threshold_factor": threshold_factor,
            "flood": flood.value,
            "pixel_size_um": pixel_size_um,
            "tile_shape": tile_shape,
            "device": device,
        },
        where="options",
    )
    paths = find_images(images)
    prepare_output_dir(out, protected=paths, overwrite=overwrite)
    names = dict(zip(paths, output_stems(paths), strict=True))

    def process(path: Path) -> _Done:
        try:
            return segment_one(path)
        except CytolensError as exc:
            raise naming_file(path, exc) from None

    def segment_one(path: Path) -> _Done:
        image = imread(path, axes=axes)
        size = pixel_size_um
        if size is None:
            size = pixel_size_scalar(image.pixel_size_um)
        item = Item(path, names[path], image)
        step.run(item)
        labels = item.labels
        table = item.tables["cells"].assign(image=path.name)  # the CLI's tables name the file
        overlay = overlay_outlines(_display_plane(image), labels)
        name = names[path]
        targets = {
            "labels": out / f"{name}_cells.tif",
            "csv": out / f"{name}_cells.csv",
            "overlay": out / f"{name}_overlay.png",
        }

        def stored(lab: Any) -> np.ndarray:
            lab = np.asarray(lab)
            return lab.astype(np.uint16) if lab.max() < 2**16 else lab

        def write_csv(target: Path) -> None:
            with atomic_path(target) as tmp:
                table.to_csv(tmp, index=False)

        writes = [
            (
                targets["labels"],
                lambda t: imwrite(t, stored(labels), axes="YX", pixel_size_um=size),
            ),
            (targets["csv"], write_csv),
            (targets["overlay"], lambda t: imwrite(t, overlay, axes="YXC")),
        ]
        if "nuclei" in item.images:  # seeded by --nuclear-channel
            nuclei = item.images["nuclei"].data
            targets["nuclei"] = out / f"{name}_nuclei.tif"
            writes.append(
                (
                    targets["nuclei"],
                    lambda t: imwrite(t, stored(nuclei), axes="YX", pixel_size_um=size),
                )
            )
        _write_all(writes)
        row = {"image": path.name, **item.row}
        notes = row.pop("cell_notes", None)
        row.update({key: targets[key].name for key in targets if key != "overlay"})
        row["notes"] = notes.split(NOTES_SEPARATOR) if notes else []
        return _Done(row, table, targets["overlay"])

    result = run_batch(
        paths, process, description="segmenting cells", stop_on_error=len(paths) == 1
    )
    done = result.results
    rows = [d.row for d in done]
    summary = _write_tables(out, "cells.csv", result)
    notes = [n for r in rows for n in r["notes"]]
    if nuclear_channel is None:
        notes.insert(
            0,
            "note: no --nuclear-channel: cells were split by the shape of the foreground only, "
            "which merges or splits touching cells more often than nucleus seeds",
        )
    for note in notes:
        typer.echo(note, err=True)
    if notes:
        summary["warnings"] = notes
    if report:
        summary["report"] = str(_write_report(out, rows, done, notes, result.failures))
    if as_json:
        typer.echo(strict_json(summary))
    else:
        total = sum(r["cells"] for r in rows)
        typer.echo(f"{total} cells in {len(rows)} image(s); results in {out}")
    exit_if_failed(result, out)


def _write_report(
    out: Path, rows: list[dict[str, Any]], done: list[_Done], notes: list[str], failures: list[Any]
) -> Path:
    from cytolens.core.batch import report_failures
    from cytolens.report import Report
    from cytolens.segment.cli import REPORT_OVERLAYS

    rep = Report("Cell segmentation")
    rep.text(
        "Whole cells grown from nuclei (or from the foreground's shape) by a seeded watershed "
        "of the cell signal. Per-cell measurements are in cells.csv."
    )
    for note in notes:
        rep.text(note)
    rep.heading("Images")
    rep.table([{k: v for k, v in r.items() if k != "notes"} for r in rows])
    rep.heading("Overlays")
    for d in done[:REPORT_OVERLAYS]:
        rep.figure(d.overlay, caption=f"{d.row['image']}: cell outlines")
    report_failures(rep, failures)
    return rep.save(out / "report.html")
