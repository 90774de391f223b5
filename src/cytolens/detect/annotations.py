"""Box annotations: Pascal VOC XML (LabelImg), CSV and COCO JSON, with validation.

One table format is used everywhere (reading, training, prediction, export):
a :class:`pandas.DataFrame` with one row per box and the columns of
:data:`COLUMNS` (``filename, width, height, class, xmin, ymin, xmax, ymax``,
pixels, ``xmax``/``ymax`` exclusive as LabelImg writes them), plus ``score``
for predictions.

Real annotations are imperfect (the BCCD set has boxes partly outside the
image and boxes of zero width): :func:`validate_boxes` clips what can be
clipped, drops what cannot and returns one line per problem naming the file
and the box, or raises with ``strict=True``.

Examples
--------
>>> import tempfile, pathlib
>>> boxes = pd.DataFrame({"class": ["WBC"], "xmin": [10], "ymin": [20], "xmax": [60], "ymax": [90]})
>>> path = pathlib.Path(tempfile.mkdtemp()) / "a.xml"
>>> _ = write_voc(boxes, path, filename="a.jpg", width=640, height=480)
>>> read_voc(path)[["filename", "class", "xmin", "ymax"]].values.tolist()
[['a.jpg', 'WBC', 10, 90]]
"""

from __future__ import annotations

import json
import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cytolens.core.errors import FileFormatError, InputError, MissingFileError
from cytolens.core.files import atomic_path

__all__ = [
    "COLUMNS",
    "read_annotations",
    "read_boxes_csv",
    "read_coco",
    "read_voc",
    "validate_boxes",
    "write_boxes_csv",
    "write_coco",
    "write_voc",
]

logger = logging.getLogger(__name__)

#: Columns of a box table (``score`` is added for predictions).
COLUMNS = ["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"]
_COORDS = ["xmin", "ymin", "xmax", "ymax"]


def _text(node: ET.Element, tag: str, path: Path) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise FileFormatError(f"{path}: Pascal VOC element <{node.tag}> has no <{tag}>")
    return child.text.strip()


def read_voc(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read one Pascal VOC XML file (as written by LabelImg) into a box table.

    Parameters
    ----------
    path : path-like
        The ``.xml`` file.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`; coordinates rounded to integer pixels. An
        image without objects gives an empty table.

    Raises
    ------
    MissingFileError, FileFormatError
        Missing file; not XML; no ``<size>`` or a malformed ``<object>``.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: annotation file not found")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise FileFormatError(f"{path}: not a Pascal VOC XML file ({exc})") from None
    if root.tag != "annotation":
        raise FileFormatError(f"{path}: root element is <{root.tag}>, expected <annotation>")
    filename = root.findtext("filename", default="").strip() or path.with_suffix(".jpg").name
    size = root.find("size")
    if size is None:
        raise FileFormatError(f"{path}: no <size> element (image width and height)")
    try:
        width, height = (
            int(float(_text(size, "width", path))),
            int(float(_text(size, "height", path))),
        )
    except ValueError:
        raise FileFormatError(f"{path}: <size> width/height are not numbers") from None
    rows = []
    for k, obj in enumerate(root.iter("object")):
        box = obj.find("bndbox")
        if box is None:
            raise FileFormatError(f"{path}: object {k} ({obj.findtext('name')}) has no <bndbox>")
        try:
            coords = [round(float(_text(box, c, path))) for c in _COORDS]
        except ValueError:
            raise FileFormatError(f"{path}: object {k} has a non-numeric coordinate") from None
        rows.append([filename, width, height, _text(obj, "name", path), *coords])
    return pd.DataFrame(rows, columns=COLUMNS).astype(
        {"width": int, "height": int, **dict.fromkeys(_COORDS, int)}
    )


def write_voc(
    boxes: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    filename: str,
    width: int,
    height: int,
    depth: int = 3,
) -> Path:
    """Write the boxes of one image as LabelImg-compatible Pascal VOC XML (atomically).

    Parameters
    ----------
    boxes : pandas.DataFrame
        Columns ``class, xmin, ymin, xmax, ymax`` (and optionally ``score``,
        kept as a ``<score>`` element that LabelImg ignores).
    path : path-like
        The ``.xml`` file to write.
    filename : str
        Image file name stored in ``<filename>``.
    width, height, depth : int
        Image size.

    Returns
    -------
    pathlib.Path
    """
    missing = {"class", *_COORDS} - set(boxes.columns)
    if missing:
        raise InputError(f"boxes for {path} lack the column(s) {sorted(missing)}")
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = Path(filename).parent.name or "."
    ET.SubElement(root, "filename").text = Path(filename).name
    ET.SubElement(root, "path").text = str(filename)
    ET.SubElement(ET.SubElement(root, "source"), "database").text = "cytolens"
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", depth)):
        ET.SubElement(size, tag).text = str(int(value))
    ET.SubElement(root, "segmented").text = "0"
    for _, row in boxes.iterrows():
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = str(row["class"])
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = "0"
        if "score" in boxes.columns:
            ET.SubElement(obj, "score").text = f"{float(row['score']):.4f}"
        bnd = ET.SubElement(obj, "bndbox")
        for c in _COORDS:
            ET.SubElement(bnd, c).text = str(round(float(row[c])))
    ET.indent(root, space="\t")
    with atomic_path(path) as tmp:
        ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=False)
    return Path(path)


def read_boxes_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a box table from CSV (columns :data:`COLUMNS`, optionally ``score``).

    Raises
    ------
    MissingFileError, FileFormatError
        Missing file or missing columns (named).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: CSV file not found")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"{path}: not a box CSV ({exc})") from None
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise FileFormatError(
            f"{path}: missing column(s) {missing}; expected {','.join(COLUMNS)}[,score]"
        )
    return table


def write_boxes_csv(table: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a box table as CSV (atomically), columns :data:`COLUMNS` first."""
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"box table for {path} lacks the column(s) {missing}")
    extra = [c for c in table.columns if c not in COLUMNS]
    with atomic_path(path) as tmp:
        table[COLUMNS + extra].to_csv(tmp, index=False)
    return Path(path)


def read_coco(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read COCO detection JSON (``images``, ``annotations``, ``categories``) into a box table."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: COCO JSON file not found")
    try:
        coco = json.loads(path.read_text())
        images = {im["id"]: im for im in coco["images"]}
        names = {c["id"]: c["name"] for c in coco["categories"]}
        rows = []
        for ann in coco["annotations"]:
            im = images[ann["image_id"]]
            x, y, w, h = ann["bbox"]
            rows.append(
                [
                    im["file_name"],
                    im["width"],
                    im["height"],
                    names[ann["category_id"]],
                    round(x),
                    round(y),
                    round(x + w),
                    round(y + h),
                ]
            )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise FileFormatError(f"{path}: not COCO detection JSON ({exc!r})") from None
    return pd.DataFrame(rows, columns=COLUMNS)


def write_coco(table: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a box table as COCO detection JSON (``bbox`` = x, y, width, height)."""
    classes = sorted(table["class"].unique())
    cat = {name: i + 1 for i, name in enumerate(classes)}
    images = table.drop_duplicates("filename")[["filename", "width", "height"]]
    image_id = {f: i + 1 for i, f in enumerate(images["filename"])}
    coco = {
        "images": [
            {
                "id": image_id[r.filename],
                "file_name": r.filename,
                "width": int(r.width),
                "height": int(r.height),
            }
            for r in images.itertuples(index=False)
        ],
        "categories": [{"id": i, "name": n} for n, i in cat.items()],
        "annotations": [
            {
                "id": k + 1,
                "image_id": image_id[r["filename"]],
                "category_id": cat[r["class"]],
                "bbox": [
                    float(r["xmin"]),
                    float(r["ymin"]),
                    float(r["xmax"] - r["xmin"]),
                    float(r["ymax"] - r["ymin"]),
                ],
                "area": float((r["xmax"] - r["xmin"]) * (r["ymax"] - r["ymin"])),
                "iscrowd": 0,
                **({"score": float(r["score"])} if "score" in r else {}),
            }
            for k, (_, r) in enumerate(table.iterrows())
        ],
    }
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(coco, indent=1))
    return Path(path)


def validate_boxes(
    table: pd.DataFrame,
    *,
    classes: Sequence[str] | None = None,
    strict: bool = False,
    source: str = "annotations",
) -> tuple[pd.DataFrame, list[str]]:
    """Check boxes against their image size and the known classes.

    Boxes partly outside the image are clipped; boxes inverted, empty after
    clipping or entirely outside are dropped; unknown classes raise (a typo in
    a class name is never silently dropped).

    Parameters
    ----------
    table : pandas.DataFrame
        A box table (:data:`COLUMNS`).
    classes : sequence of str, optional
        The allowed class names.
    strict : bool
        Raise on the first problem instead of repairing it.
    source : str
        How the table is called in messages.

    Returns
    -------
    table : pandas.DataFrame
        The repaired table.
    problems : list of str
        One line per repaired or dropped box, naming the file and the box.

    Raises
    ------
    InputError
        Unknown class, or any problem with ``strict=True``.

    Examples
    --------
    >>> t = pd.DataFrame([["a.jpg", 100, 80, "RBC", -5, 10, 40, 50]], columns=COLUMNS)
    >>> fixed, problems = validate_boxes(t)
    >>> int(fixed["xmin"].iloc[0]), problems[0].startswith("a.jpg: RBC box")
    (0, True)
    """
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {missing}")
    if classes is not None:
        unknown = sorted(set(table["class"]) - set(classes))
        if unknown:
            where = table.loc[table["class"].isin(unknown), "filename"].iloc[0]
            raise InputError(
                f"{source}: unknown class(es) {unknown} (first in {where}); "
                f"the model knows {list(classes)}"
            )
    table = table.reset_index(drop=True).copy()
    problems: list[str] = []
    keep = np.ones(len(table), bool)
    for i, r in table.iterrows():
        coords = ", ".join(str(r[c]) for c in _COORDS)
        box = f"{r['filename']}: {r['class']} box ({coords})"
        if r["xmax"] <= r["xmin"] or r["ymax"] <= r["ymin"]:
            problems.append(f"{box} is inverted or empty; dropped")
            keep[i] = False
            continue
        clipped = (
            max(0, r["xmin"]),
            max(0, r["ymin"]),
            min(r["width"], r["xmax"]),
            min(r["height"], r["ymax"]),
        )
        if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
            problems.append(f"{box} lies outside the {r['width']}x{r['height']} image; dropped")
            keep[i] = False
        elif clipped != (r["xmin"], r["ymin"], r["xmax"], r["ymax"]):
            problems.append(f"{box} extends outside the {r['width']}x{r['height']} image; clipped")
            table.loc[i, _COORDS] = clipped
    if strict and problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InputError(f"{source}: {problems[0]}{more}")
    for line in problems:
        logger.warning("%s: %s", source, line)
    return table[keep].reset_index(drop=True), problems


def read_annotations(
    paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    images: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """Read annotations from VOC XML files, a folder of them, a CSV or a COCO JSON.

    Parameters
    ----------
    paths : path-like or iterable of path-like
        ``.xml`` files, folders holding ``.xml`` files, a ``.csv`` or a ``.json``.
    images : path-like, optional
        Folder of the images: every annotated image must exist there (the
        error names the first missing one).

    Returns
    -------
    pandas.DataFrame
        A box table (:data:`COLUMNS`).
    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    tables = []
    for item in map(Path, items):
        if item.is_dir():
            files = sorted(item.glob("*.xml"))
            if not files:
                raise MissingFileError(f"{item}: no Pascal VOC .xml files in this folder")
            tables += [read_voc(f) for f in files]
        elif item.suffix.lower() == ".xml":
            tables.append(read_voc(item))
        elif item.suffix.lower() == ".csv":
            tables.append(read_boxes_csv(item))
        elif item.suffix.lower() == ".json":
            tables.append(read_coco(item))
        elif not item.exists():
            raise MissingFileError(f"{item}: annotation file or folder not found")
        else:
            raise FileFormatError(f"{item}: expected .xml (Pascal VOC), .csv or .json (COCO)")
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=COLUMNS)
    if images is not None:
        folder = Path(images)
        for name in table["filename"].unique():
            if not (folder / Path(name).name).is_file():
                raise MissingFileError(f"{folder / Path(name).name}: annotated image not found")
    return table
