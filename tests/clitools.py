"""Helpers for tests that run the command line as a user does (in a subprocess)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path


def cytolens(
    *args: object, timeout: float = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m cytolens ARGS`` on the CPU, with a wide terminal for one-line messages."""
    return subprocess.run(
        [sys.executable, "-m", "cytolens", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "COLUMNS": "200"},
    )


def digest(*paths: Path | Iterable[Path]) -> dict[str, str]:
    """sha256 of every file given or under the folders given (path -> digest)."""
    flat = [q for p in paths for q in ([p] if isinstance(p, Path) else p)]
    files = [f for p in flat for f in ([p] if p.is_file() else sorted(p.rglob("*")))]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file()}


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The single ``error: ...`` line of a failed command (and no traceback)."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def temporaries(folder: Path) -> list[Path]:
    """Temporaries of atomic writes and write probes left under ``folder``."""
    if not folder.exists():
        return []
    return [p for p in folder.rglob(".*") if ".tmp" in p.name or "cytolens-probe" in p.name]


def no_temporaries(folder: Path) -> None:
    """Assert that no temporary is left under ``folder``."""
    left = temporaries(folder)
    assert not left, left


def strict_loads(text: str) -> object:
    """``json.loads`` that refuses NaN and Infinity, as strict parsers do."""

    def refuse(constant: str) -> None:
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)
