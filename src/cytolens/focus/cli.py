"""``cytolens focus ...``: batch focus QC and best-plane search from the command line.

Commands only parse arguments, read files, call :mod:`cytolens.focus` and
write results; errors are raised as :class:`~cytolens.core.errors.InputError`
for the main command line to print.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from cytolens.core.errors import InputError
from cytolens.focus.model import DEFAULT_MODEL

__all__ = ["app", "read_plane"]

app = typer.Typer(
    help="Rate focus quality and find the best plane.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Images per gallery figure in the HTML report.
_GALLERY_PAGE = 24


def read_plane(path: Path, channel: int | None = None) -> Any:
    """Read one 2D grey plane: singleton axes dropped, ``channel`` picked, RGB(A) averaged."""
    from cytolens.core.plane import single_plane
    from cytolens.io import imread

    hint = "use `cytolens focus best-plane` for a z-stack"
    image = imread(path)  # a Dask array for large files: rated band by band, never loaded whole
    return single_plane(image, channel=channel, name=str(path), hint=hint, lazy=True)[0]


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


@app.command("rate")
def rate_cmd(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("focus-out"),
    patch_size: Annotated[int, typer.Option(help="Patch side in pixels.")] = 84,
    model: Annotated[str, typer.Option(help="Shipped model name.")] = DEFAULT_MODEL,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Patches per forward pass.")] = 256,
    channel: Annotated[
        int | None,
        typer.Option(help="Channel index to rate in multi-channel images (RGB is averaged)."),
    ] = None,
    overlays: Annotated[bool, typer.Option(help="Write an overlay PNG per image.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Rate the focus of every image: CSV (one row per image), overlays and an HTML report."""
    import pandas as pd

    from cytolens.core.files import atomic_path
    from cytolens.core.progress import progress_bar
    from cytolens.focus.model import FocusModel
    from cytolens.focus.overlay import save_overlay
    from cytolens.focus.rate import rate_focus
    from cytolens.io import find_images
    from cytolens.report import Report

    files = find_images(inputs)
    fm = FocusModel.load(model, device=device)
    out.mkdir(parents=True, exist_ok=True)
    inputs_resolved = {f.resolve() for f in files}
    rows: list[dict[str, Any]] = []
    levels: list[np.ndarray] = []
    with progress_bar() as bar:
        task = bar.add_task("rating focus", total=len(files))
        patches = bar.add_task("  patches", total=None)  # within the current image

        def patch_progress(done: int, total: int) -> None:
            bar.update(patches, completed=done, total=total)

        for k, path in enumerate(files):
            plane = read_plane(path, channel)
            bar.update(task, description=f"rating {path.name}")
            res = rate_focus(
                plane,
                patch_size=patch_size,
                model=fm,
                batch_size=batch_size,
                progress=patch_progress,
            )
            row: dict[str, Any] = {"file": str(path), **res.summary()}
            if overlays:
                name = Path("overlays") / f"{k:04d}_{path.name.split('.')[0]}.png"
                if (out / name).resolve() in inputs_resolved:
                    raise InputError(f"{out / name}: output would overwrite an input")
                save_overlay(out / name, plane, res, title=f"{path.name}: {res.verdict}")
                row["overlay"] = str(name)
            levels.append(res.patches.loc[~res.patches["is_blank"], "level"].to_numpy())
            rows.append(row)
            bar.update(task, advance=1)
    table = pd.DataFrame(rows)
    with atomic_path(out / "focus.csv") as tmp:
        table.to_csv(tmp, index=False)

    ranked = sorted(rows, key=lambda r: (np.nan_to_num(r["mean_level"], nan=np.inf), r["file"]))
    report = Report("Focus quality")
    n_in = sum(r["in_focus"] is True for r in rows)
    n_blank = sum(r["in_focus"] is None for r in rows)
    report.text(
        f"{len(rows)} image(s) rated with model {fm.name} in {patch_size}x{patch_size} patches: "
        f"{n_in} in focus, {len(rows) - n_in - n_blank} out of focus, {n_blank} without content. "
        f"Levels 0-{fm.in_focus_max_level} of 0-{fm.n_levels - 1} count as in focus; the "
        "verdict is in focus when the certainty-weighted level distribution puts more than "
        "half its mass there (no user threshold)."
    )
    report.heading("Images, sharpest first")
    report.table(
        [
            {
                k: r[k]
                for k in (
                    "file",
                    "verdict",
                    "mean_level",
                    "p_in_focus",
                    "certainty",
                    "blank_fraction",
                )
            }
            for r in ranked
        ]
    )
    report.heading("Level histograms")
    all_levels = np.concatenate(levels) if levels else np.zeros(0)
    report.figure(_histograms(rows, all_levels, fm.n_levels), "Patch and image levels.")
    if overlays:
        report.heading("Gallery, sharpest first")
        for fig in _gallery(ranked, out):
            report.figure(
                fig,
                "Frame colour = level (green in focus, red blurred); frame strength = certainty.",
            )
    report.save(out / "report.html")
    if as_json:
        typer.echo(json.dumps({"out": str(out), "images": rows}, default=str))
    else:
        typer.echo(
            f"rated {len(rows)} image(s): {n_in} in focus; CSV {out / 'focus.csv'}, "
            f"report {out / 'report.html'}"
        )


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
    patch_size: Annotated[int, typer.Option(help="Patch side in pixels.")] = 84,
    model: Annotated[str, typer.Option(help="Shipped model name.")] = DEFAULT_MODEL,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    out: Annotated[Path | None, typer.Option(help="Write per-plane scores to this CSV.")] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Write the per-plane focus curve to this PNG.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Find the best-focused plane of a z-stack (one file, or one file per plane)."""
    from rich.console import Console
    from rich.table import Table

    from cytolens.core.files import atomic_path
    from cytolens.focus.model import FocusModel
    from cytolens.focus.overlay import save_plane_scores
    from cytolens.focus.rate import best_plane
    from cytolens.io import find_images, imread, imread_stack

    files = find_images(stack)
    for target in (out, plot):
        if target is not None and target.resolve() in {f.resolve() for f in files}:
            raise InputError(f"{target}: output would overwrite an input")
    if len(files) == 1:
        img = imread(files[0], axes=axes)
        name = files[0].name
    else:
        if axes is not None:
            raise InputError("--axes applies to a single stack file, not to a series of planes")
        img = imread_stack(files, axis="Z")
        name = f"{files[0].parent.name}/ ({len(files)} planes)"
    keep = "".join(a for a, s in zip(img.axes, img.shape, strict=True) if s != 1 or a in "ZYX")
    if keep != img.axes:
        img = type(img)(img.data.reshape([img.sizes[a] for a in keep]), keep)
    if "Z" not in img.axes:
        raise InputError(
            f"{name} has axes {img.axes!r} (shape {img.shape}), no Z axis: give a z-stack "
            "file (or --axes, e.g. ZYX), or several plane files"
        )
    fm = FocusModel.load(model, device=device) if method == "model" else None
    best, scores = best_plane(
        img, method=method, patch_size=patch_size, model=fm or model, device=device, progress=True
    )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            scores.to_csv(tmp, index=False)
    if plot is not None:
        plot.parent.mkdir(parents=True, exist_ok=True)
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
        typer.echo(json.dumps(payload, default=str))
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
