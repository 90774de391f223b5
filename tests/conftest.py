"""Shared fixtures: the real public data in ../shared/data, skipped with a reason when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CYTOLENS_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared(relpath: str) -> Path:
    """Path to ``../shared/data/<relpath>``; skip the test when it is absent."""
    path = SHARED_DATA / relpath
    if not path.exists():
        pytest.skip(f"shared data {path} is absent (set CYTOLENS_SHARED_DATA to its folder)")
    return path


@pytest.fixture
def shared_data() -> Path:
    """The ``../shared/data`` folder."""
    return shared("")
