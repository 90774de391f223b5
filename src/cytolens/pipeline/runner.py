"""The one runner: steps over inputs, in this process or on dask.distributed workers.

:func:`run_pipeline` owns what every batch needs: finding the inputs, the
output folder policy (:func:`~cytolens.core.files.prepare_output_dir`),
unique output names, atomic writes, a progress bar, the journal and resume,
provenance (in each OME-Zarr's attributes, the journal and an RO-Crate
descriptor), a bad input failing alone (``failures.csv``), combined tables
and one HTML report.

Layout of the output folder::

    items.csv                 one row per input: status and each step's columns
    <table>.csv               per-object tables of every input (e.g. nuclei.csv)
    <table>.parquet           the same table as Parquet (typed columns, for pandas/R/Arrow)
    <kind>/<name>.ome.zarr    images by kind (labels/, deconvolved/)
    tables/<table>/<name>.csv the per-input parts of the combined tables
    failures.csv              inputs that failed, with their one-line cause
    journal.jsonl             one line per finished input (resume, provenance)
    ro-crate-metadata.json    the run as an RO-Crate
    report.html
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from cytolens.core.batch import Failure, one_line, report_failures, write_failures
from cytolens.core.errors import InputError, OutputError
from cytolens.core.files import atomic_path, prepare_output_dir, sha256
from cytolens.io.paths import StemNamer
from cytolens.pipeline.journal import (
    JOURNAL,
    RO_CRATE,
    Journal,
    now,
    pipeline_key,
    write_ro_crate,
)
from cytolens.pipeline.step import Item, Step

__all__ = ["Executor", "RunResult", "Session", "process_item", "run_pipeline"]

logger = logging.getLogger(__name__)

#: Files of the run itself (not per-input outputs).
RUN_FILES = ("items.csv", "failures.csv", "report.html", JOURNAL, RO_CRATE)


@dataclass
class RunResult:
    """What :func:`run_pipeline` did."""

    out: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    reused: int = 0
    seconds: float = 0.0

    @property
    def failures(self) -> list[Failure]:
        """The inputs that failed."""
        return [
            Failure(r["source"], r.get("error_type", "Error"), r["error"])
            for r in self.records
            if r["status"] == "failed"
        ]

    @property
    def n_items(self) -> int:
        """Inputs tried."""
        return len(self.records)

    @property
    def computed(self) -> int:
        """Inputs processed in this run (not taken from the journal)."""
        return len(self.records) - self.reused


def _spec(steps: Sequence[Step]) -> dict[str, Any]:
    from cytolens import __version__

    models = [m for s in steps for m in s.models()]
    return {"cytolens": __version__, "steps": [s.spec() for s in steps], "models": models}


@cache
def _steps_from(spec_json: str) -> list[Step]:
    """Steps rebuilt from their JSON spec, once per process (models load once per worker)."""
    from cytolens.pipeline.config import make_step

    return [make_step(s["step"], s["params"]) for s in json.loads(spec_json)]


def _smallest_uint(labels: np.ndarray) -> np.ndarray:
    top = int(labels.max()) if labels.size else 0
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return labels.astype(dtype, copy=False)
    return labels


def process_item(
    source: str,
    name: str,
    steps_json: str,
    out: str,
    key: str,
    provenance: dict[str, Any],
    threads: int | None = None,
) -> dict[str, Any]:
    """Run the steps on one input and write its outputs atomically; never raises.

    This is what a worker runs (arguments are plain, picklable values).

    Returns
    -------
    dict
        The journal record: ``status`` ("done" or "failed"), ``outputs``
        (paths relative to ``out``), ``row``, ``tables``, ``seconds``, and
        ``error`` for a failure.
    """
    from cytolens.io import imread, imwrite

    t0 = time.perf_counter()
    record: dict[str, Any] = {"name": name, "source": source, "key": key, **provenance}
    written: list[Path] = []
    folder = Path(out)
    nested: Any = contextlib.nullcontext()
    if threads:  # on a Dask worker: its thread budget, and nested Dask work stays in this task
        import dask
        import torch

        torch.set_num_threads(threads)
        # without this, a Dask computation inside a step (e.g. an OME-Zarr pyramid) is sent
        # back to the cluster as sub-tasks: measured 4x slower per image on one worker
        nested = dask.config.set(
            scheduler="synchronous" if threads == 1 else "threads", num_workers=threads
        )
    with nested:
        try:
            item = Item(Path(source), name, imread(source))
            for step in _steps_from(steps_json):
                step.run(item)
            outputs, tables = [], {}
            item_prov = {k: provenance[k] for k in ("cytolens", "steps", "models", "input_sha256")}
            for kind, image in item.images.items():
                data = image.data
                if kind == "labels":
                    data = _smallest_uint(np.asarray(data))
                path = folder / kind / f"{name}.ome.zarr"
                imwrite(
                    path,
                    data,
                    axes=image.axes,
                    pixel_size_um=image.pixel_size_um or None,
                    provenance={**item_prov, "source": source, "output": kind},
                )
                written.append(path)
                outputs.append(str(path.relative_to(folder)))
            for table_name, table in item.tables.items():
                path = folder / "tables" / table_name / f"{name}.csv"
                path.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(path) as tmp:
                    table.to_csv(tmp, index=False)
                written.append(path)
                outputs.append(str(path.relative_to(folder)))
                tables[table_name] = str(path.relative_to(folder))
            record.update(status="done", outputs=outputs, tables=tables, row=_plain(item.row))
        except Exception as exc:
            logger.debug("%s failed", source, exc_info=True)
            for path in written:  # an item is all or nothing
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            record.update(status="failed", error=one_line(exc), error_type=type(exc).__name__)
            record.update(outputs=[], tables={}, row={})
    record["seconds"] = round(time.perf_counter() - t0, 3)
    record["finished"] = now()
    return record


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """Row values as JSON-safe Python scalars (NaN kept as None)."""
    from cytolens.core.summary import strict_json

    return json.loads(strict_json(row))


def _clear_earlier_run(out: Path, journal: Journal) -> None:
    """Remove what an earlier run recorded (its outputs and run files); keep anything else."""
    tables = {
        f"{t}.{ext}"
        for r in journal.records.values()
        for t in r.get("tables", {})
        for ext in ("csv", "parquet")
    }
    for rel in [*journal.outputs(), *tables, *RUN_FILES]:
        path = out / rel
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    for table_dir in (out / "tables").glob("*"):  # empty folders left by the removal
        if table_dir.is_dir() and not any(table_dir.iterdir()):
            table_dir.rmdir()


def _prepare(out: Path, files: list[Path], key: str, overwrite: bool) -> Journal:
    """The output folder policy, plus resume: an earlier run of the same pipeline continues."""
    journal = Journal(out) if out.is_dir() else None
    same = journal is not None and any(r.get("pipeline") == key for r in journal.records.values())
    if journal is not None and journal.records and not same:
        if not overwrite:
            raise OutputError(
                f"--out {out}: holds the results of another pipeline (other steps, "
                "parameters, models or cytolens version); choose another folder, or pass "
                "--overwrite to remove those results"
            )
        _clear_earlier_run(out, journal)
    prepare_output_dir(out, protected=files, overwrite=overwrite or same)
    return Journal(out)


def run_pipeline(
    inputs: Iterable[str | os.PathLike[str]],
    steps: Sequence[Step],
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    workers: int | None = None,
    threads_per_worker: int = 1,
    scheduler: str | None = None,
    memory_limit: str = "auto",
    progress: bool = True,
    report: bool = True,
) -> RunResult:
    """Run ``steps`` on every input and write the results to ``out``.

    Parameters
    ----------
    inputs : iterable of path-like
        Files, folders or glob patterns (see :func:`cytolens.io.find_images`).
    steps : sequence of Step
        E.g. ``make_steps([("segment.nuclei", {}), ("segment.measure", {})])``.
    out : path-like
        Output folder. A folder holding an earlier run of the *same* pipeline
        is resumed (finished inputs are skipped); any other non-empty folder
        is refused unless ``overwrite``, which removes that run's results.
    overwrite : bool
        Replace the results of another pipeline in ``out``.
    workers : int, optional
        Run on a local dask.distributed cluster with this many worker
        processes (``None`` or 0: in this process).
    threads_per_worker : int
        Threads per worker (torch threads are set to the same).
    scheduler : str, optional
        Address of a running dask scheduler (e.g. ``tcp://10.0.0.1:8786``).
    memory_limit : str
        Memory per local worker (``"4GB"``; ``"auto"`` splits the machine).
    progress : bool
        Show a progress bar.
    report : bool
        Write ``report.html``.

    Returns
    -------
    RunResult

    Examples
    --------
    >>> import tempfile
    >>> from cytolens import data
    >>> from cytolens.pipeline import make_steps
    >>> out = Path(tempfile.mkdtemp()) / "run"
    >>> steps = make_steps([("segment.nuclei", {"method": "classical"}),
    ...                     ("segment.measure", {})])
    >>> res = run_pipeline([data.sample_path("nuclei_bbbc006.png")], steps, out, progress=False)
    >>> res.records[0]["status"], res.records[0]["row"]["nuclei"] > 5
    ('done', True)
    >>> run_pipeline([data.sample_path("nuclei_bbbc006.png")], steps, out, progress=False).reused
    1
    """
    from cytolens.core.progress import progress_bar
    from cytolens.io import find_images

    files = find_images(inputs)
    session = Session(steps, out, protected=files, overwrite=overwrite)
    order = [session.add(path) for path in files]
    with (
        progress_bar(disable=not progress) as bar,
        Executor(workers, threads_per_worker, scheduler, memory_limit) as executor,
    ):
        task = bar.add_task("running", total=len(files), completed=session.result.reused)
        for args in session.pending:
            executor.submit(session, args)
        session.pending.clear()
        while executor.busy:
            for rec in executor.wait():
                session.finish_item(rec)
                bar.update(
                    task, advance=1, description=f"{rec['status']} {Path(rec['source']).name}"
                )
    return session.close(order, report=report)


class Session:
    """The state of one run: output folder, journal, pipeline key, records by item name.

    :func:`run_pipeline` and :func:`~cytolens.pipeline.watch.watch` both
    drive one: ``add`` each input (a finished one is taken from the journal,
    else queued in ``pending``), ``finish_item`` each record an
    :class:`Executor` returns, and ``close`` to write the run's files.
    """

    def __init__(
        self,
        steps: Sequence[Step],
        out: str | os.PathLike[str],
        *,
        protected: Iterable[Path],
        overwrite: bool,
    ) -> None:
        if not steps:
            raise InputError("a pipeline needs at least one step")
        self.t_start = time.perf_counter()
        self.started = now()
        self.out = Path(out)
        self.spec = _spec(steps)
        self.key = pipeline_key(self.spec)
        self.journal = _prepare(self.out, list(protected), self.key, overwrite)
        self.steps_json = json.dumps(self.spec["steps"])
        self.result = RunResult(self.out)
        self.records: dict[str, dict[str, Any]] = {}
        self.pending: list[tuple[str, str, str, dict[str, Any]]] = []
        self._name = StemNamer()

    def add(self, path: Path) -> str:
        """Register an input; returns its output name. Queues it unless the journal has it."""
        name = self._name(path)
        sha = sha256(path)
        item_key = f"{self.key}:{sha}"
        rec = self.journal.done(name, item_key, self.out)
        if rec is not None:
            self.records[name] = rec
            self.result.reused += 1
        else:
            prov = {**self.spec, "pipeline": self.key, "input_sha256": sha}
            self.pending.append((str(path), name, item_key, prov))
        return name

    def finish_item(self, record: dict[str, Any]) -> None:
        """Journal a finished item (flushed to disk)."""
        self.journal.append(record)
        self.records[record["name"]] = record

    def close(self, order: Sequence[str], *, report: bool = True) -> RunResult:
        """Write items.csv, combined tables, failures, report and RO-Crate; return the result."""
        self.result.records = [self.records[n] for n in order if n in self.records]
        _write_run_files(self.result, self.spec, self.started, report)
        self.result.seconds = time.perf_counter() - self.t_start
        return self.result


class Executor:
    """Runs :func:`process_item` here (``workers`` None/0) or on dask.distributed workers.

    ``submit`` queues an item; ``wait`` returns the records of items that
    finished (blocking until at least one did; ``timeout`` seconds at most);
    ``busy`` tells whether any is queued or running.
    """

    def __init__(
        self,
        workers: int | None = None,
        threads: int = 1,
        scheduler: str | None = None,
        memory_limit: str = "auto",
    ) -> None:
        self.distributed = bool(workers) or scheduler is not None
        self.workers, self.threads = workers, threads
        self.scheduler, self.memory_limit = scheduler, memory_limit
        self._queue: list[tuple[Session, tuple[str, str, str, dict[str, Any]]]] = []
        self._futures: dict[Any, tuple[str, str, str, dict[str, Any]]] = {}
        self._cluster = self._client = None

    def __enter__(self) -> Executor:
        if not self.distributed:
            return self
        from distributed import Client, LocalCluster

        if not logger.isEnabledFor(logging.INFO):  # the cluster's start/stop chatter
            logging.getLogger("distributed").setLevel(logging.ERROR)
        if self.scheduler is not None:
            try:
                self._client = Client(self.scheduler, timeout="5s")
            except (OSError, TimeoutError) as exc:
                raise InputError(f"--scheduler {self.scheduler}: cannot connect ({exc})") from None
        else:
            import dask

            # Dask's nannies set MALLOC_TRIM_THRESHOLD_ before spawning a worker; fixing
            # glibc's trim threshold also fixes its mmap threshold, so every large array
            # is mapped and faulted in afresh: the torch steps ran 1.6x slower in a worker
            # (measured, benchmarks/pipeline.py). None keeps the variable out of the
            # nanny's settings; a nanny of an earlier cluster leaves it in this process's
            # environment, which workers inherit, so it is out of that too meanwhile.
            key = "distributed.nanny.pre-spawn-environ"
            environ = {**dask.config.get(key, {}), "MALLOC_TRIM_THRESHOLD_": None}
            inherited = os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
            try:
                with dask.config.set({key: environ}):
                    self._cluster = LocalCluster(
                        n_workers=self.workers,
                        threads_per_worker=self.threads,
                        processes=True,
                        memory_limit=self.memory_limit,
                        dashboard_address=None,
                    )
            finally:
                if inherited is not None:
                    os.environ["MALLOC_TRIM_THRESHOLD_"] = inherited
            self._client = Client(self._cluster)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()

    @property
    def busy(self) -> bool:
        """Whether any item is queued or running."""
        return bool(self._queue or self._futures)

    @property
    def in_flight(self) -> int:
        """Items queued or running."""
        return len(self._queue) + len(self._futures)

    def submit(self, session: Session, args: tuple[str, str, str, dict[str, Any]]) -> None:
        """Queue one item of ``session`` (arguments as in ``Session.pending``)."""
        source, name, key, prov = args
        if not self.distributed:
            self._queue.append((session, args))
            return
        future = self._client.submit(
            process_item,
            *(source, name, session.steps_json, str(session.out.resolve()), key, prov),
            self.threads,
            key=f"item-{name}-{key[-8:]}",
            pure=False,
        )
        self._futures[future] = args

    def wait(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """Records of finished items: in this process, runs the next queued one."""
        if not self.distributed:
            if not self._queue:
                return []
            session, (source, name, key, prov) = self._queue.pop(0)
            return [process_item(source, name, session.steps_json, str(session.out), key, prov)]
        from distributed import wait as dask_wait

        if not self._futures:
            return []
        done, _ = dask_wait(list(self._futures), timeout=timeout, return_when="FIRST_COMPLETED")
        records = []
        for future in done:
            source, name, key, prov = self._futures.pop(future)
            try:
                records.append(future.result())
            except Exception as exc:  # a worker died: that item fails alone
                records.append(_lost(source, name, key, prov, exc))
        return records


def _lost(
    source: str, name: str, key: str, prov: dict[str, Any], exc: BaseException
) -> dict[str, Any]:
    """The record of an item whose worker died."""
    return {
        **prov,
        "name": name,
        "source": source,
        "key": key,
        "status": "failed",
        "error": f"worker lost: {one_line(exc)}",
        "error_type": "WorkerError",
        "outputs": [],
        "tables": {},
        "row": {},
        "finished": now(),
    }


def _write_run_files(result: RunResult, spec: dict[str, Any], started: str, report: bool) -> None:
    import pandas as pd

    out = result.out
    done = [r for r in result.records if r["status"] == "done"]
    table_names = sorted({t for r in done for t in r.get("tables", {})})
    outputs = [p for r in done for p in r.get("outputs", [])]
    for table in table_names:
        parts = [out / r["tables"][table] for r in done if table in r.get("tables", {})]
        frames = [pd.read_csv(p) for p in parts if p.stat().st_size > 1]
        combined = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        with atomic_path(out / f"{table}.csv") as tmp:
            combined.to_csv(tmp, index=False)
        with atomic_path(out / f"{table}.parquet") as tmp:
            combined.to_parquet(tmp, index=False)
        outputs += [f"{table}.csv", f"{table}.parquet"]
    rows = [
        {
            "file": r["source"],
            "name": r["name"],
            "status": r["status"],
            **r.get("row", {}),
            "error": r.get("error", ""),
            "seconds": r.get("seconds"),
        }
        for r in result.records
    ]
    with atomic_path(out / "items.csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    outputs.append("items.csv")
    if write_failures(out, result.failures) is not None:
        outputs.append("failures.csv")
    elif (out / "failures.csv").exists():  # an earlier attempt's failures were redone
        (out / "failures.csv").unlink()
    if report:
        _report(result, spec, rows, table_names)
        outputs.append("report.html")
    outputs.append(JOURNAL)
    write_ro_crate(
        out, spec=spec, records=result.records, outputs=outputs, started=started, ended=now()
    )


def _report(
    result: RunResult, spec: dict[str, Any], rows: list[dict[str, Any]], tables: list[str]
) -> None:
    from cytolens.report import Report

    chain = " -> ".join(s["step"] for s in spec["steps"])
    rep = Report(f"cytolens pipeline: {chain}")
    n_done = sum(r["status"] == "done" for r in result.records)
    rep.text(
        f"{result.n_items} input(s): {n_done} done ({result.reused} taken from an earlier run "
        f"of the same pipeline), {len(result.failures)} failed. cytolens {spec['cytolens']}."
    )
    rep.heading("Steps and parameters")
    rep.table([{"step": s["step"], "parameters": json.dumps(s["params"])} for s in spec["steps"]])
    if spec["models"]:
        rep.heading("Models")
        rep.table(spec["models"])
    rep.heading("Inputs")
    rep.table([{k: v for k, v in r.items() if k != "file"} for r in rows])
    if tables:
        rep.heading("Tables")
        rep.text(", ".join(f"{t}.csv" for t in tables) + " (one row per object, every input).")
    report_failures(rep, result.failures)
    rep.save(result.out / "report.html")
