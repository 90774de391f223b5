"""Where outputs go and how they are written: one policy for every writer.

- :func:`atomic_path`: a temporary sibling renamed to the final name on
  success, so nothing half-written is ever left under the final name; removed
  on any error, Ctrl-C or SIGTERM (the command line turns SIGTERM into an
  exception).
- :func:`check_output_file` and :func:`prepare_output_dir`: what a command
  checks *before* computing anything: an output never replaces a folder with
  a file, never writes over an input or a file given as an option, never mixes
  two runs in one folder unless asked to (``overwrite=True``), and an
  unwritable place is found at once, not after the work.
- :func:`remove_stale_temps`: temporaries left by a killed run are removed by
  the next run that writes there.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import shutil
import sys
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cytolens.core.errors import OutputError

logger = logging.getLogger(__name__)

__all__ = [
    "atomic_path",
    "check_output_file",
    "is_zarr_store",
    "pin_json",
    "prepare_output_dir",
    "remove_stale_temps",
    "settle_zarr_io",
    "sha256",
]

#: Names of the temporaries made by :func:`atomic_path`: ``.<stem>.<8 hex>.tmp<suffixes>``.
_TEMP_NAME = re.compile(r"^\..*\.[0-9a-f]{8}\.tmp(\.[^/]*)?$")


def _temp_sibling(path: Path) -> Path:
    # keep the suffixes so writers that look at them (".ome.tif") still work
    return path.with_name(
        f".{path.stem.split('.')[0]}.{uuid.uuid4().hex[:8]}.tmp{''.join(path.suffixes)}"
    )


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        settle_zarr_io()  # an interrupted Zarr write would recreate the folder
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


async def _other_tasks_done() -> bool:
    """Wait for every other task of the running loop; True when there were none."""
    me = asyncio.current_task()
    others = [t for t in asyncio.all_tasks() if t is not me]
    if others:
        await asyncio.wait(others)
    return not others


def settle_zarr_io(timeout: float = 30.0) -> None:
    """Wait until Zarr's background I/O thread has finished every write in flight.

    Zarr (v3) runs its reads and writes as coroutines on its own event-loop
    thread; when the calling thread is interrupted (Ctrl-C, SIGTERM) while it
    waits for one, the coroutine goes on writing chunks. Removing a
    temporary store before they end lets them recreate it, which left
    hidden partial ``.tmp.ome.zarr`` folders behind. Call this after an
    interruption, before removing the temporary.

    Parameters
    ----------
    timeout : float
        Longest wait, in seconds.
    """
    if "zarr.core.sync" not in sys.modules:  # Zarr never ran here: nothing in flight
        return
    try:
        from zarr.core import sync as zarr_sync

        loop = zarr_sync.loop[0]
    except (ImportError, AttributeError, IndexError):  # another Zarr: nothing known to wait for
        return
    if loop is None or loop.is_closed() or not loop.is_running():
        return
    try:
        for _ in range(100):  # the tasks may start others (a write gathers its chunks)
            if asyncio.run_coroutine_threadsafe(_other_tasks_done(), loop).result(timeout):
                return
    except Exception as exc:  # a timeout or a closed loop: remove anyway
        logger.debug("could not wait for Zarr's I/O to finish: %s", exc)


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, replace_folder: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it to ``path`` on success.

    Works for files and for folders (e.g. OME-Zarr). On any exception
    (Ctrl-C included) the temporary is removed and an existing ``path`` is
    left untouched. An existing folder is never replaced by a file, and is
    replaced by a folder only with ``replace_folder=True``. Errors that name
    the temporary are raised naming ``path``.

    Parameters
    ----------
    path : path-like
        The final name.
    replace_folder : bool
        Allow replacing an existing folder by the new folder (the caller has
        checked that the folder is an earlier result, e.g. an OME-Zarr).

    Raises
    ------
    OutputError
        When ``path`` is an existing folder that may not be replaced.

    Examples
    --------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_path(out) as tmp:
    ...     _ = tmp.write_text("done")
    >>> out.read_text()
    'done'
    >>> with atomic_path(out.parent) as tmp:
    ...     _ = tmp.write_text("never")
    Traceback (most recent call last):
    ...
    cytolens.core.errors.OutputError: ... is an existing folder; a folder is never replaced ...
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path)
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            if not (replace_folder and tmp.is_dir()):
                raise OutputError(
                    f"{path} is an existing folder; a folder is never replaced by an output, "
                    "give another name"
                )
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException as exc:
        _remove(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            named = (exc.filename, exc.filename2)
            if tmp.name in str(exc) or any(n is not None and tmp.name in str(n) for n in named):
                raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise


def remove_stale_temps(folder: str | os.PathLike[str], name: str | None = None) -> list[Path]:
    """Remove temporaries of :func:`atomic_path` left in ``folder`` by a killed run.

    Parameters
    ----------
    folder : path-like
        Where to look (not recursive).
    name : str, optional
        Only the temporaries of this output name (e.g. ``"x.ome.tif"``).

    Returns
    -------
    list of Path
        What was removed.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / ".x.0123abcd.tmp.csv").write_text("half")
    >>> [p.name for p in remove_stale_temps(d)]
    ['.x.0123abcd.tmp.csv']
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    prefix = None if name is None else f".{name.split('.')[0]}."
    stale = [
        p
        for p in folder.iterdir()
        if _TEMP_NAME.match(p.name) and (prefix is None or p.name.startswith(prefix))
    ]
    for p in stale:
        _remove(p)
    return stale


def is_zarr_store(path: str | os.PathLike[str]) -> bool:
    """True for a ``*.zarr`` folder holding Zarr metadata (an earlier result that may be replaced).

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()) / "a.ome.zarr"
    >>> d.mkdir()
    >>> is_zarr_store(d), (d / "zarr.json").touch(), is_zarr_store(d)
    (False, None, True)
    """
    path = Path(path)
    markers = ("zarr.json", ".zgroup", ".zarray")
    return path.name.lower().endswith(".zarr") and any((path / m).is_file() for m in markers)


def _resolved(paths: Iterable[str | os.PathLike[str] | None]) -> list[Path]:
    return [Path(p).resolve() for p in paths if p is not None]


def _check_writable(folder: Path, label: str) -> None:
    """Create ``folder`` and a probe file in it, so a read-only place fails before the work."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".cytolens-probe-{uuid.uuid4().hex[:8]}"
        probe.touch()
        probe.unlink()
    except FileExistsError:
        raise OutputError(f"{label}: {folder} exists and is not a folder") from None
    except OSError as exc:
        raise OutputError(f"{label}: cannot write in {folder}: {exc.strerror or exc}") from None


def check_output_file(
    path: str | os.PathLike[str],
    *,
    protected: Iterable[str | os.PathLike[str] | None] = (),
    option: str = "--out",
) -> Path:
    """Check an output file before any work: not a folder, not a protected file, writable.

    An existing regular file that is not protected is replaced (as ``cp``
    does), and so is an earlier OME-Zarr result (a ``*.zarr`` folder holding
    Zarr metadata); any other folder never is. Stale temporaries of the
    target are removed.

    Parameters
    ----------
    path : path-like
        The output file.
    protected : iterable of path-like
        Inputs and files given as options (PSF, model, annotations) that must
        never be written over.
    option : str
        How the user named the output (``--out``, ``--plot``), for messages.

    Returns
    -------
    Path

    Raises
    ------
    OutputError

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> check_output_file(d / "a.csv").name
    'a.csv'
    >>> check_output_file(d, option="--plot")
    Traceback (most recent call last):
    ...
    cytolens.core.errors.OutputError: --plot ...: is an existing folder; give a file name ...
    """
    path = Path(path)
    label = f"{option} {path}"
    if path.is_dir() and not is_zarr_store(path):
        raise OutputError(
            f"{label}: is an existing folder; give a file name (a folder is never replaced "
            "by an output)"
        )
    target = path.resolve()
    for p in _resolved(protected):
        if p == target:
            raise OutputError(f"{label}: would overwrite the input {p}; choose another name")
    _check_writable(path.parent, label)
    remove_stale_temps(path.parent, path.name)
    return path


def prepare_output_dir(
    path: str | os.PathLike[str],
    *,
    protected: Iterable[str | os.PathLike[str] | None] = (),
    overwrite: bool = False,
    option: str = "--out",
) -> Path:
    """Check and create an output folder before any work.

    Refused: a path that is a file; a folder that is or holds an input (or a
    file given as an option); a folder that already holds files, unless
    ``overwrite`` (two runs into one folder would leave a combined table that
    covers only the last run); a place that cannot be written. Stale
    temporaries of a killed run are removed first.

    Parameters
    ----------
    path : path-like
        The output folder (created with its parents).
    protected : iterable of path-like
        Inputs and files given as options.
    overwrite : bool
        Allow a folder that holds an earlier run's results (its files are
        replaced where this run writes the same names).
    option : str
        How the user named the folder, for messages.

    Returns
    -------
    Path

    Raises
    ------
    OutputError

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()) / "results"
    >>> prepare_output_dir(d).is_dir()
    True
    >>> _ = (d / "focus.csv").write_text("an earlier run")
    >>> prepare_output_dir(d)
    Traceback (most recent call last):
    ...
    cytolens.core.errors.OutputError: --out ...results: already holds 1 file(s) ...
    >>> prepare_output_dir(d, overwrite=True).is_dir()
    True
    """
    path = Path(path)
    label = f"{option} {path}"
    if path.exists() and not path.is_dir():
        raise OutputError(f"{label}: is an existing file; give a folder")
    target = path.resolve()
    for p in _resolved(protected):
        if p == target or target in p.parents:
            raise OutputError(
                f"{label}: holds the input {p}; results go to a folder of their own, "
                "choose another --out"
            )
    if path.is_dir():
        remove_stale_temps(path)
        held = [p for p in path.iterdir() if not p.name.startswith(".cytolens-probe-")]
        if held and not overwrite:
            raise OutputError(
                f"{label}: already holds {len(held)} file(s) (e.g. {held[0].name}); choose an "
                "empty or new folder, or pass --overwrite to replace an earlier run's results"
            )
    _check_writable(path, label)
    return path


def sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, or of every file of a folder (OME-Zarr) in sorted order.

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "a.txt"
    >>> _ = p.write_text("x")
    >>> sha256(p)[:12]
    '2d711642b726'
    """
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            digest.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def pin_json(path: str | os.PathLike[str], content: Any) -> Any:
    """Write ``content`` as JSON to a new file, or check that an existing file holds it.

    For files that fix a choice once (a seeded train/validation split): the
    first run writes it atomically; later runs must make the same content, so
    a changed rule or data set cannot silently move images across the split.

    Parameters
    ----------
    path : path-like
        The JSON file.
    content : JSON-serializable
        What the file must hold (compared after a JSON round trip).

    Returns
    -------
    The stored content.

    Raises
    ------
    InputError
        When the file exists and holds something else.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "split.json"
    >>> pin_json(path, {"train": ["a"], "validation": ["b"]})["validation"]
    ['b']
    >>> pin_json(path, {"train": ["a", "b"], "validation": []})
    Traceback (most recent call last):
    ...
    cytolens.core.errors.InputError: ...split.json holds another content than these settings make...
    """
    import json

    from cytolens.core.errors import InputError

    path = Path(path)
    expected = json.loads(json.dumps(content))
    if path.exists():
        stored = json.loads(path.read_text())
        if stored != expected:
            raise InputError(
                f"{path} holds another content than these settings make; remove it to write it anew"
            )
        return stored
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(expected, indent=1) + "\n")
    return expected
