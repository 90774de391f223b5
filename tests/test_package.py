"""Package-level promises: a light import and a version."""

from __future__ import annotations

import subprocess
import sys

import cytolens


def test_import_is_light():
    code = (
        "import sys, cytolens, cytolens.core, cytolens.io, cytolens.report;"
        "heavy = [m for m in ('torch', 'dask', 'matplotlib', 'zarr') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported at start-up: {out.stdout}"


def test_version_matches_metadata():
    from importlib.metadata import version

    assert cytolens.__version__ == version("cytolens")
