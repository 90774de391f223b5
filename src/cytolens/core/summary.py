"""The ``--json`` summary of a command: strict JSON that every parser accepts.

Python's :func:`json.dumps` writes ``NaN`` and ``Infinity``, which strict JSON
parsers (JavaScript, jq, most other languages) reject; here they become
``null``. numpy scalars and arrays, paths and other objects become numbers,
lists and strings.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["strict_json"]


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy scalars and arrays
        return _clean(value.tolist())
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    return str(value)


def strict_json(content: Any, **kwargs: Any) -> str:
    """``json.dumps`` with NaN/inf as ``null`` and numpy values as plain numbers.

    Examples
    --------
    >>> import numpy as np
    >>> strict_json({"level": float("nan"), "n": np.int64(3), "x": np.float32(0.5)})
    '{"level": null, "n": 3, "x": 0.5}'
    """
    return json.dumps(_clean(content), allow_nan=False, **kwargs)
