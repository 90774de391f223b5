"""Cell crops: labelled crop collections (folder per class or ``file,label`` CSV), crop files,
and fixed-size crops cut around every object of a label image.

Crops are ``(N, C, Y, X)`` arrays in the dtype read (never rescaled here); the
model's normalization (from its card) scales them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cytolens.core.errors import AxesError, InputError, MissingFileError

__all__ = [
    "CropSet",
    "as_crop_array",
    "cell_crops",
    "crop_group",
    "find_crop_files",
    "image_for_crops",
    "read_crop_files",
    "read_crop_set",
]

logger = logging.getLogger(__name__)

#: Column names accepted for the label in a crop CSV (after the file column).
LABEL_COLUMNS = ("label", "class", "phenotype")


@dataclass
class CropSet:
    """Labelled crops: ``crops (N, C, Y, X)``, ``labels`` (class index), ``class_names``, ``files``.

    Examples
    --------
    >>> cs = CropSet(np.zeros((2, 1, 8, 8)), np.array([0, 1]), ["a", "b"], ["x.png", "y.png"])
    >>> len(cs), cs.counts()
    (2, {'a': 1, 'b': 1})
    """

    crops: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    files: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> dict[str, int]:
        """Crops per class."""
        n = np.bincount(self.labels, minlength=len(self.class_names))
        return {c: int(k) for c, k in zip(self.class_names, n, strict=True)}

    def subset(self, index: Any) -> CropSet:
        """The crops at ``index`` (same classes)."""
        index = np.asarray(index)
        return CropSet(
            self.crops[index],
            self.labels[index],
            self.class_names,
            [self.files[i] for i in index.tolist()],
        )


def as_crop_array(data: Any, axes: str, *, name: str = "crop") -> np.ndarray:
    """One crop as ``(C, Y, X)``: ``YX`` gets one channel, ``YXS``/``YXC``/``CYX`` are reordered.

    Examples
    --------
    >>> as_crop_array(np.zeros((8, 6, 3)), "YXS").shape
    (3, 8, 6)
    """
    a = np.asarray(data)
    axes = axes.upper().replace("S", "C")
    if sorted(axes) == sorted("YX"):
        return a.transpose([axes.index(c) for c in "YX"])[None]
    if sorted(axes) == sorted("CYX"):
        return a.transpose([axes.index(c) for c in "CYX"])
    raise AxesError(f"{name}: a crop must have axes YX or CYX (channels), got {axes!r}")


def _read_one(path: Path) -> np.ndarray:
    from cytolens.io import imread

    img = imread(path)
    return as_crop_array(img.data, img.axes, name=str(path))


def read_crop_files(files: Sequence[str | os.PathLike[str]]) -> np.ndarray:
    """Read crop images into one ``(N, C, Y, X)`` array (all must have one size and channels).

    Raises
    ------
    MissingFileError
        A file that does not exist.
    InputError
        No file, or crops of mixed sizes or channel counts (naming the first
        file that differs and both shapes).
    """
    if not files:
        raise InputError("no crop image given")
    arrays: list[np.ndarray] = []
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise MissingFileError(f"{path}: crop image not found")
        a = _read_one(path)
        if arrays and a.shape != arrays[0].shape:
            raise InputError(
                f"{path}: crop of shape (C, Y, X) {a.shape}, but {files[0]} has "
                f"{arrays[0].shape}; all crops must have one size and channel count "
                "(resize or re-cut them)"
            )
        arrays.append(a)
    return np.stack(arrays)


def find_crop_files(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Image files of the inputs; a folder is searched with its subfolders (class folders).

    Raises
    ------
    InputError
        No image file found (naming the inputs).

    Examples
    --------
    >>> import tempfile
    >>> from cytolens.io import imwrite
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = imwrite(root / "a" / "1.png", np.zeros((4, 4), np.uint8))
    >>> [p.name for p in find_crop_files([root])]
    ['1.png']
    """
    from cytolens.io.paths import find_images, is_image_file, natural_key

    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted((p for p in path.rglob("*") if is_image_file(p)), key=natural_key)
        else:
            found += find_images([path])
    if not found:
        raise InputError(f"no image files in {', '.join(map(str, inputs))}")
    return found


def _from_csv(path: Path) -> tuple[list[Path], list[str]]:
    table = pd.read_csv(path)
    cols = [c.strip().lower() for c in table.columns]
    label_col = next((c for c in LABEL_COLUMNS if c in cols), None)
    if "file" not in cols or label_col is None:
        raise InputError(
            f"{path}: expected a CSV with columns 'file' and 'label' (or 'class'/'phenotype'), "
            f"got {list(table.columns)}"
        )
    table.columns = cols
    files = [
        (path.parent / f) if not Path(f).is_absolute() else Path(f)
        for f in table["file"].astype(str)
    ]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise MissingFileError(
            f"{path}: {len(missing)} listed file(s) not found, first: {missing[0]} "
            "(paths are relative to the CSV's folder)"
        )
    return files, table[label_col].astype(str).tolist()


def _from_folders(root: Path) -> tuple[list[Path], list[str]]:
    from cytolens.io.paths import is_image_file, natural_key

    files: list[Path] = []
    labels: list[str] = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        found = sorted((p for p in sub.iterdir() if is_image_file(p)), key=natural_key)
        files += found
        labels += [sub.name] * len(found)
    if not files:
        raise InputError(
            f"{root}: no class folders with images (expected <root>/<class>/<image>, "
            "or a CSV with columns file,label)"
        )
    return files, labels


def read_crop_set(source: str | os.PathLike[str], *, min_per_class: int = 2) -> CropSet:
    """Read labelled crops: a folder of class folders, or a ``file,label`` CSV.

    Parameters
    ----------
    source : path-like
        ``<root>/<class>/<image>`` folders, or a CSV with columns ``file``
        (relative to the CSV's folder) and ``label`` (or ``class`` /
        ``phenotype``).
    min_per_class : int
        Fewest crops a class may have (a class with fewer cannot be split
        into training and validation).

    Returns
    -------
    CropSet
        Classes in sorted order.

    Raises
    ------
    MissingFileError
        ``source`` or a file named in the CSV does not exist.
    InputError
        No classes, a single class, a class with too few crops, crops of
        mixed sizes.

    Examples
    --------
    >>> import tempfile
    >>> from cytolens.io import imwrite
    >>> root = Path(tempfile.mkdtemp())
    >>> for c in "ab":
    ...     for i in range(2):
    ...         _ = imwrite(root / c / f"{i}.png", np.full((8, 8), i, np.uint8))
    >>> cs = read_crop_set(root)
    >>> cs.crops.shape, cs.class_names
    ((4, 1, 8, 8), ['a', 'b'])
    """
    path = Path(source)
    if not path.exists():
        raise MissingFileError(f"{path}: crop folder or CSV not found")
    files, labels = _from_csv(path) if path.is_file() else _from_folders(path)
    class_names = sorted(set(labels))
    if len(class_names) < 2:
        raise InputError(f"{path}: found {len(class_names)} class(es); a classifier needs >= 2")
    index = np.array([class_names.index(label) for label in labels])
    counts = np.bincount(index, minlength=len(class_names))
    few = [(c, int(n)) for c, n in zip(class_names, counts, strict=True) if n < min_per_class]
    if few:
        raise InputError(
            f"{path}: class {few[0][0]!r} has {few[0][1]} image(s); each class needs at least "
            f"{min_per_class} (training and validation)"
        )
    crops = read_crop_files(files)
    return CropSet(crops, index, class_names, [str(f) for f in files])


def crop_group(file: str, *, pattern: str = "___") -> str:
    """The plate and well (or the folder) of a crop file, for grouped splits.

    MitoCheck names hold ``<plate>--...___P<well>_<site>___T...``; for other
    names the parent folder of the file stands in.

    Examples
    --------
    >>> crop_group("PLLT0017_19--ex2005--c5___P00365_01___T00064___X0746___Y0848____img.png")
    'PLLT0017_19/P00365'
    """
    name = Path(file).name
    parts = name.split(pattern)
    if len(parts) >= 3 and parts[1].startswith("P"):
        return f"{parts[0].split('--')[0]}/{parts[1].split('_')[0]}"
    return str(Path(file).parent)


def image_for_crops(image: Any, *, channels: int = 1, channel: int | None = None) -> Any:
    """An :class:`~cytolens.core.image.Image` as ``YX`` (one channel) or ``CYX`` data, dtype kept.

    Singleton ``T``/``Z`` axes are dropped; with one channel wanted, ``channel``
    (default 0) picks it. Intensities are never rescaled (the model's
    normalization does that).

    Examples
    --------
    >>> from cytolens.core.image import Image
    >>> image_for_crops(Image(np.zeros((1, 2, 8, 8), np.uint16), "ZCYX"), channel=1).shape
    (8, 8)
    """
    data, axes = image.data, image.axes
    for ax in "TZ":
        if ax in axes:
            if data.shape[axes.index(ax)] != 1:
                raise AxesError(
                    f"{image.path or 'image'}: axis {ax} has {data.shape[axes.index(ax)]} "
                    "entries; cell crops need one plane (pass one plane or a projection)"
                )
            data = data.take(0, axis=axes.index(ax)) if hasattr(data, "take") else data
            axes = axes.replace(ax, "")
    if "C" not in axes:
        data, axes = data[None], "C" + axes
    data = data.transpose([axes.index(c) for c in "CYX"])
    if channels == 1:
        c = 0 if channel is None else int(channel)
        if not 0 <= c < data.shape[0]:
            raise InputError(f"channel {c} out of range: the image has {data.shape[0]} channel(s)")
        return data[c]
    if data.shape[0] != channels:
        raise InputError(
            f"{image.path or 'image'}: {data.shape[0]} channel(s), the model expects {channels}"
        )
    return data


def _bounding_boxes(labels: np.ndarray) -> tuple[np.ndarray, list[Any]]:
    from scipy import ndimage as ndi

    slices = ndi.find_objects(labels)
    ids = np.array([i + 1 for i, s in enumerate(slices) if s is not None], dtype=np.int64)
    return ids, [s for s in slices if s is not None]


def cell_crops(
    image: Any,
    labels: Any,
    *,
    axes: str = "YX",
    size: int = 64,
    mask: bool = False,
    pad_value: str | float = "median",
    name: str = "image",
) -> tuple[np.ndarray, pd.DataFrame]:
    """Fixed-size crops centred on every object of a label image, padded at the borders.

    Parameters
    ----------
    image : array_like or dask array
        A 2-D image (``YX``) or channels (``CYX``/``YXC``); a Dask array is
        read one window at a time.
    labels : array_like of int
        Label image ``(Y, X)`` matching the image's ``Y`` and ``X`` (0 is background).
    axes : str
        Axes of ``image``.
    size : int
        Side of the square crops (px).
    mask : bool
        Set pixels of other objects to the padding value.
    pad_value : "median" or float
        Value outside the image: the image's median per channel (its
        background, for sparse nuclei) or a number.
    name : str
        Named in messages.

    Returns
    -------
    crops : numpy.ndarray, shape (N, C, size, size)
        In the image's dtype.
    table : pandas.DataFrame
        One row per object: ``label``, ``centroid_y``, ``centroid_x`` (px),
        ``area_px``, ``touches_border``.

    Raises
    ------
    InputError
        Labels whose shape does not match the image's ``Y, X``, axes that
        are not ``YX`` / ``CYX``.

    Examples
    --------
    >>> img = np.zeros((20, 20), np.uint8); lab = np.zeros((20, 20), np.int32)
    >>> lab[2:6, 2:6] = 1; lab[10:15, 12:18] = 2
    >>> crops, table = cell_crops(img, lab, size=8)
    >>> crops.shape, table["label"].tolist(), table["centroid_x"].tolist()
    ((2, 1, 8, 8), [1, 2], [3.5, 14.5])
    """
    from scipy import ndimage as ndi

    axes = axes.upper().replace("S", "C")
    if sorted(axes) not in (sorted("YX"), sorted("CYX")):
        raise AxesError(f"{name}: cell crops need axes YX or CYX, got {axes!r}")
    if "C" in axes and axes != "CYX":
        image = image.transpose([axes.index(c) for c in "CYX"])
    elif "C" not in axes:
        image = image[None]
    lab = np.asarray(labels)
    if lab.ndim != 2 or lab.shape != tuple(image.shape[1:]):
        raise InputError(
            f"{name}: label image of shape {lab.shape} does not match the image's (Y, X) "
            f"{tuple(image.shape[1:])}"
        )
    if not np.issubdtype(lab.dtype, np.integer):
        raise InputError(f"{name}: labels must be integers, got dtype {lab.dtype}")
    if int(size) < 4:
        raise InputError(f"crop size must be >= 4 px, got {size}")
    ids, boxes = _bounding_boxes(lab.astype(np.int64, copy=False))
    n_ch = int(image.shape[0])
    if pad_value == "median":
        step = max(1, int(np.sqrt(lab.size / 1_000_000)))  # a bounded, strided sample
        fill = [float(np.median(np.asarray(image[c, ::step, ::step]))) for c in range(n_ch)]
    else:
        fill = [float(pad_value)] * n_ch
    centres = ndi.center_of_mass(np.ones_like(lab, np.uint8), lab, ids) if len(ids) else []
    areas = ndi.sum_labels(np.ones_like(lab, np.int64), lab, ids) if len(ids) else []
    crops = np.empty((len(ids), n_ch, size, size), dtype=image.dtype)
    rows = []
    ny, nx = lab.shape
    for k, (lid, (cy, cx)) in enumerate(zip(ids.tolist(), centres, strict=True)):
        y0 = round(cy) - size // 2
        x0 = round(cx) - size // 2
        ys, xs = slice(max(y0, 0), min(y0 + size, ny)), slice(max(x0, 0), min(x0 + size, nx))
        window = np.asarray(image[:, ys, xs])
        for c in range(n_ch):
            crops[k, c] = fill[c]
        dy, dx = ys.start - y0, xs.start - x0
        target = (slice(None), slice(dy, dy + window.shape[1]), slice(dx, dx + window.shape[2]))
        if mask:
            others = (lab[ys, xs] != lid) & (lab[ys, xs] != 0)
            window = np.where(others[None], np.asarray(fill, window.dtype)[:, None, None], window)
        crops[k][target] = window
        box = boxes[k]
        rows.append(
            {
                "label": lid,
                "centroid_y": round(float(cy), 2),
                "centroid_x": round(float(cx), 2),
                "area_px": int(areas[k]),
                "touches_border": bool(
                    box[0].start == 0 or box[1].start == 0 or box[0].stop == ny or box[1].stop == nx
                ),
            }
        )
    columns = ["label", "centroid_y", "centroid_x", "area_px", "touches_border"]
    return crops, pd.DataFrame(rows, columns=columns)
