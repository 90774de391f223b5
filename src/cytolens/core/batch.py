"""Run one operation over many inputs so that a bad input fails alone.

:func:`run_batch` is the one loop of the batch commands: a progress bar, each
item processed in turn, a failure recorded (item, error type, one-line
message) and the rest carried on, so one corrupt file in a plate does not
lose the combined table and report of the others. :func:`write_failures`
writes ``failures.csv`` beside the results, :func:`report_failures` adds the
table to a report, and the command exits with :data:`EXIT_SOME_FAILED`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from cytolens.core.errors import CytolensError

__all__ = [
    "EXIT_ALL_FAILED",
    "EXIT_SOME_FAILED",
    "BatchResult",
    "Failure",
    "exit_if_failed",
    "naming_file",
    "one_line",
    "report_failures",
    "run_batch",
    "write_failures",
]

logger = logging.getLogger(__name__)

#: Exit code of a command that finished but could not process some of its inputs.
EXIT_SOME_FAILED = 1
#: Exit code when no input could be processed (as for any other error).
EXIT_ALL_FAILED = 2

T = TypeVar("T")
R = TypeVar("R")


def one_line(exc: BaseException) -> str:
    """The message of an exception on one line, with its type unless cytolens raised it.

    Examples
    --------
    >>> one_line(ValueError("bad\\nvalue"))
    'ValueError: bad; value'
    """
    text = str(exc).strip().replace("\n", "; ") or type(exc).__name__
    return text if isinstance(exc, CytolensError) else f"{type(exc).__name__}: {text}"


def naming_file(path: Path | str, exc: CytolensError) -> CytolensError:
    """``exc`` with the file's path in front when its message does not name the file.

    Examples
    --------
    >>> from cytolens.core.errors import InputError
    >>> str(naming_file(Path("a/b.tif"), InputError("too small")))
    'a/b.tif: too small'
    >>> str(naming_file(Path("a/b.tif"), InputError("b.tif: too small")))
    'b.tif: too small'
    """
    path = Path(path)
    message = str(exc)
    if str(path) in message or path.name in message:
        return exc
    return type(exc)(f"{path}: {message}")


@dataclass(frozen=True)
class Failure:
    """One input that could not be processed."""

    item: str
    error: str
    message: str


@dataclass
class BatchResult(Generic[R]):
    """What :func:`run_batch` returns: results of the items that worked, and the failures."""

    results: list[R] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    @property
    def n_items(self) -> int:
        """Items tried."""
        return len(self.results) + len(self.failures)


def run_batch(
    items: Sequence[T],
    process: Callable[[T], R],
    *,
    name: Callable[[T], str] = str,
    description: str = "processing",
    progress: bool = True,
    stop_on_error: bool = False,
) -> BatchResult[R]:
    """Apply ``process`` to every item; record failures and carry on.

    Parameters
    ----------
    items : sequence
        The inputs (file paths, sample ids, ...).
    process : callable
        ``process(item) -> result``. Any exception it raises fails that item
        only; Ctrl-C and SIGTERM stop the batch.
    name : callable
        How an item is named in the progress bar and the failures table.
    description : str
        What the progress bar says (followed by the item's name).
    progress : bool
        Show a progress bar on stderr.
    stop_on_error : bool
        Re-raise the first failure instead of carrying on.

    Returns
    -------
    BatchResult
        ``results`` in input order (of the items that worked) and ``failures``.

    Examples
    --------
    >>> res = run_batch([1, 0, 2], lambda x: 1 / x, progress=False)
    >>> res.results, [f.item for f in res.failures], res.failures[0].error
    ([1.0, 0.5], ['0'], 'ZeroDivisionError')
    """
    from cytolens.core.progress import progress_bar

    result: BatchResult[R] = BatchResult()
    with progress_bar(disable=not progress) as bar:
        task = bar.add_task(description, total=len(items))
        for item in items:
            label = name(item)
            bar.update(task, description=f"{description} {Path(label).name}")
            try:
                result.results.append(process(item))
            except Exception as exc:
                if stop_on_error:
                    raise
                logger.debug("%s failed", label, exc_info=True)
                logger.info("%s: failed: %s", label, one_line(exc))
                result.failures.append(Failure(label, type(exc).__name__, one_line(exc)))
            bar.advance(task)
    return result


def write_failures(folder: str | Path, failures: Iterable[Failure]) -> Path | None:
    """Write ``failures.csv`` (item, error, message) in ``folder``.

    When nothing failed, no file is written and a ``failures.csv`` left by an
    earlier run in that folder is removed (it would describe another run).

    Returns
    -------
    Path or None
    """
    import pandas as pd

    from cytolens.core.files import atomic_path

    rows = [f.__dict__ for f in failures]
    path = Path(folder) / "failures.csv"
    if not rows:
        path.unlink(missing_ok=True)
        return None
    with atomic_path(path) as tmp:
        pd.DataFrame(rows, columns=["item", "error", "message"]).to_csv(tmp, index=False)
    return path


def report_failures(report: Any, failures: Sequence[Failure]) -> None:
    """Add a "Failed inputs" section to a :class:`~cytolens.report.Report` when any failed."""
    if not failures:
        return
    report.heading("Failed inputs")
    report.text(
        f"{len(failures)} input(s) could not be processed and are missing from the tables "
        "above (also listed in failures.csv)."
    )
    report.table([f.__dict__ for f in failures])


def exit_if_failed(result: Any, folder: str | Path | None = None) -> None:
    """End a command with one line per failed input, if any failed.

    The exit code is :data:`EXIT_SOME_FAILED` (1) when some inputs were
    processed, :data:`EXIT_ALL_FAILED` (2, as for any error) when none was.
    Call it last, after the results, the report and any ``--json`` summary
    are out. ``result`` has ``failures`` and ``n_items`` (a
    :class:`BatchResult` or a pipeline's ``RunResult``).
    """
    import sys

    if not result.failures:
        return
    for f in result.failures:
        print(f"failed: {f.item}: {f.message}", file=sys.stderr)
    where = f"; listed in {Path(folder) / 'failures.csv'}" if folder is not None else ""
    print(f"{len(result.failures)} of {result.n_items} input(s) failed{where}", file=sys.stderr)
    all_failed = len(result.failures) == result.n_items
    raise SystemExit(EXIT_ALL_FAILED if all_failed else EXIT_SOME_FAILED)
