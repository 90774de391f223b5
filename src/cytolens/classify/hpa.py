"""Human Protein Atlas classes, the nucleolar group, and the ``Id,Target`` label tables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cytolens.core.errors import FileFormatError, InputError, MissingFileError

__all__ = [
    "CLASS_NAMES",
    "NUCLEOLAR_CLASSES",
    "NUCLEOLAR_LABELS",
    "N_CLASSES",
    "parse_targets",
    "read_labels",
    "targets_to_matrix",
]

#: The 28 HPA localization classes of the Kaggle 2018 competition, by class number.
CLASS_NAMES: tuple[str, ...] = (
    "Nucleoplasm",
    "Nuclear membrane",
    "Nucleoli",
    "Nucleoli fibrillar center",
    "Nuclear speckles",
    "Nuclear bodies",
    "Endoplasmic reticulum",
    "Golgi apparatus",
    "Peroxisomes",
    "Endosomes",
    "Lysosomes",
    "Intermediate filaments",
    "Actin filaments",
    "Focal adhesion sites",
    "Microtubules",
    "Microtubule ends",
    "Cytokinetic bridge",
    "Mitotic spindle",
    "Microtubule organizing center",
    "Centrosome",
    "Lipid droplets",
    "Plasma membrane",
    "Cell junctions",
    "Mitochondria",
    "Aggresome",
    "Cytosol",
    "Cytoplasmic bodies",
    "Rods & rings",
)
N_CLASSES = len(CLASS_NAMES)
#: The nucleolar group: Nucleoli, Nucleoli fibrillar center, Nuclear speckles, Nuclear bodies.
NUCLEOLAR_CLASSES: tuple[int, ...] = (2, 3, 4, 5)
#: Names of the two outcomes of the per-cell nucleolar call.
NUCLEOLAR_LABELS = ("Nucleoli", "Not Nucleoli")


def parse_targets(target: Any, *, where: str = "") -> list[int]:
    """Class numbers of one ``Target`` entry (space-separated, e.g. ``"25 3 0"``).

    Examples
    --------
    >>> parse_targets("25 3 0")
    [0, 3, 25]
    >>> parse_targets(7)
    [7]
    """
    if target is None or (isinstance(target, float) and np.isnan(target)):
        return []
    try:
        classes = sorted({int(t) for t in str(target).split()})
    except ValueError:
        raise InputError(
            f"{where or 'Target'}: {target!r} is not a space-separated list of class numbers"
        ) from None
    bad = [c for c in classes if not 0 <= c < N_CLASSES]
    if bad:
        raise InputError(
            f"{where or 'Target'}: class number(s) {bad} outside 0-{N_CLASSES - 1} in {target!r}"
        )
    return classes


def targets_to_matrix(targets: Any) -> np.ndarray:
    """Multi-hot matrix ``(n, 28)`` of uint8 from lists of class numbers.

    Examples
    --------
    >>> targets_to_matrix([[0, 2], [27]]).sum(axis=1).tolist()
    [2, 1]
    """
    rows = list(targets)
    y = np.zeros((len(rows), N_CLASSES), np.uint8)
    for i, classes in enumerate(rows):
        y[i, list(classes)] = 1
    return y


def read_labels(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read an HPA labels CSV (columns ``Id,Target``, as in the Kaggle ``train.csv``).

    Parameters
    ----------
    path : path-like
        The CSV file.

    Returns
    -------
    pandas.DataFrame
        Columns ``id`` (str) and ``classes`` (sorted list of int), one row per
        sample, in file order.

    Raises
    ------
    MissingFileError, FileFormatError, InputError
        When the file is absent or empty, lacks the columns, has an empty or
        duplicate id or a bad class number (the message names the file and row).

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "labels.csv"
    >>> _ = p.write_text("Id,Target\\na,25 0\\nb,2\\n")
    >>> read_labels(p)["classes"].tolist()
    [[0, 25], [2]]
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: labels CSV not found")
    try:
        table = pd.read_csv(path, dtype={"Id": str, "Target": str})
    except pd.errors.EmptyDataError:
        raise FileFormatError(
            f"{path}: empty file; expected a CSV with the header 'Id,Target' and one row per sample"
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FileFormatError(f"{path}: cannot be read as CSV ({first})") from None
    missing = {"Id", "Target"} - set(table.columns)
    if missing:
        raise FileFormatError(
            f"{path}: missing column(s) {sorted(missing)}; expected 'Id,Target' "
            f"(found {list(table.columns)})"
        )
    empty = table["Id"].isna() | (table["Id"].astype(str).str.strip() == "")
    if empty.any():
        raise InputError(f"{path} row {int(np.flatnonzero(empty)[0]) + 2}: empty Id")
    dup = table["Id"][table["Id"].duplicated()]
    if len(dup):
        raise InputError(f"{path} row {int(dup.index[0]) + 2}: duplicate Id {dup.iloc[0]!r}")
    classes = [parse_targets(t, where=f"{path} row {i + 2}") for i, t in enumerate(table["Target"])]
    return pd.DataFrame({"id": table["Id"].astype(str), "classes": classes})
