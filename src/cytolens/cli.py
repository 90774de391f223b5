"""The ``cytolens`` command line: one typer app, ``cytolens <capability> <verb>``.

Commands only parse arguments, read files, call the Python API and write
results. Errors raised on purpose (:class:`~cytolens.core.errors.CytolensError`)
are printed as one line, with a non-zero exit code, never as a traceback.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cytolens import __version__
from cytolens.core.errors import CytolensError, InputError, MissingFileError

app = typer.Typer(
    name="cytolens",
    help="Deep-learning methods of modern light microscopy, for the people who run microscopes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

#: Exit code for bad input or a failed operation (typer/click use 2 for usage errors too).
EXIT_ERROR = 2


def _version(value: bool) -> None:
    if value:
        console.print(f"cytolens {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    if not verbose:  # the error we raise says it in one line; the reader's own log would repeat it
        logging.getLogger("tifffile").setLevel(logging.ERROR)


def _register_subapps() -> None:
    """Mount each capability's commands (``cytolens restore ...``) when the capability exists."""
    import importlib

    for name, help_text in (
        ("restore", "Restore images: deconvolution."),
        ("focus", "Rate focus quality and find the best plane."),
        ("segment", "Segment nuclei and cells; measure them."),
        ("track", "Track cells over time."),
        ("detect", "Detect objects with boxes: train on LabelImg/Pascal VOC annotations, predict."),
        ("classify", "Classify protein localization (HPA images) and cell phenotypes."),
        ("explore", "Explore cells: embeddings, a map with thumbnails, clusters, outliers."),
        ("models", "List, inspect and export the shipped models."),
        ("pipeline", "Run a pipeline of steps over a whole acquisition."),
        ("register", "Register images, fuse multiview data, stitch tiles."),
        ("label_free", "Predict fluorescence from transmitted light (in silico labeling)."),
    ):
        try:
            module = importlib.import_module(f"cytolens.{name}.cli")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith(f"cytolens.{name}"):
                continue
            raise
        if hasattr(module, "app"):  # a capability with verbs: `cytolens focus rate`
            app.add_typer(module.app, name=name.replace("_", "-"), help=help_text)
        elif name == "pipeline":  # `cytolens run pipeline.yaml`, `cytolens watch FOLDER`
            app.command("run")(module.command)
            app.command("watch")(module.watch_command)
        else:  # a single command: `cytolens track MOVIE`
            app.command(name)(module.command)


def _info_row(path: Path) -> dict[str, Any]:
    from cytolens import io

    if path.is_dir() and not path.name.endswith((".zarr", ".ome.zarr")):
        seq = io.read_ctc(path)
        summary = io.describe(seq.frames)
        summary["format"] = "Cell Tracking Challenge sequence"
        summary["tracks"] = None if seq.tracks is None else len(seq.tracks)
        return summary
    return io.describe(io.imread(path))


@app.command()
def info(
    files: Annotated[list[Path], typer.Argument(help="Image files or folders (CTC, OME-Zarr).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show shape, axes, dtype, pixel size, intensity range and chunks of images."""
    rows = []
    for path in files:
        if not path.exists():
            raise MissingFileError(f"{path}: no such file or folder")
        rows.append(_info_row(path))
    if as_json:
        from cytolens.core.summary import strict_json

        typer.echo(strict_json(rows))
        return
    for row in rows:
        table = Table(title=str(row.get("path")), show_header=False, title_justify="left")
        for key, value in row.items():
            if key != "path" and value is not None:
                table.add_row(key, _fmt(value))
        console.print(table)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    return str(value)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("demo-out"),
) -> None:
    """Run every capability on the bundled sample images and write an HTML report."""
    from cytolens.demo import run_demo

    report = run_demo(out, console=console)
    console.print(f"[bold green]report written:[/] {report.resolve()}")


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM/SIGHUP: raise, so temporaries are removed and no partial output stays."""
    raise Terminated(signum)


class Terminated(BaseException):
    """The process was asked to stop (SIGTERM); not an ``Exception``, like Ctrl-C."""


def _error(message: str) -> None:
    msg = message.strip().replace("\n", "; ")
    err_console.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)


def _click_exceptions() -> Any:
    """click's exception module (typer >= 0.23 vendors click as ``typer._click``)."""
    try:
        from typer._click import exceptions
    except ImportError:  # older typer on click
        from click import exceptions
    return exceptions


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``cytolens`` command.

    Exit codes: 0 done; 1 done, but some inputs failed (listed); 2 bad input,
    bad option or failed operation (one line naming the file, option or
    value); 130 interrupted (Ctrl-C); 143 terminated (SIGTERM).
    """
    import signal

    from pydantic import ValidationError

    click_errors = _click_exceptions()
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, _terminate)
    try:
        code = app(args=argv, prog_name="cytolens", standalone_mode=False)
    except (CytolensError, ValidationError, OSError) as exc:
        _error(str(exc))
        sys.exit(EXIT_ERROR)
    except click_errors.NoArgsIsHelpError as exc:  # the help was printed when it was raised
        sys.exit(exc.exit_code)
    except click_errors.ClickException as exc:  # bad option values, missing arguments
        ctx = getattr(exc, "ctx", None)
        hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        _error(exc.format_message() + hint)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        code = 130
    except Terminated:
        err_console.print("terminated: no partial output was kept", highlight=False)
        sys.exit(143)
    if code == 130:  # typer turns Ctrl-C into Exit(130)
        err_console.print("interrupted: no partial output was kept", highlight=False)
    sys.exit(code if isinstance(code, int) else 0)


_register_subapps()

__all__ = ["EXIT_ERROR", "InputError", "app", "main"]
