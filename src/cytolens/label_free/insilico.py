"""The *in silico labeling* sample field and its fixed spatial split.

The field (Christiansen et al. 2018, Cell 173:792; data from
google/in-silico-labeling, Apache-2.0) is one 1024 x 1024 stitched image:
13 transmitted-light (phase-contrast) z planes and three confocal targets,
DAPI (nuclei), MAP2 (dendrites) and NFH (axons). As there is one field, it
is split in space: two held-out blocks that training never reads, each
surrounded by a margin that training never reads either.

- :data:`HELDOUT_BLOCK`, rows 512-896, columns 448-832 (384 x 384 px, 14 %
  of the field, with nuclei clusters and neurites): the block every
  figure of the model card and of ``benchmarks/label_free.py`` is measured on;
- :data:`SECOND_BLOCK`, rows 576-832, columns 0-256 (256 x 256 px at the
  left edge): a second place, to show the spread of the figures;
- :data:`MARGIN`: 32 px around each block are excluded from training as well.

Blocks are ``(y0, y1, x0, x1)`` (half-open).

Examples
--------
>>> block_slices(HELDOUT_BLOCK)
(slice(512, 896, None), slice(448, 832, None))
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from cytolens.core.errors import InputError, MissingFileError

__all__ = [
    "HELDOUT_BLOCK",
    "MARGIN",
    "SECOND_BLOCK",
    "TARGETS",
    "block_slices",
    "read_insilico_field",
]

#: The held-out block of the sample field, ``(y0, y1, x0, x1)``.
HELDOUT_BLOCK = (512, 896, 448, 832)
#: A second held-out block elsewhere in the field.
SECOND_BLOCK = (576, 832, 0, 256)
#: Pixels around each held-out block that training never reads.
MARGIN = 32
#: Target names (lowercase) and the channel names in the file names.
TARGETS = {"dapi": "DAPI_CONFOCAL", "map2": "MAP2_CONFOCAL", "nfh": "NFH_CONFOCAL"}


def block_slices(block: tuple[int, int, int, int]) -> tuple[slice, slice]:
    """``(rows, columns)`` slices of a block ``(y0, y1, x0, x1)``."""
    y0, y1, x0, x1 = block
    return slice(y0, y1), slice(x0, x1)


def read_insilico_field(folder: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read the sample field: the z-stack, the targets and the target names.

    Parameters
    ----------
    folder : path-like
        ``.../label_free/insilico_sample`` (16 PNGs; names carry ``z_depth-<k>``
        and ``channel-<NAME>``).

    Returns
    -------
    stack : numpy.ndarray of uint16, shape (13, Y, X)
        Transmitted-light planes, ``z_depth`` 0 to 12 (axes ``ZYX``).
    targets : numpy.ndarray of uint16, shape (3, Y, X)
        DAPI, MAP2, NFH (axes ``CYX``).
    names : list of str
        ``["dapi", "map2", "nfh"]``.

    Raises
    ------
    MissingFileError
        When the folder or a file is missing.
    """
    from cytolens.io import imread

    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(f"{folder}: no such folder (the in silico labeling sample)")
    planes: dict[int, Path] = {}
    channels: dict[str, Path] = {}
    for path in folder.glob("*.png"):
        z = re.search(r"z_depth-(\d+),channel-PHASE_CONTRAST", path.name)
        c = re.search(r"channel-(\w+_CONFOCAL)", path.name)
        if z:
            planes[int(z.group(1))] = path
        elif c:
            channels[c.group(1)] = path
    if sorted(planes) != list(range(len(planes))) or not planes:
        raise MissingFileError(
            f"{folder}: expected z_depth-0.. phase-contrast planes, got {sorted(planes)}"
        )
    missing = [c for c in TARGETS.values() if c not in channels]
    if missing:
        raise MissingFileError(f"{folder}: no file of channel {missing[0]}")

    def read(path: Path) -> Any:
        data = np.asarray(imread(path).data)
        if data.ndim != 2:
            raise InputError(f"{path}: expected a greyscale plane, got shape {data.shape}")
        return data

    stack = np.stack([read(planes[z]) for z in sorted(planes)])
    targets = np.stack([read(channels[c]) for c in TARGETS.values()])
    return stack, targets, list(TARGETS)
