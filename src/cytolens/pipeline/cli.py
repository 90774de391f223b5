"""``cytolens run pipeline.yaml``: a pipeline of steps over a whole acquisition."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cytolens.core.options import at_least, positive

__all__ = ["command", "watch_command"]


def _memory(value: str) -> str:
    """Callback: ``auto`` or a size Dask understands (``4GB``, ``512MiB``)."""
    if value == "auto":
        return value
    from dask.utils import parse_bytes

    try:
        parse_bytes(value)
    except ValueError:
        raise typer.BadParameter(f"expected 'auto' or a size such as 4GB, got {value!r}") from None
    return value


def command(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline YAML (inputs and steps).")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output folder (default: the YAML's 'out')."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Worker processes of a local dask cluster (default: run in this process).",
            callback=at_least(1),
        ),
    ] = None,
    threads_per_worker: Annotated[
        int, typer.Option(help="Threads per worker (torch too).", callback=at_least(1))
    ] = 1,
    scheduler: Annotated[
        str | None, typer.Option(help="Address of a running dask scheduler, tcp://host:8786.")
    ] = None,
    memory_limit: Annotated[
        str,
        typer.Option(
            help="Memory per local worker, e.g. 4GB (auto: split the machine).", callback=_memory
        ),
    ] = "auto",
    overwrite: Annotated[
        bool,
        typer.Option(help="Replace another pipeline's results in --out (a rerun resumes)."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Run the steps of PIPELINE on every input; a rerun resumes where a run stopped.

    Writes items.csv (one row per input), the combined tables (e.g.
    nuclei.csv), images as OME-Zarr by kind, failures.csv, journal.jsonl,
    ro-crate-metadata.json and report.html. Exit 1 when some inputs failed.
    """
    from cytolens.core.batch import exit_if_failed
    from cytolens.core.errors import InputError
    from cytolens.core.summary import strict_json
    from cytolens.pipeline import load_pipeline, run_pipeline

    spec = load_pipeline(pipeline)
    target = out or spec.out
    if target is None:
        raise InputError(f"{pipeline}: no 'out' in the file; pass --out FOLDER")
    result = run_pipeline(
        spec.inputs,
        spec.steps,
        target,
        overwrite=overwrite,
        workers=workers,
        threads_per_worker=threads_per_worker,
        scheduler=scheduler,
        memory_limit=memory_limit,
        progress=not as_json,
    )
    n_done = sum(r["status"] == "done" for r in result.records)
    if as_json:
        typer.echo(
            strict_json(
                {
                    "out": str(result.out),
                    "items": result.n_items,
                    "done": n_done,
                    "reused": result.reused,
                    "failed": len(result.failures),
                    "seconds": round(result.seconds, 3),
                    "records": [
                        {k: r.get(k) for k in ("source", "name", "status", "row", "error")}
                        for r in result.records
                    ],
                }
            )
        )
    else:
        typer.echo(
            f"{n_done} of {result.n_items} input(s) done ({result.reused} from an earlier run) "
            f"in {result.seconds:.1f} s; results in {result.out}"
        )
    exit_if_failed(result, result.out)


def watch_command(
    folder: Annotated[Path, typer.Argument(help="The folder the microscope writes to.")],
    pipeline: Annotated[
        Path, typer.Option("--pipeline", "-p", help="Pipeline YAML (its steps; inputs ignored).")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output folder (default: the YAML's 'out')."),
    ] = None,
    settle: Annotated[
        float,
        typer.Option(
            help="Seconds a file must stay unchanged before it is read.", callback=positive
        ),
    ] = 1.0,
    poll: Annotated[
        float, typer.Option(help="Seconds between looks at the folder.", callback=positive)
    ] = 0.25,
    stop_after_idle: Annotated[
        float | None,
        typer.Option(help="Stop after this many seconds without new files.", callback=positive),
    ] = None,
    max_items: Annotated[
        int | None, typer.Option(help="Stop after this many files.", callback=at_least(1))
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Worker processes of a local dask cluster.", callback=at_least(1)),
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="Address of a running dask scheduler.")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace another pipeline's results in --out.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Run a pipeline on every image that appears in FOLDER, until Ctrl-C or a stop rule.

    A live line shows files waiting, running, done and failed, images per
    second and the lag behind acquisition. The run's tables and report are
    written when the watch stops.
    """
    import numpy as np
    from rich.console import Console

    from cytolens.core.batch import exit_if_failed
    from cytolens.core.errors import InputError
    from cytolens.core.summary import strict_json
    from cytolens.pipeline import load_pipeline
    from cytolens.pipeline.watch import watch

    spec = load_pipeline(pipeline, need_inputs=False)
    target = out or spec.out
    if target is None:
        raise InputError(f"{pipeline}: no 'out' in the file; pass --out FOLDER")
    console = Console(stderr=True)
    with console.status(f"watching {folder}", spinner="dots") as line:
        result, status = watch(
            folder,
            spec.steps,
            target,
            settle_s=settle,
            poll_s=poll,
            idle_stop_s=stop_after_idle,
            max_items=max_items,
            overwrite=overwrite,
            workers=workers,
            scheduler=scheduler,
            status=None if as_json else (lambda s: line.update(f"{folder}: {s.line()}")),
        )
    lat = status.latencies_s
    summary = {
        "out": str(result.out),
        "items": result.n_items,
        "failed": len(result.failures),
        "images_per_s": round(status.images_per_s, 3),
        "latency_median_s": round(float(np.median(lat)), 3) if lat else None,
        "latency_p95_s": round(float(np.percentile(lat, 95)), 3) if lat else None,
        "max_in_flight": status.max_in_flight,
    }
    if as_json:
        typer.echo(strict_json(summary))
    else:
        typer.echo(
            f"{result.n_items} file(s), {summary['failed']} failed, "
            f"median latency {summary['latency_median_s']} s; results in {result.out}"
        )
    exit_if_failed(result, result.out)
