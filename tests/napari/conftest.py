"""Headless Qt for the napari widget tests.

With a display (a desktop, or the Xvfb that pytest-xvfb starts when the
``Xvfb`` binary is installed) the tests use napari's real viewer
(``make_napari_viewer``); without one, Qt runs ``offscreen``, where napari's
OpenGL canvas cannot draw, so the widgets are built and run against a
``ViewerModel`` (the same layer list, no canvas). Where Qt itself cannot load,
the Qt tests skip with the reason.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _headless_qt() -> None:
    """Qt offscreen without a display (decided after pytest-xvfb has set DISPLAY)."""
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def has_canvas() -> bool:
    """True when napari's OpenGL canvas can draw (a display, not Qt offscreen)."""
    return bool(os.environ.get("DISPLAY")) and os.environ.get("QT_QPA_PLATFORM") != "offscreen"


@pytest.fixture
def viewer(request):
    """A napari Viewer when a canvas can draw, else a ViewerModel (see the module docstring)."""
    if has_canvas():
        return request.getfixturevalue("make_napari_viewer")()
    from napari.components import ViewerModel

    request.getfixturevalue("qapp")
    return ViewerModel()


_EXIT = {"status": 0}


def pytest_sessionfinish(session, exitstatus) -> None:
    _EXIT["status"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config) -> None:
    """Leave without Python's final garbage collection once PySide6 was loaded.

    PySide6 6.12 with napari aborts the interpreter while it collects Qt
    wrappers at exit (``Fatal Python error: none_dealloc``) after every test
    passed; pytest's results are final by now, so exit with its status.
    """
    import sys

    if "PySide6" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT["status"])
