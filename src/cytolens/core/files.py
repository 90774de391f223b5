"""Atomic output: nothing half-written is ever left under the final name."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "pin_json"]


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it to ``path`` on success.

    Works for files and for folders (e.g. OME-Zarr). On any exception the
    temporary is removed and an existing ``path`` is left untouched.

    Examples
    --------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_path(out) as tmp:
    ...     _ = tmp.write_text("done")
    >>> out.read_text()
    'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # keep the suffixes so writers that look at them (".ome.tif") still work
    tmp = path.with_name(
        f".{path.stem.split('.')[0]}.{uuid.uuid4().hex[:8]}.tmp{''.join(path.suffixes)}"
    )
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


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
