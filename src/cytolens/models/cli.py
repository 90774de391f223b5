"""``cytolens models ...``: list, inspect and export the shipped models.

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


class _ConsoleHandler(logging.Handler):
    """Log records of the exporter as progress lines on the console."""

    def __init__(self, console: Any) -> None:
        super().__init__(logging.INFO)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        self.console.print(f"  {record.getMessage()}", highlight=False)
