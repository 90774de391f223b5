"""Process images as the microscope writes them: ``cytolens watch FOLDER``.

The folder is polled; a file counts once its size and modification time have
not changed for ``settle_s`` seconds (the acquisition program has closed it).
Each ready file goes through the same :class:`~cytolens.pipeline.runner.Session`
and :class:`~cytolens.pipeline.runner.Executor` as :func:`run_pipeline`, so
outputs, journal, resume, provenance and failures behave the same; the run's
tables and report are written when the watch stops (idle timeout, item
limit, Ctrl-C, or the folder disappearing).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cytolens.core.errors import MissingFileError
from cytolens.io.paths import is_image_file, natural_key
from cytolens.pipeline.runner import Executor, RunResult, Session
from cytolens.pipeline.step import Step

__all__ = ["WatchStatus", "watch"]


@dataclass
class WatchStatus:
    """A snapshot of a watch, given to the ``status`` callback after every poll."""

    waiting: int = 0  # files seen but not yet settled
    in_flight: int = 0  # queued or running
    done: int = 0
    failed: int = 0
    reused: int = 0
    images_per_s: float = 0.0
    lag_s: float = 0.0  # age of the oldest unfinished file
    max_in_flight: int = 0
    latencies_s: list[float] = field(default_factory=list)

    def line(self) -> str:
        """One status line for a terminal."""
        return (
            f"waiting {self.waiting}, running {self.in_flight}, done {self.done}, "
            f"failed {self.failed}, {self.images_per_s:.2f} images/s, lag {self.lag_s:.1f} s"
        )


def watch(
    folder: str | os.PathLike[str],
    steps: Sequence[Step],
    out: str | os.PathLike[str],
    *,
    settle_s: float = 1.0,
    poll_s: float = 0.25,
    idle_stop_s: float | None = None,
    max_items: int | None = None,
    overwrite: bool = False,
    workers: int | None = None,
    threads_per_worker: int = 1,
    scheduler: str | None = None,
    memory_limit: str = "auto",
    status: Callable[[WatchStatus], Any] | None = None,
    report: bool = True,
) -> tuple[RunResult, WatchStatus]:
    """Run ``steps`` on every image that appears in ``folder`` until told to stop.

    Parameters
    ----------
    folder : path-like
        The folder the microscope writes to (not recursive).
    steps : sequence of Step
        The pipeline.
    out : path-like
        Output folder (as for :func:`~cytolens.pipeline.run_pipeline`; it may
        not be ``folder`` or hold it).
    settle_s : float
        Seconds a file's size and time must stay unchanged before it is read.
    poll_s : float
        Seconds between looks at the folder.
    idle_stop_s : float, optional
        Stop when nothing arrived or ran for this long (default: run until
        Ctrl-C or ``max_items``).
    max_items : int, optional
        Stop after this many files are finished.
    overwrite, workers, threads_per_worker, scheduler, memory_limit
        As for :func:`~cytolens.pipeline.run_pipeline`.
    status : callable, optional
        Called with a :class:`WatchStatus` after every poll.
    report : bool
        Write ``report.html`` at the end.

    Returns
    -------
    (RunResult, WatchStatus)
        The run, and the final status with the latency (arrival to results)
        of every file.

    Raises
    ------
    MissingFileError
        If ``folder`` does not exist, or disappears while watched (the results
        so far are written first).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(f"{folder}: no such folder to watch")
    session = Session(steps, out, protected=[folder], overwrite=overwrite)
    seen: dict[Path, list[Any]] = {}  # path -> [(size, mtime), first seen, stable since]
    arrival: dict[str, float] = {}
    order: list[str] = []
    st = WatchStatus()
    t0 = last_activity = time.monotonic()
    gone = False
    try:
        with Executor(workers, threads_per_worker, scheduler, memory_limit) as executor:
            while True:
                now = time.monotonic()
                try:
                    listing = sorted(
                        (
                            p
                            for p in folder.iterdir()
                            if not p.name.startswith(".") and is_image_file(p)
                        ),
                        key=natural_key,
                    )  # hidden names are temporaries of the writer
                except FileNotFoundError:
                    gone = True
                    break
                ready = []
                for p in listing:
                    if p in seen and seen[p][1] is None:  # already taken
                        continue
                    try:
                        stat = p.stat()
                    except FileNotFoundError:
                        continue
                    sig = (stat.st_size, stat.st_mtime_ns)
                    if p not in seen:
                        seen[p] = [sig, now, now]
                    elif seen[p][0] != sig:
                        seen[p][0], seen[p][2] = sig, now
                    elif now - seen[p][2] >= settle_s and stat.st_size > 0:
                        ready.append(p)
                for p in ready:
                    name = session.add(p)
                    order.append(name)
                    arrival[name] = seen[p][1]
                    seen[p][1] = None
                    last_activity = now
                for args in session.pending:
                    executor.submit(session, args)
                session.pending.clear()
                st.max_in_flight = max(st.max_in_flight, executor.in_flight)
                if executor.busy:
                    records = executor.wait(timeout=poll_s)
                else:
                    records = []
                    time.sleep(poll_s)
                done_at = time.monotonic()
                for rec in records:
                    session.finish_item(rec)
                    st.latencies_s.append(done_at - arrival[rec["name"]])
                    st.failed += rec["status"] == "failed"
                    last_activity = done_at
                st.reused = session.result.reused
                st.done = len(session.records) - st.failed - st.reused
                st.in_flight = executor.in_flight
                st.waiting = sum(1 for v in seen.values() if v[1] is not None)
                unfinished = [arrival[n] for n in order if n not in session.records]
                st.lag_s = done_at - min(unfinished) if unfinished else 0.0
                st.images_per_s = (st.done + st.failed) / max(done_at - t0, 1e-9)
                if status is not None:
                    status(st)
                finished = len(session.records)
                if max_items is not None and finished >= max_items and not executor.busy:
                    break
                idle = done_at - last_activity
                if idle_stop_s is not None and not executor.busy and idle >= idle_stop_s:
                    break
    finally:  # Ctrl-C or an error: what finished is journaled; write the run's files
        result = session.close(order, report=report)
    if gone:
        raise MissingFileError(
            f"{folder}: the watched folder disappeared; the {len(result.records)} result(s) "
            f"so far are in {result.out}"
        )
    return result, st
