"""Box annotations: Pascal VOC XML (LabelImg), CSV and COCO JSON, with validation.

One table format is used everywhere (reading, training, prediction, export):
a :class:`pandas.DataFrame` with one row per box and the columns of
:data:`COLUMNS` (``filename, width, height, class, xmin_px, ymin_px, xmax_px, ymax_px``:
image size and box corners in pixels, ``xmax_px``/``ymax_px`` exclusive as
LabelImg writes them), plus ``score`` for predictions. The files keep their
formats' names (``<xmin>`` in VOC XML, ``bbox`` in COCO); CSV files written by
earlier versions (``xmin, ymin, xmax, ymax``) are read too.

Real annotations are imperfect (the BCCD set has boxes partly outside the
image and boxes of zero width): :func:`validate_boxes` clips what can be
clipped, drops what cannot and returns one line per problem naming the file
and the box, or raises with ``strict=True``.

Examples
--------
>>> import tempfile, pathlib
>>> boxes = pd.DataFrame({"class": ["WBC"], "xmin_px": [10], "ymin_px": [20], "xmax_px": [60],
...                       "ymax_px": [90]})
>>> path = pathlib.Path(tempfile.mkdtemp()) / "a.xml"
>>> _ = write_voc(boxes, path, filename="a.jpg", width=640, height=480)
>>> read_voc(path)[["filename", "class", "xmin_px", "ymax_px"]].values.tolist()
[['a.jpg', 'WBC', 10, 90]]
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cytolens.core.errors import FileFormatError, InputError, MissingFileError
from cytolens.core.files import atomic_path
from cytolens.core.tables import BOX_COLUMNS, LEGACY_NAMES, VOC_BOX_NAMES

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
COLUMNS = ["filename", "width", "height", "class", *BOX_COLUMNS]
_COORDS = list(BOX_COLUMNS)


#: Largest coordinate or size accepted (no image is this large; a bigger number is a typo).
_MAX_COORD = 2**31 - 1


def _number(value: object, where: str) -> float:
    """A finite number (text or JSON) within +-2^31, else :class:`FileFormatError` at ``where``."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise FileFormatError(f"{where}: {value!r} is not a number")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise FileFormatError(f"{where}: {value!r} is not a number") from None
    if not math.isfinite(number) or abs(number) > _MAX_COORD:
        raise FileFormatError(
            f"{where}: {value!r} is not a finite number between -{_MAX_COORD} and {_MAX_COORD}"
        )
    return number


def _image_size(value: object, where: str) -> int:
    """A positive whole number of pixels (image width or height)."""
    number = _number(value, where)
    if number < 1 or number != int(number):
        raise FileFormatError(f"{where}: {value!r} is not an image size (a whole number >= 1)")
    return int(number)


def _check_order(coords: Sequence[float], where: str) -> None:
    """Refuse an inverted box (``xmin > xmax`` or ``ymin > ymax``); empty boxes pass."""
    xmin, ymin, xmax, ymax = coords
    if xmin > xmax or ymin > ymax:
        raise FileFormatError(
            f"{where}: inverted box (xmin {xmin:g}, ymin {ymin:g}, xmax {xmax:g}, ymax "
            f"{ymax:g}); expected xmin <= xmax and ymin <= ymax"
        )


def _text(node: ET.Element, tag: str, where: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise FileFormatError(f"{where}: <{node.tag}> has no <{tag}> (or it is empty)")
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
        Columns :data:`COLUMNS`; coordinates rounded to integer pixels, every
        box with ``xmin <= xmax`` and ``ymin <= ymax`` (empty boxes, which
        real annotations hold, are left to :func:`validate_boxes`). An image
        without objects gives an empty table.

    Raises
    ------
    MissingFileError, FileFormatError
        Missing file; not XML; no ``<size>``, a size that is not a whole
        number >= 1; an ``<object>`` without ``<name>`` or ``<bndbox>``
        field, a coordinate that is not a finite number, an inverted box.
        The message names the file, the object and the field.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.xml"
    >>> _ = path.write_text("<annotation><size><width>64</width><height>48</height></size>"
    ...     "<object><name>RBC</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>1e300</xmax>"
    ...     "<ymax>9</ymax></bndbox></object></annotation>")
    >>> read_voc(path)
    Traceback (most recent call last):
    ...
    cytolens.core.errors.FileFormatError: ...a.xml: object 1 (RBC) <xmax>: '1e300' is not ...
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: annotation file not found")
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, ValueError, LookupError) as exc:
        raise FileFormatError(f"{path}: not a Pascal VOC XML file ({exc})") from None
    if root.tag != "annotation":
        raise FileFormatError(f"{path}: root element is <{root.tag}>, expected <annotation>")
    filename = (root.findtext("filename") or "").strip() or path.with_suffix(".jpg").name
    size = root.find("size")
    if size is None:
        raise FileFormatError(f"{path}: no <size> element (image width and height)")
    width, height = (
        _image_size(_text(size, tag, str(path)), f"{path}: <size> <{tag}>")
        for tag in ("width", "height")
    )
    rows = []
    for k, obj in enumerate(root.iter("object"), start=1):
        where = f"{path}: object {k}"
        name = _text(obj, "name", where)
        where = f"{where} ({name})"
        box = obj.find("bndbox")
        if box is None:
            raise FileFormatError(f"{where} has no <bndbox>")
        coords = [round(_number(_text(box, c, where), f"{where} <{c}>")) for c in VOC_BOX_NAMES]
        _check_order(coords, where)
        rows.append([filename, width, height, name, *coords])
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
        Columns ``class, xmin_px, ymin_px, xmax_px, ymax_px`` (and optionally
        ``score``, kept as a ``<score>`` element that LabelImg ignores).
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
        for tag, c in zip(VOC_BOX_NAMES, _COORDS, strict=True):
            ET.SubElement(bnd, tag).text = str(round(float(row[c])))
    ET.indent(root, space="\t")
    with atomic_path(path) as tmp:
        ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=False)
    return Path(path)


def _csv_records(path: Path) -> list[tuple[int, list[str]]]:
    """``(line number, cells)`` of the non-blank records of a CSV file (lines from 1)."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileFormatError(
            f"{path}: not a text CSV file (byte {exc.start} is not UTF-8 text)"
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    records, line = [], 1
    try:
        for cells in reader:
            if any(c.strip() for c in cells):
                records.append((line, [c.strip() for c in cells]))
            line = reader.line_num + 1
    except csv.Error as exc:
        raise FileFormatError(f"{path}, line {line}: not valid CSV ({exc})") from None
    return records


def _column(values: list[float], texts: list[str]) -> np.ndarray:
    """Integer column when every value was written as an integer, else float (as pandas reads)."""
    if all(t.lstrip("+-").isdigit() for t in texts):
        return np.asarray(values, np.int64)
    return np.asarray(values, np.float64)


def read_boxes_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a box table from CSV (columns :data:`COLUMNS`, optionally ``score``).

    A file written by an earlier version, with the corners named ``xmin,
    ymin, xmax, ymax``, is read with the current names.
    Every row is checked: all the columns present, ``filename`` and ``class``
    not empty, ``width`` and ``height`` whole numbers >= 1, coordinates (and
    ``score``) finite numbers, ``xmin <= xmax`` and ``ymin <= ymax``.
    Blank lines are skipped. Other columns are kept.

    Parameters
    ----------
    path : path-like
        The ``.csv`` file (header line first).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS` (and ``score`` and any other column of the
        file); coordinates are integers when the file writes them so.

    Raises
    ------
    MissingFileError, FileFormatError
        Missing file; empty file; missing columns (named); a bad value,
        named by its line in the file (the header is line 1) and its column.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "boxes.csv"
    >>> _ = path.write_text("filename,width,height,class,xmin_px,ymin_px,xmax_px,ymax_px\\n"
    ...                     "a.jpg,640,480,RBC,10,20,60\\n")
    >>> read_boxes_csv(path)
    Traceback (most recent call last):
    ...
    cytolens.core.errors.FileFormatError: ...boxes.csv, line 2, column 'ymax_px': no value (the ...
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: CSV file not found")
    records = _csv_records(path)
    expected = f"expected a header line {','.join(COLUMNS)}[,score]"
    if not records:
        raise FileFormatError(f"{path}: empty file; {expected}")
    header = records[0][1]
    while header and not header[-1]:  # a trailing comma in the header (spreadsheets)
        header = header[:-1]
    old = {a: b for a, b in LEGACY_NAMES["boxes"].items() if a in header and b not in header}
    named = {b: a for a, b in old.items()}  # messages name the file's own columns
    header = [old.get(c, c) for c in header]  # a CSV written by an earlier version
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise FileFormatError(f"{path}: missing column(s) {missing}; {expected}")
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise FileFormatError(f"{path}: column(s) {repeated} appear more than once in the header")
    numeric = [*_COORDS, *(["score"] if "score" in header else [])]
    texts: dict[str, list[str]] = {c: [] for c in header}
    values: dict[str, list[float]] = {c: [] for c in ("width", "height", *numeric)}
    for line, cells in records[1:]:
        where = f"{path}, line {line}"
        if len(cells) < len(header):
            raise FileFormatError(
                f"{where}, column '{named.get(header[len(cells)], header[len(cells)])}': no "
                f"value (the row has {len(cells)} "
                f"fields, the header {len(header)})"
            )
        if len(cells) > len(header) and not any(cells[len(header) :]):
            cells = cells[: len(header)]  # trailing commas
        if len(cells) > len(header):
            raise FileFormatError(
                f"{where}: {len(cells)} fields, the header has {len(header)} (quote a value "
                "that holds a comma)"
            )
        row = dict(zip(header, cells, strict=True))
        for c in ("filename", "class"):
            if not row[c]:
                raise FileFormatError(f"{where}, column '{c}': empty")
        for c in ("width", "height"):
            values[c].append(_image_size(row[c], f"{where}, column '{c}'"))
        for c in numeric:
            values[c].append(_number(row[c], f"{where}, column '{named.get(c, c)}'"))
        _check_order([values[c][-1] for c in _COORDS], where)
        for c in header:
            texts[c].append(row[c])
    table = pd.DataFrame({c: texts[c] for c in header})
    for c in header:
        if c in values:
            table[c] = _column(values[c], texts[c]) if c in _COORDS else values[c]
        elif c not in ("filename", "class") and texts[c]:
            converted = pd.to_numeric(table[c], errors="coerce")
            if converted.notna().all():
                table[c] = converted
    return table.astype({"width": np.int64, "height": np.int64})


def write_boxes_csv(table: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a box table as CSV (atomically), columns :data:`COLUMNS` first."""
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"box table for {path} lacks the column(s) {missing}")
    extra = [c for c in table.columns if c not in COLUMNS]
    with atomic_path(path) as tmp:
        table[COLUMNS + extra].to_csv(tmp, index=False)
    return Path(path)


def _coco_list(coco: dict, key: str, path: Path) -> list[dict]:
    items = coco.get(key)
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise FileFormatError(
            f"{path}: not COCO detection JSON ('{key}' must be a list of objects)"
        )
    return items


def _coco_id(item: dict, key: str, where: str) -> int | str:
    value = item.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise FileFormatError(f"{where}: '{key}' is {value!r}; expected an integer or a string")
    return value


def _coco_name(item: dict, key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise FileFormatError(f"{where}: '{key}' is {value!r}; expected a non-empty string")
    return value.strip()


def read_coco(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read COCO detection JSON (``images``, ``annotations``, ``categories``) into a box table.

    Parameters
    ----------
    path : path-like
        The ``.json`` file.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`; ``bbox`` (x, y, width, height) rounded to
        integer corners.

    Raises
    ------
    MissingFileError, FileFormatError
        Missing file; not JSON; a missing list; an image without a file name
        or a size >= 1; an annotation that names an unknown image or
        category, or whose ``bbox`` is not four finite numbers with width
        and height >= 0. The message names the file and the entry.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: COCO JSON file not found")
    try:
        coco = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise FileFormatError(f"{path}: not a JSON file ({exc})") from None
    if not isinstance(coco, dict):
        raise FileFormatError(
            f"{path}: not COCO detection JSON (expected an object with 'images', "
            "'annotations' and 'categories')"
        )
    images: dict[int | str, tuple[str, int, int]] = {}
    for k, im in enumerate(_coco_list(coco, "images", path)):
        where = f"{path}: images[{k}]"
        key = _coco_id(im, "id", where)
        if key in images:
            raise FileFormatError(f"{where}: image id {key!r} appears twice")
        images[key] = (
            _coco_name(im, "file_name", where),
            _image_size(im.get("width"), f"{where} 'width'"),
            _image_size(im.get("height"), f"{where} 'height'"),
        )
    names = {}
    for k, cat in enumerate(_coco_list(coco, "categories", path)):
        where = f"{path}: categories[{k}]"
        names[_coco_id(cat, "id", where)] = _coco_name(cat, "name", where)
    rows = []
    for k, ann in enumerate(_coco_list(coco, "annotations", path)):
        where = f"{path}: annotations[{k}]"
        image_id, category_id = (
            _coco_id(ann, "image_id", where),
            _coco_id(ann, "category_id", where),
        )
        if image_id not in images:
            raise FileFormatError(f"{where}: image_id {image_id!r} is not in 'images'")
        if category_id not in names:
            raise FileFormatError(f"{where}: category_id {category_id!r} is not in 'categories'")
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise FileFormatError(f"{where}: 'bbox' is {bbox!r}; expected [x, y, width, height]")
        x, y, w, h = (_number(v, f"{where} 'bbox'") for v in bbox)
        if w < 0 or h < 0:
            raise FileFormatError(f"{where}: 'bbox' {bbox!r} has a negative width or height")
        corners = [round(x), round(y), round(_number(x + w, f"{where} 'bbox'")),
                   round(_number(y + h, f"{where} 'bbox'"))]  # fmt: skip
        rows.append([*images[image_id], names[category_id], *corners])
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
                    float(r["xmin_px"]),
                    float(r["ymin_px"]),
                    float(r["xmax_px"] - r["xmin_px"]),
                    float(r["ymax_px"] - r["ymin_px"]),
                ],
                "area": float((r["xmax_px"] - r["xmin_px"]) * (r["ymax_px"] - r["ymin_px"])),
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
        Unknown class, a missing or non-finite coordinate or size, or any
        problem with ``strict=True``.

    Examples
    --------
    >>> t = pd.DataFrame([["a.jpg", 100, 80, "RBC", -5, 10, 40, 50]], columns=COLUMNS)
    >>> fixed, problems = validate_boxes(t)
    >>> int(fixed["xmin_px"].iloc[0]), problems[0].startswith("a.jpg: RBC box")
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
    for c in ["width", "height", *_COORDS]:
        bad = ~np.isfinite(pd.to_numeric(table[c], errors="coerce").to_numpy(float))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"{source}: {table['filename'].iloc[i]}: box {i + 1} ({table['class'].iloc[i]}) "
                f"has {c} {table[c].iloc[i]}; expected a finite number"
            )
    problems: list[str] = []
    keep = np.ones(len(table), bool)
    for i, r in table.iterrows():
        coords = ", ".join(str(r[c]) for c in _COORDS)
        box = f"{r['filename']}: {r['class']} box ({coords})"
        if r["xmax_px"] <= r["xmin_px"] or r["ymax_px"] <= r["ymin_px"]:
            problems.append(f"{box} is inverted or empty; dropped")
            keep[i] = False
            continue
        clipped = (
            max(0, r["xmin_px"]),
            max(0, r["ymin_px"]),
            min(r["width"], r["xmax_px"]),
            min(r["height"], r["ymax_px"]),
        )
        if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
            problems.append(f"{box} lies outside the {r['width']}x{r['height']} image; dropped")
            keep[i] = False
        elif clipped != (r["xmin_px"], r["ymin_px"], r["xmax_px"], r["ymax_px"]):
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

    Raises
    ------
    MissingFileError, FileFormatError
        A missing file, folder or annotated image; a file that cannot be
        read (see :func:`read_voc`, :func:`read_boxes_csv`, :func:`read_coco`).
    InputError
        One image given two different sizes.
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
    sizes = table.drop_duplicates(["filename", "width", "height"])
    clash = sizes["filename"][sizes["filename"].duplicated()]
    if len(clash):
        name = clash.iloc[0]
        found = sizes.loc[sizes["filename"] == name, ["width", "height"]].to_numpy().tolist()
        raise InputError(
            f"{', '.join(map(str, items))}: the image {name} is given different sizes "
            f"(width, height) {found}; expected one size per image"
        )
    if images is not None:
        folder = Path(images)
        for name in table["filename"].unique():
            if not (folder / Path(name).name).is_file():
                raise MissingFileError(f"{folder / Path(name).name}: annotated image not found")
    return table
