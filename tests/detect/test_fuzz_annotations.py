"""Property tests of the annotation readers: bad files fail with a CytolensError, never otherwise.

Inputs: random bytes, and valid VOC XML (LabelImg's bundled sample), box CSV
and COCO JSON mutated the ways real files break: cut short, a number replaced
by text, a huge, negative, NaN or infinite value, an element, field or key
dropped. Every reader either raises a :class:`~cytolens.core.errors.CytolensError`
(one line for the command line) or returns a table whose boxes have finite,
ordered coordinates in an image of a whole-number size >= 1, which
:func:`~cytolens.detect.validate_boxes` then accepts without another error.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cytolens.core.errors import CytolensError
from cytolens.data import sample_path
from cytolens.detect import (
    COLUMNS,
    read_annotations,
    read_boxes_csv,
    read_coco,
    read_voc,
    validate_boxes,
    write_boxes_csv,
    write_coco,
)

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure reproduces
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

Reader = Callable[[Path], pd.DataFrame]
READERS: dict[str, Reader] = {".xml": read_voc, ".csv": read_boxes_csv, ".json": read_coco}


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


@pytest.fixture(scope="module")
def valid(workdir: Path) -> dict[str, str]:
    """A valid file of each format, holding the bundled sample's boxes."""
    voc = sample_path("blood_smear.xml")
    table = read_voc(voc)
    write_boxes_csv(table.head(6), workdir / "valid.csv")
    write_coco(table.head(6), workdir / "valid.json")
    return {
        ".xml": voc.read_text(),
        ".csv": (workdir / "valid.csv").read_text(),
        ".json": (workdir / "valid.json").read_text(),
    }


def check(reader: Reader, path: Path) -> None:
    """The property: a CytolensError, or a table of finite, ordered boxes."""
    try:
        table = reader(path)
    except CytolensError:
        return
    assert set(COLUMNS) <= set(table.columns)
    for c in ("width", "height"):
        assert all(isinstance(v, int) and v >= 1 for v in table[c].tolist()), table[c]
    coords = table[["xmin_px", "ymin_px", "xmax_px", "ymax_px"]].to_numpy(float)
    assert all(math.isfinite(v) for v in coords.ravel())
    assert (coords[:, 0] <= coords[:, 2]).all() and (coords[:, 1] <= coords[:, 3]).all()
    assert all(isinstance(v, str) and v for v in table["class"].tolist())
    try:
        fixed, _ = validate_boxes(table)
    except CytolensError:
        return
    inside = fixed[["xmin_px", "ymin_px", "xmax_px", "ymax_px"]].to_numpy(float)
    assert (inside[:, 0] < inside[:, 2]).all() and (inside[:, 1] < inside[:, 3]).all()
    assert (inside[:, 0] >= 0).all() and (inside[:, 2] <= fixed["width"].to_numpy()).all()


REPLACEMENTS = st.one_of(
    st.sampled_from(
        [
            "",
            "abc",
            "1e300",
            "-1e300",
            "1e400",
            "-5",
            "-640",
            "nan",
            "NaN",
            "inf",
            "-inf",
            "Infinity",
            "0",
            "0.5",
            "1_000",
            "99999999999999999999",
            "null",
            "true",
            "[]",
            "{}",
            '"x"',
            ",",
            "<",
            "&amp;",
            "1,2",
            "\u0661\u0662",
            "\x00",
        ]
    ),
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=6),
)


@st.composite
def mutated(draw: st.DrawFn, text: str) -> str:
    """``text`` with one to three of: a number replaced, a part dropped, the end cut off."""
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["number", "drop", "truncate"]))
        if kind == "number":
            numbers = list(re.finditer(r"-?\d+(\.\d+)?", text))
            if numbers:
                m = numbers[draw(st.integers(0, len(numbers) - 1))]
                text = text[: m.start()] + draw(REPLACEMENTS) + text[m.end() :]
        elif kind == "drop":
            # an XML element, a JSON "key": value pair, or a CSV field
            parts = list(re.finditer(r"<(\w+)>[^<]*</\1>|\"\w+\": ?[^,{}\[\]]+,? ?|[^,\n]*,", text))
            if parts:
                m = parts[draw(st.integers(0, len(parts) - 1))]
                text = text[: m.start()] + text[m.end() :]
        else:
            text = text[: draw(st.integers(0, len(text)))]
    return text


@pytest.mark.parametrize("suffix", sorted(READERS))
def test_random_bytes_fail_with_a_cytolens_error(workdir, suffix):
    @SETTINGS
    @given(data=st.binary(max_size=400))
    def run(data: bytes) -> None:
        path = workdir / f"random{suffix}"
        path.write_bytes(data)
        check(READERS[suffix], path)
        check(read_annotations, path)

    run()


@pytest.mark.parametrize("suffix", sorted(READERS))
def test_mutated_valid_files_fail_with_a_cytolens_error_or_read_clean(workdir, valid, suffix):
    check(READERS[suffix], _write(workdir / f"valid{suffix}", valid[suffix]))  # the unmutated

    @SETTINGS
    @given(st.data())
    def run(data: st.DataObject) -> None:
        text = data.draw(mutated(valid[suffix]))
        check(READERS[suffix], _write(workdir / f"mutated{suffix}", text))

    run()


@SETTINGS
@given(
    bbox=st.lists(
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=True),
            st.integers(-(10**400), 10**400),
            st.text(max_size=3),
            st.none(),
            st.booleans(),
        ),
        max_size=5,
    ),
    size=st.one_of(st.integers(-5, 10**20), st.floats(), st.text(max_size=3)),
)
def test_coco_values_of_any_json_type(workdir, bbox, size):
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": size, "height": 480}],
        "categories": [{"id": 1, "name": "RBC"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": bbox}],
    }
    check(read_coco, _write(workdir / "typed.json", json.dumps(coco)))


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    return path
