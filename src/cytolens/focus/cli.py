"""``cytolens focus ...``: batch focus QC and best-plane search from the command line.

Commands only parse arguments, read files, call :mod:`cytolens.focus` and
write results; errors are raised as :class:`~cytolens.core.errors.InputError`
for the main command line to print. ``focus rate`` runs the pipeline step
``focus.rate`` (:mod:`cytolens.focus.steps`, the same parameters a pipeline
YAML accepts) on each image and writes what it leaves: the summary row, the
overlay of its rating and the patch levels for the report. ``focus
best-plane`` runs the step ``focus.best_plane`` on the stack and writes its
per-plane table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from cytolens.core.errors import InputError
from cytolens.core.options import at_least, non_negative
from cytolens.core.summary import strict_json
from cytolens.focus.model import DEFAULT_MODEL, MIN_PATCH_SIZE

__all__ = ["app"]

app = typer.Typer(
    help="Rate focus quality and find the best plane.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Images per gallery figure in the HTML report.
_GALLERY_PAGE = 24


def _gallery(rows: list[dict[str, Any]], out: Path) -> list[Any]:
    """Figures of overlay thumbnails, sharpest first."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from PIL import Image as PILImage

    figs = []
    for start in range(0, len(rows), _GALLERY_PAGE):
        page = rows[start : start + _GALLERY_PAGE]
        ncols = min(4, len(page))
        nrows = -(-len(page) // ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.0 * nrows), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, row in zip(axes.flat, page, strict=False):
            with PILImage.open(out / row["overlay"]) as im:
                ax.imshow(np.asarray(im.convert("RGB")))
            ax.set_title(
                f"{Path(row['file']).name[:28]}\n{row['verdict']}, level {row['mean_level']:.1f}",
                fontsize=8,
            )
        fig.tight_layout()
        figs.append(fig)
    return figs


def _histograms(rows: list[dict[str, Any]], levels: np.ndarray, n_levels: int) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.2))
    a1.hist(levels, bins=np.arange(-0.5, n_levels + 0.5), color="#2a6f97", rwidth=0.85)
    a1.set_xlabel("most likely level of non-blank patches")
    a1.set_ylabel("patches")
    a1.set_xticks(range(n_levels))
    means = [r["mean_level"] for r in rows if np.isfinite(r["mean_level"])]
    a2.hist(means, bins=np.linspace(0, n_levels - 1, 21), color="#c1440e", rwidth=0.85)
    a2.set_xlabel("image mean level (certainty-weighted)")
    a2.set_ylabel("images")
    fig.tight_layout()
    return fig


def _remove_stale_overlays(out: Path, written: list[Any]) -> None:
    """Remove overlays of an earlier run (``--overwrite``) that this run did not write."""
    keep = {Path(w).name for w in written if w}
    folder = out / "overlays"
    if folder.is_dir():
        for png in folder.glob("[0-9][0-9][0-9][0-9]_*.png"):
            if png.name not in keep:
                png.unlink()


@app.command("rate")
def rate_cmd(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("focus-out"),
    patch_size: Annotated[
        int, typer.Option(help="Patch side in pixels.", callback=at_least(MIN_PATCH_SIZE))
    ] = 84,
    model: Annotated[str, typer.Option(help="Shipped model name.")] = DEFAULT_MODEL,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    batch_size: Annotated[
        int, typer.Option(help="Patches per forward pass.", callback=at_least(1))
    ] = 256,
    channel: Annotated[
        int | None,
        typer.Option(
            help="Channel index (from 0) to rate in multi-channel images (RGB is averaged).",
            callback=non_negative,
        ),
    ] = None,
    overlays: Annotated[bool, typer.Option(help="Write an overlay PNG per image.")] = True,
    overwrite: Annotated[
        bool, typer.Option(help="Replace an earlier run's results in --out.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Rate the focus of every image: CSV (one row per image), overlays and an HTML report.

    An image that cannot be rated (unreadable, too small, a z-stack, a
    channel out of range) is listed in ``failures.csv`` and in the report;
    the others are rated, and the command exits with code 1.
    """
    import warnings

    import pandas as pd

    from cytolens.core.batch import exit_if_failed, report_failures, run_batch, write_failures
    from cytolens.core.files import atomic_path, prepare_output_dir
    from cytolens.core.progress import progress_bar
    from cytolens.focus.model import FocusModel
    from cytolens.focus.overlay import save_overlay
    from cytolens.focus.steps import PATCH_TABLE, rated_plane
    from cytolens.io import find_images, imread, output_stems
    from cytolens.models.applicability import OutOfDomainWarning, out_of_domain_note
    from cytolens.pipeline import Item, make_step
    from cytolens.report import Report

    files = find_images(inputs)
    fm = FocusModel.load(model, device=device)  # an unknown model or device: before any work
    # the same step and parameters as a pipeline's focus.rate
    step: Any = make_step(
        "focus.rate",
        {
            "model": model,
            "patch_size": patch_size,
            "batch_size": batch_size,
            "channel": channel,
            "device": device,
        },
        where="options",
    )
    prepare_output_dir(out, protected=files, overwrite=overwrite)
    names = dict(zip(files, output_stems(files), strict=True))
    levels: list[np.ndarray] = []

    with progress_bar(disable=as_json) as bar:
        task = bar.add_task("rating focus", total=len(files))
        patches = bar.add_task("  patches", total=None)  # within the current image

        def patch_progress(done: int, total: int) -> None:
            bar.update(patches, completed=done, total=total)

        def rate_one(item: tuple[int, Path]) -> dict[str, Any]:
            k, path = item
            bar.update(task, description=f"rating {path.name}")
            try:
                # a Dask array for large files: rated band by band, never loaded whole
                item = Item(path, names[path], imread(path))
                with warnings.catch_warnings():  # reported once for the whole run below
                    warnings.simplefilter("ignore", OutOfDomainWarning)
                    res = step.rate(item, progress=patch_progress)
                row: dict[str, Any] = {"file": str(path), **res.summary()}
                row.update({k: v for k, v in item.row.items() if not k.startswith("focus_")})
                if overlays:
                    name = Path("overlays") / f"{k:04d}_{path.name.split('.')[0]}.png"
                    plane = rated_plane(item.image, channel, path.name)
                    save_overlay(out / name, plane, res, title=f"{path.name}: {res.verdict}")
                    row["overlay"] = str(name)
                patches = item.tables[PATCH_TABLE]
                levels.append(patches.loc[~patches["is_blank"], "level"].to_numpy())
                return row
            finally:
                bar.advance(task)

        result = run_batch(
            list(enumerate(files)), rate_one, name=lambda item: str(item[1]), progress=False
        )
    rows = result.results
    table = pd.DataFrame(rows) if rows else pd.DataFrame(columns=["file", "verdict"])
    if "level" in table:
        table["level"] = table["level"].astype("Int64")  # integers, empty without content
    with atomic_path(out / "focus.csv") as tmp:
        table.to_csv(tmp, index=False)
    write_failures(out, result.failures)  # also removes an earlier run's (--overwrite)
    _remove_stale_overlays(out, [r.get("overlay") for r in rows])

    ranked = sorted(rows, key=lambda r: (np.nan_to_num(r["mean_level"], nan=np.inf), r["file"]))
    report = Report("Focus quality")
    n_in = sum(r["in_focus"] is True for r in rows)
    n_blank = sum(r["in_focus"] is None for r in rows)
    failed = f" {len(result.failures)} could not be rated." if result.failures else ""
    report.text(
        f"{len(rows)} image(s) rated with model {fm.name} in {patch_size}x{patch_size} patches: "
        f"{n_in} in focus, {len(rows) - n_in - n_blank} out of focus, {n_blank} without content."
        f"{failed} Levels 0-{fm.in_focus_max_level} of 0-{fm.n_levels - 1} count as in focus; "
        "the verdict is in focus when the certainty-weighted level distribution puts more than "
        "half its mass there (no user threshold)."
    )
    note = out_of_domain_note(rows, fm.name, key="file")
    if note:
        report.text(note)
        typer.echo(note, err=True)
    if rows:
        report.heading("Images, sharpest first")
        columns = ("file", "verdict", "mean_level", "p_in_focus", "certainty", "blank_fraction")
        columns += tuple(c for c in ("ood_score", "in_domain") if c in rows[0])
        report.table([{k: r.get(k) for k in columns} for r in ranked])
        report.heading("Level histograms")
        all_levels = np.concatenate(levels) if levels else np.zeros(0)
        report.figure(_histograms(rows, all_levels, fm.n_levels), "Patch and image levels.")
        if overlays:
            report.heading("Gallery, sharpest first")
            for fig in _gallery(ranked, out):
                report.figure(
                    fig,
                    "Frame colour = level (green in focus, red blurred); "
                    "frame strength = certainty.",
                )
    report_failures(report, result.failures)
    report.save(out / "report.html")
    if as_json:
        failures = [f.__dict__ for f in result.failures]
        summary = {"out": str(out), "images": rows, "failures": failures}
        typer.echo(strict_json({**summary, "warnings": [note]} if note else summary))
    else:
        typer.echo(
            f"rated {len(rows)} image(s): {n_in} in focus; CSV {out / 'focus.csv'}, "
            f"report {out / 'report.html'}"
        )
    exit_if_failed(result, out)


@app.command("best-plane")
def best_plane_cmd(
    stack: Annotated[
        list[str],
        typer.Argument(
            help="A z-stack file (e.g. a 3D TIFF), or the 2D planes as a folder, glob "
            "pattern or several files (natural order: z2 before z10)."
        ),
    ],
    axes: Annotated[
        str | None, typer.Option(help="Override the axes of a stack file, e.g. ZYX.")
    ] = None,
    method: Annotated[str, typer.Option(help="model or a classical measure.")] = "model",
    patch_size: Annotated[
        int, typer.Option(help="Patch side in pixels.", callback=at_least(MIN_PATCH_SIZE))
    ] = 84,
    model: Annotated[str, typer.Option(help="Shipped model name.")] = DEFAULT_MODEL,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    channel: Annotated[
        int | None,
        typer.Option(
            help="Channel index (from 0) to rate in a multi-channel stack.", callback=non_negative
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write per-plane scores to this CSV.")] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Write the per-plane focus curve to this PNG.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Find the best-focused plane of a z-stack (one file, or one file per plane).

    Planes without content (constant, or every patch blank) are never picked;
    a stack without any plane with content is an error.
    """
    from rich.console import Console
    from rich.table import Table

    from cytolens.core.files import atomic_path, check_output_file
    from cytolens.focus.model import FocusModel
    from cytolens.focus.overlay import save_plane_scores
    from cytolens.focus.steps import PLANE_TABLE
    from cytolens.io import find_images, imread, imread_stack
    from cytolens.pipeline import Item, make_step

    files = find_images(stack)
    for target, option in ((out, "--out"), (plot, "--plot")):
        if target is not None:
            check_output_file(target, protected=files, option=option)
    if out is not None and plot is not None and out.resolve() == plot.resolve():
        raise InputError(f"--out and --plot name the same file {out}; give two names")
    # the same step and parameters as a pipeline's focus.best_plane (an unknown method: here)
    step: Any = make_step(
        "focus.best_plane",
        {
            "method": method,
            "model": model,
            "patch_size": patch_size,
            "channel": channel,
            "device": device,
        },
        where="options",
    )
    if axes is not None and len(files) > 1:
        raise InputError("--axes applies to a single stack file, not to a series of planes")
    fm = FocusModel.load(model, device=device) if method == "model" else None
    if len(files) == 1:
        item = Item(files[0], files[0].name.split(".")[0], imread(files[0], axes=axes))
        name = files[0].name
    else:
        item = Item(files[0].parent, files[0].parent.name, imread_stack(files, axis="Z"))
        name = f"{files[0].parent.name}/ ({len(files)} planes)"
    step.run(item, progress=not as_json)
    best = item.row["best_z_px"]
    scores = item.tables[PLANE_TABLE].drop(columns="image")
    if out is not None:
        with atomic_path(out) as tmp:
            scores.to_csv(tmp, index=False)
    if plot is not None:
        save_plane_scores(
            plot,
            scores,
            best,
            in_focus_levels=fm.in_focus_levels if fm else None,
            title=f"{name}: best plane z = {best}",
        )
    if as_json:
        payload = {
            "files": [str(f) for f in files],
            "best_plane": best,
            "best_file": str(files[best] if len(files) > 1 else files[0]),
            "planes": scores.to_dict("records"),
        }
        typer.echo(strict_json(payload))
        return
    console = Console()
    title = f"{name}: best plane z = {best}"
    if len(files) > 1:
        title += f" ({files[best].name})"
    table = Table(title=title)
    for col in scores.columns:
        table.add_column(str(col))
    for rec in scores.itertuples(index=False):
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in rec]
        table.add_row(*cells, style="bold green" if rec[0] == best else None)
    console.print(table)
