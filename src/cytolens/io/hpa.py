"""Human Protein Atlas channel sets: ``<id>_red|green|blue|yellow.png`` as one ``CYX`` image."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from cytolens.core.errors import FileFormatError, InputError, MissingFileError
from cytolens.core.image import Image
from cytolens.io.read import imread

__all__ = ["HPA_CHANNELS", "hpa_composite", "hpa_missing_channels", "hpa_sample_ids", "read_hpa"]

logger = logging.getLogger(__name__)

#: File colour -> what the channel shows, in the channel order of :func:`read_hpa`.
HPA_CHANNELS = {"red": "microtubules", "green": "protein", "blue": "nucleus", "yellow": "ER"}
#: Suffixes tried for each channel file, in order (Kaggle PNG, full-size TIFF, HPA website JPEG).
_SUFFIXES = (".png", ".tif", ".tiff", ".jpg")
#: Which sample of an RGB-coloured channel file holds the signal.
_RGB_SAMPLE = {"red": 0, "green": 1, "blue": 2, "yellow": 0}


def hpa_sample_ids(folder: str | os.PathLike[str]) -> list[str]:
    """Sorted ids of the HPA samples in a folder (one ``<id>_blue.<png|tif|tiff|jpg>`` file each).

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> for name in ("b_blue.png", "a_blue.tif", "a_red.tif", "notes.txt"):
    ...     _ = (d / name).write_bytes(b"")
    >>> hpa_sample_ids(d)
    ['a', 'b']
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(f"{folder}: no such folder (expected HPA <id>_<colour>.png files)")
    ids = set()
    with os.scandir(folder) as entries:
        for entry in entries:
            stem, dot, suffix = entry.name.rpartition(".")
            if dot and f".{suffix.lower()}" in _SUFFIXES and stem.endswith("_blue") and stem[:-5]:
                ids.add(stem[:-5])
    return sorted(ids)


def hpa_missing_channels(
    folder: str | os.PathLike[str], sample_ids: list[str] | tuple[str, ...]
) -> dict[str, list[str]]:
    """The channel colours each sample lacks in ``folder``, from one listing of the folder.

    Parameters
    ----------
    folder : path-like
        Folder of ``<id>_<colour>.<png|tif|tiff|jpg>`` files.
    sample_ids : sequence of str
        The samples to check.

    Returns
    -------
    dict
        ``{sample_id: [missing colours]}`` for the samples that lack any of
        red, green, blue, yellow (all four for a sample with no file at all);
        empty when every sample is complete.

    Raises
    ------
    MissingFileError
        When ``folder`` is not a folder.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> for name in ("a_red.png", "a_green.png", "a_blue.png", "a_yellow.png", "b_blue.png"):
    ...     _ = (d / name).write_bytes(b"")
    >>> hpa_missing_channels(d, ["a", "b", "c"])
    {'b': ['red', 'green', 'yellow'], 'c': ['red', 'green', 'blue', 'yellow']}
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(f"{folder}: no such folder (expected HPA <id>_<colour>.png files)")
    with os.scandir(folder) as entries:
        names = {entry.name for entry in entries}
    missing = {}
    for sid in sample_ids:
        lacking = [
            colour
            for colour in HPA_CHANNELS
            if not any(f"{sid}_{colour}{suffix}" in names for suffix in _SUFFIXES)
        ]
        if lacking:
            missing[sid] = lacking
    return missing


def _split(path_or_prefix: Path, sample_id: str | None) -> tuple[Path, str]:
    """(folder, sample id) from a folder + id, a prefix ``<dir>/<id>`` or a channel file."""
    if sample_id is not None:
        if not path_or_prefix.is_dir():
            raise MissingFileError(
                f"{path_or_prefix}: no such folder (looking for HPA sample {sample_id!r})"
            )
        return path_or_prefix, sample_id
    if path_or_prefix.is_dir():
        ids = hpa_sample_ids(path_or_prefix)
        if not ids:
            raise MissingFileError(f"{path_or_prefix} holds no HPA sample (no *_blue.* file)")
        if len(ids) > 1:
            raise InputError(
                f"{path_or_prefix} holds {len(ids)} HPA samples; pass sample_id=, e.g. {ids[0]!r}"
            )
        return path_or_prefix, ids[0]
    name = path_or_prefix.name
    for colour in HPA_CHANNELS:
        for suffix in _SUFFIXES:
            if name.endswith(f"_{colour}{suffix}"):
                return path_or_prefix.parent, name[: -len(f"_{colour}{suffix}")]
    return path_or_prefix.parent, name


def _channel_file(folder: Path, sample_id: str, colour: str) -> Path:
    for suffix in _SUFFIXES:
        path = folder / f"{sample_id}_{colour}{suffix}"
        if path.is_file():
            return path
    raise MissingFileError(
        f"HPA sample {sample_id!r}: missing the {colour} ({HPA_CHANNELS[colour]}) channel file "
        f"{folder / f'{sample_id}_{colour}.png'}"
    )


def read_hpa(path_or_prefix: str | os.PathLike[str], sample_id: str | None = None) -> Image:
    """Read the four channel files of a Human Protein Atlas sample as one image.

    Parameters
    ----------
    path_or_prefix : str or path-like
        A folder (with ``sample_id``, or holding one sample), a prefix
        ``<folder>/<id>``, or any one channel file ``<folder>/<id>_green.png``.
    sample_id : str, optional
        The sample id when ``path_or_prefix`` is a folder.

    Returns
    -------
    Image
        Axes ``"CYX"``, channels in the order red, green, blue, yellow, named
        ``("microtubules", "protein", "nucleus", "ER")``; dtype as stored
        (uint8 for the Kaggle PNGs). ``metadata`` holds ``sample_id`` and the
        ``files``. A channel file stored as RGB contributes its own colour
        (red for yellow).

    Raises
    ------
    MissingFileError
        When a channel file is missing (the message names file and channel).
    FileFormatError
        When the channel images differ in shape or dtype, or cannot be read.

    Examples
    --------
    >>> import tempfile
    >>> from PIL import Image as PILImage
    >>> folder = Path(tempfile.mkdtemp())
    >>> for i, colour in enumerate(("red", "green", "blue", "yellow")):
    ...     PILImage.fromarray(np.full((4, 4), 10 * i, np.uint8)).save(folder / f"s1_{colour}.png")
    >>> img = read_hpa(folder / "s1")
    >>> img.axes, img.channel_names, img.data[:, 0, 0].tolist()
    ('CYX', ('microtubules', 'protein', 'nucleus', 'ER'), [0, 10, 20, 30])
    """
    folder, sample = _split(Path(path_or_prefix), sample_id)
    files = [_channel_file(folder, sample, colour) for colour in HPA_CHANNELS]
    planes = []
    for colour, path in zip(HPA_CHANNELS, files, strict=True):
        img = imread(path, lazy=False)
        if img.axes == "YXC":
            img = Image(img.data[..., _RGB_SAMPLE[colour]], "YX", path=path)
        if img.axes != "YX":
            raise FileFormatError(f"{path}: expected a 2D channel image, got axes {img.axes!r}")
        planes.append(img.data)
    if len({(p.shape, p.dtype) for p in planes}) > 1:
        found = ", ".join(
            f"{f.name} {p.shape} {p.dtype}" for f, p in zip(files, planes, strict=True)
        )
        raise FileFormatError(f"HPA sample {sample!r}: channel images differ: {found}")
    return Image(
        np.stack(planes),
        "CYX",
        channel_names=tuple(HPA_CHANNELS.values()),
        path=folder / sample,
        metadata={"format": "hpa", "sample_id": sample, "files": [str(f) for f in files]},
    )


def hpa_composite(image: Image | Any) -> np.ndarray:
    """The usual RGB view of an HPA sample: R = red + yellow/2, G = green + yellow/2, B = blue.

    Parameters
    ----------
    image : Image or array_like
        An image from :func:`read_hpa` (channels found by name), or a
        ``(4, Y, X)`` array in the order red, green, blue, yellow. Integer data
        wider than 8 bits are scaled from their dtype range to 0-255; floats
        are taken as 0-255.

    Returns
    -------
    numpy.ndarray
        uint8, shape ``(Y, X, 3)``, sums clipped to 255.

    Examples
    --------
    >>> rgby = np.array([100, 20, 30, 200], np.uint8).reshape(4, 1, 1)
    >>> hpa_composite(rgby)[0, 0].tolist()
    [200, 120, 30]
    """
    if not isinstance(image, Image):
        image = Image(np.asarray(image), "CYX")
    if sorted(image.axes) != sorted("CYX"):
        raise InputError(f"hpa_composite needs axes 'CYX' (in any order), got {image.axes!r}")
    image = image.transpose("CYX")
    names = image.channel_names
    if names is not None and set(HPA_CHANNELS.values()) <= set(names):
        order = [names.index(n) for n in HPA_CHANNELS.values()]
    elif image.sizes["C"] == 4:
        order = [0, 1, 2, 3]
    else:
        raise InputError(
            f"hpa_composite needs 4 channels (red, green, blue, yellow), got {image.sizes['C']}"
            f" named {names}"
        )
    data = np.asarray(image.data)
    if data.dtype.kind not in "buif":
        raise InputError(f"hpa_composite cannot use dtype {data.dtype}")
    red, green, blue, yellow = (data[i].astype(np.float32) for i in order)
    if data.dtype.kind in "iu" and data.dtype.itemsize > 1:
        scale = 255.0 / np.iinfo(data.dtype).max
        red, green, blue, yellow = (c * scale for c in (red, green, blue, yellow))
    rgb = np.stack([red + yellow / 2, green + yellow / 2, blue], axis=-1)
    return np.clip(rgb, 0, 255).astype(np.uint8)
