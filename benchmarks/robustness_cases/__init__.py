"""The catalogue of bad-input cases run by ``benchmarks/robustness.py``, one module per area.

A case runs ``cytolens <argv>`` in a subprocess, in a fresh temporary folder
``{tmp}`` prepared by ``setup``, and is scored on its outcome:

- ``expect="error"``: exit code 2 (or ``exit_code``), no traceback, stderr
  matches ``message`` (a regex naming the file, option or value), no new
  file left behind (``allow_outputs`` lists globs an error may leave, e.g.
  an empty output folder is never counted).
- ``expect="ok"``: exit code 0 (or ``exit_code``, e.g. 1 for a batch in which
  some inputs failed); ``check(tmp, proc)`` returns ``None`` when the
  result is right, else a description of what is silently wrong.

Every file that ``setup`` made is hashed before and after: any change or
removal is data loss. Any temporary (``.*.tmp*``) left is a partial file.

Placeholders in ``argv``: ``{tmp}`` (the case's folder), ``{data}``
(``../shared/data``), ``{samples}`` (the package's bundled samples).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

Check = Callable[[Path, subprocess.CompletedProcess], "str | None"]


@dataclass
class Case:
    """One bad-input case (see the module docstring)."""

    name: str
    argv: list[str]
    expect: str = "error"  # "error" or "ok"
    message: str | None = None  # regex stderr must match (expect="error")
    setup: Callable[[Path], None] | None = None
    check: Check | None = None  # expect="ok": None if right, else what is wrong
    exit_code: int | None = None  # default: 2 for "error", 0 for "ok"
    allow_outputs: list[str] = field(default_factory=list)  # globs an error may leave
    timeout: float = 300.0
    needs_data: bool = False  # skipped (counted apart) when ../shared/data is absent
