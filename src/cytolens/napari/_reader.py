"""napari reader: everything :func:`cytolens.io.imread` reads, plus HPA channel sets."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_HPA_SUFFIX = "_green.png"
_HPA_COLOURS = ("red", "green", "blue", "yellow")


def _hpa_files(path: Path) -> list[Path] | None:
    """The four channel files when ``path`` is ``<id>_green.png`` with its siblings."""
    if not path.name.lower().endswith(_HPA_SUFFIX):
        return None
    prefix = path.name[: -len(_HPA_SUFFIX)]
    files = [path.with_name(f"{prefix}_{colour}.png") for colour in _HPA_COLOURS]
    return files if all(f.is_file() for f in files) else None


def _supported(path: Path) -> bool:
    from cytolens.io import READ_SUFFIXES

    name = path.name.lower()
    return any(name.endswith(suffix) for suffix in READ_SUFFIXES) and path.exists()


def read_layers(path: str | os.PathLike[str]) -> list[tuple[Any, dict, str]]:
    """Read one file (or an HPA set given its ``_green.png``) as napari layer-data tuples.

    Parameters
    ----------
    path : str or path-like
        A file :func:`cytolens.io.imread` reads, or ``<id>_green.png`` of a
        Human Protein Atlas sample whose red, blue and yellow files sit beside it
        (read with :func:`cytolens.io.read_hpa`: one layer per channel, in the
        HPA colours).

    Returns
    -------
    list of (data, kwargs, "image")
        ``kwargs`` has ``scale`` (pixel sizes in um), ``name`` and, for
        multichannel data, ``channel_axis``.

    Examples
    --------
    >>> from cytolens.data import sample_path
    >>> [(data.shape, kind) for data, _, kind in read_layers(sample_path("nuclei_bbbc006.png"))]
    [((520, 696), 'image')]
    """
    from cytolens.io import imread, read_hpa
    from cytolens.napari._layers import image_layer

    p = Path(path)
    if _hpa_files(p) is not None:
        image = read_hpa(p)
        return [image_layer(image, name=image.metadata.get("sample_id"))]
    return [image_layer(imread(p))]


def get_reader(path: str | list[str]) -> Callable[[Any], list[tuple[Any, dict, str]]] | None:
    """Return a reader for ``path``, or ``None`` when cytolens cannot read it.

    The checks are cheap (suffix and existence); this never raises.

    Parameters
    ----------
    path : str or list of str
        What napari asks about; a list is accepted when it holds one path.

    Returns
    -------
    callable or None
        :func:`read_layers`, or ``None``.

    Examples
    --------
    >>> get_reader("notes.txt") is None
    True
    >>> from cytolens.data import sample_path
    >>> get_reader(str(sample_path("bead.tif"))).__name__
    'read_layers'
    """
    try:
        if isinstance(path, (list, tuple)):
            if len(path) != 1:
                return None
            path = path[0]
        p = Path(path)
        if _hpa_files(p) is not None or _supported(p):
            return read_layers
    except Exception:  # a reader must never raise to napari
        logger.debug("cytolens cannot read %r", path, exc_info=True)
    return None
