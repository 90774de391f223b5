"""Expand the inputs a user gives on the command line into image paths."""

from __future__ import annotations

import glob
import re
from collections.abc import Iterable
from pathlib import Path

from cytolens.core.errors import InputError, MissingFileError
from cytolens.io.formats import READ_SUFFIXES

__all__ = ["StemNamer", "find_images", "is_image_file", "natural_key", "output_stems"]

_GLOB_CHARS = set("*?[")
_DIGITS = re.compile(r"(\d+)")


def natural_key(path: str | Path) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders numbers in names by value: ``z2`` before ``z10``.

    Examples
    --------
    >>> sorted(["z10.tif", "z2.tif", "z1.tif"], key=natural_key)
    ['z1.tif', 'z2.tif', 'z10.tif']
    """
    parts = _DIGITS.split(str(path))
    return tuple((1, int(p)) if i % 2 else (0, p) for i, p in enumerate(parts))


def is_image_file(path: Path) -> bool:
    """True for a file (or an OME-Zarr folder) whose name cytolens can read.

    Examples
    --------
    >>> is_image_file(Path("/no/such/a.tif")), is_image_file(Path("x.ome.zarr"))
    (False, True)
    """
    name = path.name.lower()
    readable = any(name.endswith(s) for s in READ_SUFFIXES)
    return readable and (path.is_file() or name.endswith(".zarr"))


def find_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Expand files, folders (their images, not recursive) and glob patterns.

    The images of a folder or pattern come in natural order (``z2`` before
    ``z10``, see :func:`natural_key`); the order of ``inputs`` is kept and
    repeats dropped. OME-Zarr folders count as images.

    Raises
    ------
    MissingFileError
        For a path that does not exist or a pattern that matches no image.
    InputError
        For a folder without any readable image.

    Examples
    --------
    >>> find_images(["/no/such/*.tif"])
    Traceback (most recent call last):
    ...
    cytolens.core.errors.MissingFileError: /no/such/*.tif: no image matches this pattern
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir() and not path.name.lower().endswith(".zarr"):
            files = sorted((p for p in path.iterdir() if is_image_file(p)), key=natural_key)
            if not files:
                raise InputError(
                    f"{path}: folder has no image files ({', '.join(sorted(READ_SUFFIXES))})"
                )
        elif path.exists():
            files = [path]
        elif _GLOB_CHARS & set(str(item)):
            files = sorted(
                (Path(p) for p in glob.glob(str(item)) if is_image_file(Path(p))), key=natural_key
            )
            if not files:
                raise MissingFileError(f"{item}: no image matches this pattern")
        else:
            raise MissingFileError(f"{path}: no such file or folder")
        found.extend(f for f in files if f not in found)
    return found


class StemNamer:
    """Give each input an output name: its stem, made unique as inputs keep coming.

    Examples
    --------
    >>> name = StemNamer()
    >>> name(Path("a/x.tif")), name(Path("b/x.ome.tif")), name(Path("y.png"))
    ('x', 'x-2', 'y')
    """

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def __call__(self, path: Path) -> str:
        stem = path.name.split(".")[0] or path.name
        name, k = stem, 1
        while name in self._seen:
            k += 1
            name = f"{stem}-{k}"
        self._seen.add(name)
        return name


def output_stems(paths: Iterable[Path]) -> list[str]:
    """One output name per input: the file stem, made unique when two inputs share one.

    Examples
    --------
    >>> output_stems([Path("a/x.tif"), Path("b/x.ome.tif"), Path("y.png")])
    ['x', 'x-2', 'y']
    """
    name = StemNamer()
    return [name(p) for p in paths]
