"""cytolens: deep-learning methods of modern light microscopy for microscope users.

Subpackages are imported on first use, so ``import cytolens`` stays light
(no torch, Dask or Matplotlib at import time)::

    import cytolens
    img = cytolens.io.imread("stack.tif")
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBPACKAGES = (
    "classify",
    "core",
    "data",
    "detect",
    "evaluate",
    "focus",
    "io",
    "models",
    "report",
    "restore",
    "segment",
    "simulate",
    "track",
)

__all__ = ["__version__", *_SUBPACKAGES]


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"cytolens.{name}")
    raise AttributeError(f"module 'cytolens' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
