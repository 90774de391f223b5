"""Shared runner for the benchmark scripts in this folder.

Each ``benchmarks/<name>.py`` builds one :class:`Benchmark`, times cytolens and
its peers side by side in the same process, records figures under dotted keys,
and writes ``benchmarks/results/<name>.json`` and ``<name>.md`` (atomically),
with the machine and package versions, so every number can be traced to the
run that measured it.

Usage from a script in this folder::

    from harness import Benchmark
    bench = Benchmark("tiling", description="...")
    t = bench.time(func, image, repeat=3, warmup=1)
    bench.set("ours.median_s", t.median_s)
    bench.write()
"""

from __future__ import annotations

import datetime as _dt
import gc
import importlib.metadata
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

RESULTS = Path(__file__).resolve().parent / "results"
_PACKAGES = ("cytolens", "numpy", "scipy", "scikit-image", "torch", "dask", "tifffile")


@dataclass
class Timing:
    """Wall times of repeated calls and the memory they need.

    ``peak_mb`` is the resident memory added during the timed calls (sampled
    every 5 ms; pages already touched by the warm-up do not count again).
    ``alloc_mb`` is the peak of NumPy/Python heap allocations during one extra
    call traced with :mod:`tracemalloc` (torch's own allocator is not seen).
    """

    median_s: float
    min_s: float
    max_s: float
    repeat: int
    peak_mb: float
    alloc_mb: float | None = None
    result: Any = None

    def as_dict(self) -> dict[str, float]:
        return {
            "median_s": round(self.median_s, 6),
            "min_s": round(self.min_s, 6),
            "max_s": round(self.max_s, 6),
            "repeat": self.repeat,
            "peak_mb": round(self.peak_mb, 1),
            "alloc_mb": None if self.alloc_mb is None else round(self.alloc_mb, 1),
        }


class _PeakRSS:
    """Samples the process's resident memory in a thread; reports the peak above the start."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self._proc = psutil.Process()
        self._interval = interval_s
        self._stop = threading.Event()
        self.peak = 0

    def __enter__(self) -> _PeakRSS:
        self._start = self._proc.memory_info().rss
        self.peak = self._start
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self._interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def added_mb(self) -> float:
        return (self.peak - self._start) / 2**20


def machine_info() -> dict[str, Any]:
    """CPU, memory, Python and package versions of this run."""
    versions = {}
    for pkg in _PACKAGES:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        import torch

        threads = torch.get_num_threads()
        cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        threads, cuda = None, None
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": sys.version.split()[0],
        "torch_threads": threads,
        "cuda_device": cuda,
        "packages": versions,
    }


class Benchmark:
    """Collects timings and figures of one benchmark run and writes them out."""

    def __init__(self, name: str, description: str = "") -> None:
        self.name = name
        self.description = description
        self.results: dict[str, Any] = {}
        self._sections: list[str] = []
        self._started = time.perf_counter()

    def time(
        self,
        fn: Callable[..., Any],
        *args: Any,
        repeat: int = 3,
        warmup: int = 1,
        trace_memory: bool = False,
        **kwargs: Any,
    ) -> Timing:
        """Call ``fn(*args, **kwargs)`` ``warmup`` times untimed, then ``repeat`` times timed.

        With ``trace_memory=True``, one more call runs under :mod:`tracemalloc`
        to measure its peak heap allocation (``Timing.alloc_mb``).
        """
        result = None
        for _ in range(warmup):
            result = fn(*args, **kwargs)
        times = []
        gc.collect()
        with _PeakRSS() as mem:
            for _ in range(repeat):
                t0 = time.perf_counter()
                result = fn(*args, **kwargs)
                times.append(time.perf_counter() - t0)
        times.sort()
        alloc_mb = None
        if trace_memory:
            import tracemalloc

            gc.collect()
            tracemalloc.start()
            fn(*args, **kwargs)
            alloc_mb = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
        return Timing(
            median_s=times[len(times) // 2],
            min_s=times[0],
            max_s=times[-1],
            repeat=repeat,
            peak_mb=mem.added_mb,
            alloc_mb=alloc_mb,
            result=result,
        )

    def set(self, key: str, value: Any) -> None:
        """Record ``value`` under a dotted key, e.g. ``"model.fluorescence.ap50"``."""
        node = self.results
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value

    def text(self, markdown: str) -> None:
        """Add a paragraph of Markdown to the report."""
        self._sections.append(markdown.strip())

    def table(self, title: str, rows: list[dict[str, Any]]) -> None:
        """Add a Markdown table (one dict per row, same keys) under a heading."""
        if not rows:
            self._sections.append(f"### {title}\n\n(no rows)")
            return
        cols = list(rows[0])
        lines = [f"### {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for row in rows:
            lines.append("| " + " | ".join(_fmt(row.get(c)) for c in cols) + " |")
        self._sections.append("\n".join(lines))

    def figure(self, fig: Any, name: str, caption: str = "") -> Path:
        """Save a Matplotlib figure as ``results/<benchmark>_<name>.png`` and link it."""
        from cytolens.report import save_figure

        path = save_figure(fig, RESULTS / f"{self.name}_{name}.png")
        self._sections.append(
            f"![{caption or name}]({path.name})" + (f"\n\n{caption}" if caption else "")
        )
        return path

    def write(self) -> tuple[Path, Path]:
        """Write ``results/<name>.json`` and ``.md``; return their paths."""
        from cytolens.core.files import atomic_path

        RESULTS.mkdir(parents=True, exist_ok=True)
        meta = {
            "benchmark": self.name,
            "description": self.description,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": "python " + " ".join([_script_path(), *sys.argv[1:]]),
            "total_s": round(time.perf_counter() - self._started, 1),
            "machine": machine_info(),
        }
        payload = {**meta, "results": self.results}
        json_path, md_path = RESULTS / f"{self.name}.json", RESULTS / f"{self.name}.md"
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
        m = meta["machine"]
        header = [
            f"# Benchmark: {self.name}",
            "",
            self.description,
            "",
            f"Measured {meta['date']} with `{meta['command']}` in {meta['total_s']} s on "
            f"{m['cpu_count']} CPU cores ({m['processor']}), {m['memory_gb']} GB RAM, "
            f"Python {m['python']}, torch {m['packages'].get('torch')}"
            + (f", GPU {m['cuda_device']}" if m["cuda_device"] else ", no GPU")
            + ".",
        ]
        with atomic_path(md_path) as tmp:
            tmp.write_text("\n".join(header) + "\n\n" + "\n\n".join(self._sections) + "\n")
        return json_path, md_path


def _script_path() -> str:
    """The running script relative to the repository root, e.g. ``benchmarks/focus.py``."""
    script = Path(sys.argv[0]).resolve()
    try:
        return script.relative_to(RESULTS.parents[1]).as_posix()
    except ValueError:
        return script.as_posix()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
