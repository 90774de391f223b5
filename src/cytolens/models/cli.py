"""``cytolens models ...``: list, inspect, check and export the shipped models.

The commands read model cards (:mod:`cytolens.models`) and call
:func:`cytolens.models.bioimageio.export_bioimageio`; errors are raised as
:class:`~cytolens.core.errors.CytolensError` for the main command line to
print as one line.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["app", "key_metric", "models_table"]

app = typer.Typer(
    help="List, inspect and export the shipped models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Metrics shown in ``cytolens models list``, first found wins.
KEY_METRICS = ("val_map50", "sim_within_one", "ap50", "f1_50", "dsb_score", "accuracy", "f1")


@app.callback()
def _group() -> None:
    """List, inspect and export the shipped models."""


def _find_metric(metrics: Any, key: str, prefix: str = "") -> list[tuple[str, float, float]]:
    """Every numeric ``key`` in nested metric dicts: ``(dotted path, value, n_images)``."""
    if not isinstance(metrics, dict):
        return []
    found = []
    if isinstance(metrics.get(key), (int, float)):
        found.append((prefix + key, float(metrics[key]), float(metrics.get("n_images", 0))))
    for name, value in metrics.items():
        found += _find_metric(value, key, f"{prefix}{name}.")
    return found


def key_metric(metrics: dict[str, Any]) -> str:
    """The headline metric of a card as ``"name=value"`` (``""`` if none is known).

    The first of :data:`KEY_METRICS` found wins; nested metrics (per image
    type) are named by their last two keys, and the group measured on most
    images (``n_images``) is shown.

    Examples
    --------
    >>> key_metric({"bf": {"n_images": 2, "ap50": 0.3}, "fluo": {"n_images": 65, "ap50": 0.87}})
    'fluo.ap50=0.87'
    """
    for key in KEY_METRICS:
        found = _find_metric(metrics, key)
        if found:
            path, value, _ = max(found, key=lambda f: f[2])  # max keeps the first of equals
            short = ".".join(path.split(".")[-2:])
            return f"{short}={value:.4g}"
    return ""


def models_table(*, root: Any = None) -> Any:
    """One row per shipped model: name, version, task, size, sha256, key metric.

    Returns
    -------
    pandas.DataFrame
        Columns ``name, version, task, size_mb, sha256, key_metric, network``
        (``network``: whether the card can be exported / built).

    Examples
    --------
    >>> "nuclei-v1" in set(models_table()["name"])
    True
    """
    import pandas as pd

    from cytolens.models import WEIGHTS_FILE, list_models, load_card, model_dir

    rows = []
    for name in list_models(root=root):
        card = load_card(name, root=root)
        weights = model_dir(name, root=root) / WEIGHTS_FILE
        rows.append(
            {
                "name": name,
                "version": card.version,
                "task": card.task.split(":")[0].strip(),
                "size_mb": round(weights.stat().st_size / 1e6, 2) if weights.is_file() else None,
                "sha256": card.sha256,
                "key_metric": key_metric(card.metrics),
                "network": bool(card.network),
            }
        )
    columns = ["name", "version", "task", "size_mb", "sha256", "key_metric", "network"]
    return pd.DataFrame(rows, columns=columns)


@app.command("list")
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the shipped models with their version, task, size and key metric."""
    table = models_table()
    if as_json:
        typer.echo(json.dumps(table.to_dict(orient="records"), default=str))
        return
    from rich.console import Console
    from rich.table import Table

    out = Table(title="shipped models", title_justify="left")
    for column in ("name", "version", "task", "MB", "sha256", "key metric"):
        wraps = column in ("task", "key metric")
        out.add_column(column, no_wrap=not wraps, overflow="fold" if wraps else "ellipsis")
    for row in table.itertuples():
        out.add_row(
            row.name, row.version, row.task, f"{row.size_mb}", row.sha256[:12], row.key_metric
        )
    Console().print(out)


@app.command("show")
def show_command(
    name: Annotated[str, typer.Argument(help="Model name (see `cytolens models list`).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the card as JSON.")] = False,
) -> None:
    """Show a model's card: task, architecture, training data, normalization, metrics."""
    from cytolens.models import load_card

    card = load_card(name).model_dump(mode="json")
    if as_json:
        typer.echo(json.dumps(card))
        return
    import yaml
    from rich.console import Console
    from rich.syntax import Syntax

    Console().print(Syntax(yaml.safe_dump(card, sort_keys=False), "yaml", word_wrap=True))


@app.command("export")
def export_command(
    name: Annotated[str, typer.Argument(help="Model name (see `cytolens models list`).")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="The bioimage.io package (.zip) to write.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Export a model as a bioimage.io 0.5 package (zip) after running its own test."""
    from rich.console import Console

    from cytolens.models import load_card
    from cytolens.models.bioimageio import export_bioimageio

    console = Console(stderr=True)
    load_card(name)  # unknown names fail here, before torch is imported
    console.print(f"exporting {name} (model test: torchscript vs state dict) ...")
    log = logging.getLogger("cytolens.models.bioimageio")
    with console.status(f"exporting {name}"):
        level, propagate = log.level, log.propagate
        handler = _ConsoleHandler(console)
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False  # the console handler shows them once
        try:
            path = export_bioimageio(name, out)
        finally:
            log.removeHandler(handler)
            log.setLevel(level)
            log.propagate = propagate
    size = path.stat().st_size
    if as_json:
        typer.echo(json.dumps({"model": name, "out": str(path), "bytes": size}))
    else:
        console.print(f"[bold green]written:[/] {path} ({size / 1e6:.2f} MB)")


@app.command("check")
def check_command(
    model: Annotated[str, typer.Argument(help="Model name (`cytolens models list`) or folder.")],
    images: Annotated[list[str], typer.Argument(help="Images, folders or globs to check.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for report.html and the table.")],
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    examples: Annotated[
        int, typer.Option(help="Images to show example predictions of (most unlike first).")
    ] = 4,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Allow an --out folder that holds an earlier run.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Can I trust this model on my images? Applicability per image, expected accuracy, examples.

    Writes report.html (applicability per image, the images most unlike the
    training data, the card's held-out metrics and training data, example
    predictions), applicability.csv (one row per image: ood_score,
    domain_percentile, in_domain, prediction) and failures.csv when an image
    cannot be read.
    """
    from cytolens.core.batch import exit_if_failed
    from cytolens.core.summary import strict_json
    from cytolens.models.check import check_model

    if examples < 0:
        raise typer.BadParameter(f"must be >= 0, got {examples}", param_hint="--examples")
    res = check_model(
        model, images, out, device=device, overwrite=overwrite, examples=examples,
        progress=not as_json,
    )  # fmt: skip
    for note in res.warnings:
        typer.echo(note, err=True)
    if as_json:
        summary = {
            "model": model,
            "out": str(out),
            "images": res.rows,
            "out_of_domain": res.n_out_of_domain,
            "warnings": res.warnings,
            "report": str(res.report),
            "csv": str(res.table),
            "failed": [f.__dict__ for f in res.failures],
        }
        typer.echo(strict_json(summary))
    else:
        typer.echo(
            f"{len(res.rows)} image(s) checked, {res.n_out_of_domain} outside the training domain; "
            f"report {res.report}"
        )
    exit_if_failed(res, out)


class _ConsoleHandler(logging.Handler):
    """Log records of the exporter as progress lines on the console."""

    def __init__(self, console: Any) -> None:
        super().__init__(logging.INFO)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        self.console.print(f"  {record.getMessage()}", highlight=False)


# --- `cytolens models run`: bioimage.io packages made by any tool ---------------------

#: Preview figures embedded in the report of `models run`.
RUN_PREVIEWS = 12


def _preview(image: Any, axes: str, outputs: dict[str, Any], out_axes: dict[str, str], title: str):
    """A matplotlib figure: the input's first plane | each output's first plane."""
    import numpy as np
    from matplotlib.figure import Figure

    def plane(a: Any, ax: str) -> Any:
        a = np.asarray(a)
        for letter in [c for c in ax if c not in "YX"]:
            i = ax.index(letter)
            a = np.take(a, a.shape[i] // 2 if letter == "Z" else 0, axis=i)
            ax = ax.replace(letter, "")
        return a.T if ax == "XY" else a

    panels = [("input", plane(image, axes))] + [
        (oid, plane(y, out_axes[oid])) for oid, y in outputs.items() if y.ndim >= 2
    ]
    fig = Figure(figsize=(3.2 * len(panels), 3.4), dpi=80)
    for ax, (name, data) in zip(np.atleast_1d(fig.subplots(1, len(panels))), panels, strict=True):
        data = np.asarray(data, dtype=np.float32)
        lo, hi = np.percentile(data, (1, 99.8)) if data.ndim == 2 else (0, 1)
        if data.ndim == 2:
            ax.imshow(np.clip((data - lo) / max(hi - lo, 1e-12), 0, 1), cmap="gray")
        ax.set_title(name)
        ax.set_axis_off()
    fig.suptitle(title)
    return fig


@app.command("run")
def run_command(
    package: Annotated[
        Path, typer.Argument(help="bioimage.io model package: a .zip or a folder with rdf.yaml.")
    ],
    images: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    axes: Annotated[
        str | None,
        typer.Option(help="Axes of the images, overriding the files' own, e.g. CYX or TYX."),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    weight_format: Annotated[
        str | None,
        typer.Option(
            "--weight-format",
            help="pytorch_state_dict, torchscript or onnx (default: the first that loads).",
        ),
    ] = None,
    tile: Annotated[
        int,
        typer.Option(help="Tile side in px along each space axis (halo included).", min=1),
    ] = 512,
    check: Annotated[
        bool,
        typer.Option(help="First re-run the package's own test tensors and report the match."),
    ] = True,
    report: Annotated[bool, typer.Option(help="Write report.html with previews.")] = True,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Allow an --out folder that holds an earlier run."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Run a bioimage.io model package made by any tool on images.

    The package is validated (bioimageio.spec), its declared pre- and
    post-processing applied and the network run tile by tile. Per image and
    output tensor: NAME_<output>.ome.tif (the tensor's axes, batch dropped).
    Then summary.json, report.html and, when an image fails, failures.csv
    (the others finish; exit code 1). With a single input, its error ends the
    command (exit 2).
    """
    import numpy as np

    from cytolens.core.axes import check_axes
    from cytolens.core.batch import (
        exit_if_failed,
        naming_file,
        report_failures,
        run_batch,
        write_failures,
    )
    from cytolens.core.errors import AxesError, CytolensError, ModelError
    from cytolens.core.files import atomic_path, prepare_output_dir
    from cytolens.core.summary import strict_json
    from cytolens.io import find_images, imread, imwrite, output_stems
    from cytolens.models.runner import check_package, load_package

    if axes is not None:
        try:
            axes = check_axes(axes)
        except AxesError as exc:
            raise AxesError(f"--axes: {exc}") from None
    paths = find_images(images)
    prepare_output_dir(out, protected=[*paths, package], overwrite=overwrite)
    model = load_package(package, device=device, weight_format=weight_format)
    checked = None
    if check:
        result = check_package(model, tile=tile)
        checked = {
            "max_abs_diff": result.max_abs_diff,
            "passed": result.passed,
            "per_output": result.per_output,
        }
        if not result.passed:
            typer.echo(
                f"warning: {package}: cytolens does not reproduce the package's own test "
                f"outputs (max abs diff {result.max_abs_diff:.3g}); check its outputs",
                err=True,
            )
    names = dict(zip(paths, output_stems(paths), strict=True))
    previews: list[Any] = []

    def process(path: Path) -> dict[str, Any]:
        try:
            return run_one(path)
        except CytolensError as exc:
            raise naming_file(path, exc) from None

    def run_one(path: Path) -> dict[str, Any]:
        image = imread(path, axes=axes)
        outputs = model.predict(image.data, axes=image.axes, tile=tile)
        written = []
        for oid, y in outputs.items():
            y_axes = model.axes_of(oid, image_axes=image.axes)
            if y.dtype == bool:
                y = y.astype(np.uint8)
            if y.ndim < 2 or not set("YX") <= set(y_axes):
                raise ModelError(
                    f"output {oid!r} has axes {y_axes!r} without Y and X; cytolens writes "
                    "image outputs only"
                )
            size = {a: v for a, v in image.pixel_size_um.items() if a in y_axes}
            target = out / f"{names[path]}_{oid}.ome.tif"
            imwrite(target, y, axes=y_axes, pixel_size_um=size or None)
            written.append(target)
        if report and len(previews) < RUN_PREVIEWS:
            previews.append(
                _preview(
                    image.data,
                    image.axes,
                    outputs,
                    model.output_axes
                    | {k: model.axes_of(k, image_axes=image.axes) for k in outputs},
                    path.name,
                )
            )
        return {
            "image": path.name,
            "axes": image.axes,
            "shape": list(image.shape),
            "outputs": [p.name for p in written],
        }

    result = run_batch(paths, process, description="running", stop_on_error=len(paths) == 1)
    summary: dict[str, Any] = {
        "package": str(package),
        "name": model.name,
        "weight_format": model.weight_format,
        "input_axes": model.input_axes,
        "output_axes": model.output_axes,
        "test_reproduced": checked,
        "images": result.results,
        "failed": [f.__dict__ for f in result.failures],
    }
    failures_csv = write_failures(out, result.failures)
    if failures_csv is not None:
        summary["failures_csv"] = str(failures_csv)
    if report:
        from cytolens.report import Report

        rep = Report(f"bioimage.io package {model.name}")
        rep.text(
            f"Package {package} ({model.weight_format} weights), input axes "
            f"{model.input_axes}, outputs {model.output_axes}, run by cytolens with the "
            "package's declared pre- and post-processing."
        )
        if checked is not None:
            rep.text(
                "The package's own test tensors were "
                + ("reproduced" if checked["passed"] else "NOT reproduced")
                + f" (max abs diff {checked['max_abs_diff']:.3g})."
            )
        rep.heading("Images")
        rep.table(
            [
                {**r, "outputs": ", ".join(r["outputs"]), "shape": str(r["shape"])}
                for r in result.results
            ]
        )
        for fig in previews:
            rep.figure(fig)
        report_failures(rep, result.failures)
        summary["report"] = str(rep.save(out / "report.html"))
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(strict_json(summary))
    if as_json:
        typer.echo(strict_json(summary))
    else:
        typer.echo(f"{len(result.results)} image(s) run through {model.name}; results in {out}")
    exit_if_failed(result, out)
