"""Progress reporting shared by every long operation and command.

- :func:`progress_bar`: the one rich progress bar of the command line
  (description, bar, ``done/total``, time left; on stderr, cleared when done).
- :func:`progress_reporter`: what API functions do with their ``progress``
  argument (``False``/``None``, ``True`` for a bar, or a callable
  ``progress(done, total)``).

rich is imported only when a bar is shown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from cytolens.core.errors import InputError

__all__ = ["progress_bar", "progress_reporter"]


def progress_bar(*, disable: bool = False) -> Any:
    """A transient rich progress bar on stderr (use as a context manager).

    Parameters
    ----------
    disable : bool
        Show nothing (for example when a command prints JSON). Nothing is
        shown either when stderr is not a terminal (a log file, a pipe).

    Returns
    -------
    rich.progress.Progress

    Examples
    --------
    >>> with progress_bar(disable=True) as bar:
    ...     task = bar.add_task("reading", total=2)
    ...     bar.advance(task)
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        # a log file or pipe gets no bar (and no stray blank line before an error)
        disable=disable or not (console.is_terminal or console.is_jupyter),
    )


@contextmanager
def progress_reporter(
    progress: bool | Callable[[int, int], Any] | None, total: int | None, what: str = "working"
) -> Iterator[Callable[..., None]]:
    """Yield ``update(done, total=None)`` for an API function's ``progress`` argument.

    Parameters
    ----------
    progress : bool, callable or None
        ``True`` shows :func:`progress_bar`; a callable is called as
        ``progress(done, total)``; ``False`` or ``None`` report nothing.
    total : int or None
        Units of work (``update`` may change it, e.g. when a stop rule ends early).
    what : str
        Description shown beside the bar.

    Yields
    ------
    callable
        ``update(done, total=None)``.

    Examples
    --------
    >>> seen = []
    >>> with progress_reporter(lambda d, t: seen.append((d, t)), 3) as update:
    ...     for k in range(1, 4):
    ...         update(k)
    >>> seen
    [(1, 3), (2, 3), (3, 3)]
    """
    state = {"total": total}
    if progress is True:
        with progress_bar() as bar:
            task = bar.add_task(what, total=total)

            def show(done: int, total: int | None = None) -> None:
                bar.update(task, completed=done, **({} if total is None else {"total": total}))

            yield show
    elif progress is False or progress is None:
        yield lambda done, total=None: None
    elif callable(progress):

        def call(done: int, total: int | None = None) -> None:
            if total is not None:
                state["total"] = total
            progress(done, state["total"])

        yield call
    else:
        raise InputError(
            f"progress must be True, False or a callable(done, total), got {progress!r}"
        )
