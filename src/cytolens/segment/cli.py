"""``cytolens segment ...``: batch nucleus segmentation and measurement from the command line.

The command parses arguments, reads images, calls :func:`cytolens.segment.nuclei`
(or the classical baseline) and :func:`cytolens.segment.measure`, and writes
the results; errors are raised as :class:`~cytolens.core.errors.CytolensError`
for the main command line to print as one line.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from cytolens.core.errors import InputError

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


def _display_plane(image: Any) -> np.ndarray:
    """What the overlay shows: RGB(A) as colour, else the plane the segmenter used."""
    from cytolens.core.plane import single_plane
    from cytolens.segment.preprocess import SEGMENT_HINT

    data = np.asarray(image.data)
    if image.axes == "YXC" and data.shape[-1] in (3, 4):
        return data[..., :3]
    return single_plane(image, hint=SEGMENT_HINT)[0]


@app.command("nuclei")
def nuclei_command(
    images: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    method: Annotated[
        Method, typer.Option(help="'model' (deep learning) or 'classical' (Otsu + watershed).")
    ] = Method.model,
    model: Annotated[str, typer.Option(help="Shipped model name.")] = "nuclei-v1",
    diameter: Annotated[
        float | None,
        typer.Option(help="Typical nucleus diameter in pixels (default: estimated per image)."),
    ] = None,
    diameter_um: Annotated[
        float | None,
        typer.Option(
            "--diameter-um",
            help="Typical nucleus diameter in um (needs --pixel-size-um or a pixel size in "
            "the file).",
        ),
    ] = None,
    pixel_size_um: Annotated[
        float | None,
        typer.Option(
            "--pixel-size-um", help="Pixel size in um for measurements (default: from the file)."
        ),
    ] = None,
    channel: Annotated[
        int | None, typer.Option(help="Index of the nuclear channel (RGB is averaged).")
    ] = None,
    axes: Annotated[
        str | None, typer.Option(help="Axes of the images if the files do not say, e.g. CYX.")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    tile_shape: Annotated[
        int, typer.Option("--tile-shape", help="Tile size (px at the network's scale).")
    ] = 512,
    report: Annotated[bool, typer.Option(help="Write report.html with overlays.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Segment nuclei: label TIFFs, per-image and combined CSVs, overlay PNGs, an HTML report.

    Per image: NAME_labels.tif (0 = background, 1..N nuclei; uint16 below
    65536 nuclei), NAME_nuclei.csv (one row per nucleus: area, perimeter,
    centroid, diameter, shape, intensity; um columns when the pixel size is
    known) and NAME_overlay.png (outlines on the image). Then nuclei.csv
    (all images) and report.html.
    """
    import pandas as pd

    from cytolens.core.files import atomic_path
    from cytolens.core.plane import single_plane
    from cytolens.core.progress import progress_bar
    from cytolens.io import find_images, imread, imwrite, output_stems
    from cytolens.report import overlay_outlines
    from cytolens.segment import measure, nuclei, nuclei_classical
    from cytolens.segment.preprocess import SEGMENT_HINT

    if diameter is not None and diameter_um is not None:
        raise InputError("give --diameter (pixels) or --diameter-um (micrometres), not both")
    paths = find_images(images)
    out.mkdir(parents=True, exist_ok=True)
    inputs = {p.resolve() for p in paths}
    rows, tables, overlays = [], [], []
    with progress_bar() as bar:
        task = bar.add_task("segmenting", total=len(paths))
        for path, name in zip(paths, output_stems(paths), strict=True):
            bar.update(task, description=f"segmenting {path.name}")
            image = imread(path)
            size = pixel_size_um
            if size is None and {"Y", "X"} <= set(image.pixel_size_um):
                size = (image.pixel_size_um["Y"] + image.pixel_size_um["X"]) / 2
            if diameter_um is not None and size is None:
                raise InputError(
                    f"{path}: --diameter-um needs a pixel size, and the file states none; "
                    f"pass --pixel-size-um or --diameter in pixels"
                )
            options: dict[str, Any] = {
                "diameter": diameter_um if diameter_um is not None else diameter,
                "pixel_size_um": size if diameter_um is not None else None,
                "axes": axes,
                "channel": channel,
            }
            if method is Method.model:
                labels = nuclei(image, model=model, device=device, tile_shape=tile_shape, **options)
            else:
                labels = nuclei_classical(image, **options)
            targets = {
                "labels": out / f"{name}_labels.tif",
                "csv": out / f"{name}_nuclei.csv",
                "overlay": out / f"{name}_overlay.png",
            }
            clash = [t for t in targets.values() if t.resolve() in inputs]
            if clash:
                raise InputError(
                    f"{clash[0]}: output would overwrite an input; choose another --out"
                )
            # uint16 (an ImageJ hyperstack every viewer opens) unless there are too many nuclei
            stored = labels.astype(np.uint16) if labels.max() < 2**16 else labels
            imwrite(targets["labels"], stored, axes="YX", pixel_size_um=size)
            plane = single_plane(image, axes=axes, channel=channel, hint=SEGMENT_HINT)[0]
            table = measure(labels, plane, pixel_size_um=size)
            table.insert(0, "image", path.name)
            with atomic_path(targets["csv"]) as tmp:
                table.to_csv(tmp, index=False)
            tables.append(table)
            imwrite(
                targets["overlay"],
                overlay_outlines(_display_plane(image), labels),
                axes="YXC",
            )
            overlays.append((path.name, targets["overlay"]))
            area = "area_um2" if "area_um2" in table else "area_px"
            rows.append(
                {
                    "image": path.name,
                    "nuclei": int(labels.max()),
                    f"median {area}": float(table[area].median()) if len(table) else float("nan"),
                    "labels": targets["labels"].name,
                    "csv": targets["csv"].name,
                }
            )
            bar.advance(task)
    combined = out / "nuclei.csv"
    with atomic_path(combined) as tmp:
        pd.concat(tables, ignore_index=True).to_csv(tmp, index=False)
    summary: dict[str, Any] = {"images": rows, "combined_csv": str(combined)}
    if report:
        summary["report"] = str(_write_report(out, rows, overlays, method, model))
    if as_json:
        typer.echo(json.dumps(summary, default=str))
    else:
        total = sum(r["nuclei"] for r in rows)
        typer.echo(f"{total} nuclei in {len(rows)} image(s); results in {out}")


def _write_report(
    out: Path,
    rows: list[dict[str, Any]],
    overlays: list[tuple[str, Path]],
    method: Method,
    model: str,
) -> Path:
    from cytolens.report import Report

    rep = Report("Nucleus segmentation")
    what = f"model {model}" if method is Method.model else "classical baseline (Otsu + watershed)"
    rep.text(f"Segmented with the {what}. Per-nucleus measurements are in nuclei.csv.")
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
    return rep.save(out / "report.html")
