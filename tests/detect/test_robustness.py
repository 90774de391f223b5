"""``cytolens detect``: nothing lost, nothing silently wrong (run as a user does, in a subprocess).

Each test runs the command line on real BCCD files (LabelImg's layout: the
.xml beside the .jpg) or on bad files made from them, and checks the exit
code, the one-line message naming the file, line, column or option, that the
inputs are byte-identical afterwards and that no partial or temporary file
remains.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from tests.clitools import cytolens, digest, no_temporaries, one_error_line
from tests.conftest import shared

from cytolens.core.errors import FileFormatError, InputError
from cytolens.data import sample_path
from cytolens.detect import (
    COLUMNS,
    read_annotations,
    read_boxes_csv,
    read_coco,
    read_voc,
    validate_boxes,
)

BCCD = "detection/bccd"
STEMS = ["BloodImage_00000", "BloodImage_00001"]
HEADER = ",".join(COLUMNS)


def one_line_error(proc: subprocess.CompletedProcess, pattern: str, code: int = 2) -> str:
    """Assert exit ``code`` and a one-line ``error: ...`` matching ``pattern`` (no traceback)."""
    assert proc.returncode == code, proc.stdout + proc.stderr
    line = one_error_line(proc)
    assert re.search(pattern, line), line
    return line


@pytest.fixture
def labelimg(tmp_path: Path) -> Path:
    """A folder as LabelImg leaves it: two BCCD images, each with its .xml beside it."""
    src = shared(BCCD)
    folder = tmp_path / "smears"
    folder.mkdir()
    for stem in STEMS:
        shutil.copy(src / "JPEGImages" / f"{stem}.jpg", folder)
        shutil.copy(src / "Annotations" / f"{stem}.xml", folder)
    return folder


def _csv(tmp_path: Path, *rows: str, header: str = HEADER) -> Path:
    path = tmp_path / "boxes.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


GOOD = "BloodImage_00000.jpg,640,480,RBC,10,20,60,70"


# --- predict never writes over the images or their LabelImg annotations ---------------------


def test_predict_into_the_image_folder_is_refused_and_annotations_survive(labelimg):
    before = digest(labelimg)
    for extra in ([], ["--overwrite"]):
        proc = cytolens("detect", "predict", labelimg, "--out", labelimg, "--device", "cpu", *extra)
        one_line_error(proc, r"--out .*smears: holds the input .*BloodImage_0000\d\.(jpg|xml)")
        assert digest(labelimg) == before  # 20 objects stay 20 objects


def test_predict_never_overwrites_annotations_cytolens_did_not_write(labelimg, tmp_path):
    images = tmp_path / "jpg"
    images.mkdir()
    for p in labelimg.glob("*.jpg"):
        p.rename(images / p.name)
    before = digest(labelimg)  # now a folder of LabelImg .xml files only (BCCD's Annotations)
    proc = cytolens(
        "detect", "predict", images, "--out", labelimg, "--overwrite", "--device", "cpu"
    )
    one_line_error(proc, r"--out .*smears: holds the input .*BloodImage_0000\d\.xml")
    assert digest(labelimg) == before


# --- convert: outputs are checked before any work ------------------------------------------


def test_convert_to_an_existing_folder_or_over_an_input_is_refused(labelimg, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "notes.txt").write_text("precious")
    before, kept = digest(labelimg), digest(results)
    for fmt in ("csv", "coco"):
        proc = cytolens("detect", "convert", labelimg, "--to", fmt, "--out", results)
        one_line_error(proc, r"--out .*results: is an existing folder; give a file name")
    target = labelimg / f"{STEMS[0]}.xml"
    proc = cytolens("detect", "convert", target, "--to", "csv", "--out", target)
    one_line_error(proc, rf"--out .*{STEMS[0]}\.xml: would overwrite the input")
    proc = cytolens("detect", "convert", labelimg, "--to", "voc", "--out", labelimg, "--overwrite")
    one_line_error(proc, r"--out .*smears: holds the input")
    proc = cytolens("detect", "convert", labelimg, "--to", "voc", "--out", results)
    one_line_error(proc, r"--out .*results: already holds 1 file\(s\).*--overwrite")
    assert digest(labelimg) == before and digest(results) == kept
    no_temporaries(tmp_path)
    # and the right call works: a folder of VOC files read back to the same boxes
    proc = cytolens("detect", "convert", labelimg, "--to", "voc", "--out", tmp_path / "voc")
    assert proc.returncode == 0, proc.stderr
    pd.testing.assert_frame_equal(
        read_annotations(tmp_path / "voc")[COLUMNS[1:]],
        read_annotations(labelimg)[COLUMNS[1:]],
    )


# --- bad annotation files: one line naming the file, the line and the column --------------

BAD_CSV = {
    "short row": ([GOOD, "BloodImage_00000.jpg,640,480,RBC,10,20,60"], r"line 3, column 'ymax_px'"),
    "text coordinate": (
        ["BloodImage_00000.jpg,640,480,RBC,10,twenty,60,70"],
        r"line 2, column 'ymin_px': 'twenty' is not a number",
    ),
    "nan coordinate": (
        [GOOD, "", "BloodImage_00000.jpg,640,480,RBC,nan,20,60,70"],
        r"line 4, column 'xmin_px': 'nan' is not a finite",
    ),
    "inf coordinate": (
        ["BloodImage_00000.jpg,640,480,RBC,10,20,inf,70"],
        r"line 2, column 'xmax_px'",
    ),
    "inverted box": (["BloodImage_00000.jpg,640,480,RBC,60,20,10,70"], r"line 2: inverted box"),
    "zero width": (["BloodImage_00000.jpg,0,480,RBC,10,20,60,70"], r"line 2, column 'width'"),
    "empty class": (
        ["BloodImage_00000.jpg,640,480,,10,20,60,70"],
        r"line 2, column 'class': empty",
    ),
    "extra field": (
        ["BloodImage_00000.jpg,640,480,RBC,10,20,60,70,0.9"],
        r"line 2: 9 fields, the header has 8",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CSV))
def test_bad_box_csv_rows_name_file_line_and_column(tmp_path, case):
    rows, pattern = BAD_CSV[case]
    path = _csv(tmp_path, *rows)
    with pytest.raises(FileFormatError, match=rf"boxes\.csv, {pattern}"):
        read_boxes_csv(path)


def test_empty_csv_and_csv_without_the_columns(tmp_path):
    path = tmp_path / "boxes.csv"
    path.write_text("")
    with pytest.raises(FileFormatError, match=r"boxes\.csv: empty file; expected a header line"):
        read_boxes_csv(path)
    path.write_text("image,label,x,y\na.jpg,RBC,1,2\n")
    with pytest.raises(FileFormatError, match=r"boxes\.csv: missing column\(s\) \['filename'"):
        read_boxes_csv(path)
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(FileFormatError, match=r"boxes\.csv: not a text CSV"):
        read_boxes_csv(path)
    # blank lines, trailing commas and a header line only are fine
    path.write_text(f"{HEADER},\n\n{GOOD},\n")
    table = read_boxes_csv(path)
    assert list(table.columns) == COLUMNS
    assert table.values.tolist() == [["BloodImage_00000.jpg", 640, 480, "RBC", 10, 20, 60, 70]]
    path.write_text(HEADER + "\n")
    assert read_boxes_csv(path).empty


def test_short_csv_row_is_refused_by_convert_and_train(labelimg, tmp_path):
    """The reported case: a missing ymax became the image height and training went on."""
    path = _csv(tmp_path, GOOD, "BloodImage_00001.jpg,640,480,WBC,10,20,60")
    before = digest(tmp_path)
    proc = cytolens("detect", "convert", path, "--to", "coco", "--out", tmp_path / "b.json")
    one_line_error(proc, r"boxes\.csv, line 3, column 'ymax_px': no value")
    out = tmp_path / "model"
    proc = cytolens("detect", "train", "--images", labelimg, "--annotations", path, "--out", out)
    one_line_error(proc, r"boxes\.csv, line 3, column 'ymax_px': no value")
    assert not out.exists() and digest(tmp_path) == before


def _voc(tmp_path: Path, body: str, name: str = "a.xml") -> Path:
    path = tmp_path / name
    path.write_text(
        "<annotation><filename>a.jpg</filename><size><width>640</width><height>480</height>"
        f"</size>{body}</annotation>"
    )
    return path


def _obj(xmin="10", ymin="20", xmax="60", ymax="70", name="RBC") -> str:
    fields = {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax}
    box = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items() if v is not None)
    return f"<object><name>{name}</name><bndbox>{box}</bndbox></object>"


@pytest.mark.parametrize(
    ("body", "pattern"),
    [
        (_obj() + _obj(xmax="1e300"), r"object 2 \(RBC\) <xmax>: '1e300' is not a finite"),
        (_obj(ymin="abc"), r"object 1 \(RBC\) <ymin>: 'abc' is not a number"),
        (_obj(ymax=None), r"object 1 \(RBC\): <bndbox> has no <ymax>"),
        (_obj(xmin="NaN"), r"object 1 \(RBC\) <xmin>: 'NaN' is not a finite"),
        (_obj(xmin="90"), r"object 1 \(RBC\): inverted box"),
        ("<object><name>RBC</name></object>", r"object 1 \(RBC\) has no <bndbox>"),
        ("<object><bndbox/></object>", r"object 1: <object> has no <name>"),
    ],
)
def test_bad_voc_files_name_file_object_and_field(tmp_path, body, pattern):
    with pytest.raises(FileFormatError, match=rf"a\.xml: {pattern}"):
        read_voc(_voc(tmp_path, body))


def test_voc_sizes_and_files_that_are_not_xml(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(
        "<annotation><size><width>1e400</width><height>480</height></size></annotation>"
    )
    with pytest.raises(FileFormatError, match=r"a\.xml: <size> <width>: '1e400' is not a finite"):
        read_voc(path)
    path.write_text("<annotation><size><width>0</width><height>480</height></size></annotation>")
    with pytest.raises(FileFormatError, match=r"<width>: '0' is not an image size"):
        read_voc(path)
    path.write_bytes(b"\xff\xd8\xff\xe0 a JPEG named .xml")
    with pytest.raises(FileFormatError, match=r"a\.xml: not a Pascal VOC XML file"):
        read_voc(path)


def test_voc_coordinate_1e300_is_one_line_in_the_cli(tmp_path):
    path = _voc(tmp_path, _obj(xmax="1e300"))
    before = digest(tmp_path)
    proc = cytolens("detect", "convert", path, "--to", "csv", "--out", tmp_path / "b.csv")
    one_line_error(proc, r"a\.xml: object 1 \(RBC\) <xmax>: '1e300' is not a finite number")
    assert digest(tmp_path) == before


def test_bad_coco_entries_are_named(tmp_path):
    path = tmp_path / "c.json"
    good = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 640, "height": 480}],
        "categories": [{"id": 1, "name": "RBC"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 30, 40]}],
    }
    path.write_text(json.dumps(good))
    assert read_coco(path)[["xmin_px", "ymin_px", "xmax_px", "ymax_px"]].values.tolist() == [
        [1, 2, 31, 42]
    ]
    for bbox, pattern in [
        ([1, 2, "x", 40], r"annotations\[0\] 'bbox': 'x' is not a number"),
        ([1, 2, -30, 40], r"annotations\[0\]: 'bbox' .* negative width"),
        ([1, 2, 1e400, 40], r"annotations\[0\] 'bbox': inf is not a finite"),
        ([1, 2, 3], r"annotations\[0\]: 'bbox' is \[1, 2, 3\]"),
    ]:
        good["annotations"][0]["bbox"] = bbox
        path.write_text(json.dumps(good))
        with pytest.raises(FileFormatError, match=rf"c\.json: {pattern}"):
            read_coco(path)
    good["annotations"][0].update(bbox=[1, 2, 3, 4], image_id=7)
    path.write_text(json.dumps(good))
    with pytest.raises(FileFormatError, match=r"annotations\[0\]: image_id 7 is not in 'images'"):
        read_coco(path)
    path.write_text("[1, 2]")
    with pytest.raises(FileFormatError, match=r"c\.json: not COCO detection JSON"):
        read_coco(path)


def test_in_memory_tables_with_nan_and_one_image_of_two_sizes(tmp_path):
    table = pd.DataFrame([["a.jpg", 640, 480, "RBC", 10, 20, 60, np.nan]], columns=COLUMNS)
    with pytest.raises(InputError, match=r"a\.jpg: box 1 \(RBC\) has ymax_px nan"):
        validate_boxes(table)
    _csv(tmp_path, GOOD, "BloodImage_00000.jpg,320,240,RBC,1,2,3,4")
    with pytest.raises(InputError, match=r"BloodImage_00000\.jpg is given different sizes"):
        read_annotations(tmp_path / "boxes.csv")


def test_voc_output_refuses_two_images_with_one_stem(tmp_path):
    path = _csv(tmp_path, GOOD, "BloodImage_00000.png,640,480,RBC,1,2,3,4")
    proc = cytolens("detect", "convert", path, "--to", "voc", "--out", tmp_path / "voc")
    one_line_error(proc, r"would share one VOC file BloodImage_00000\.xml")
    assert not (tmp_path / "voc").exists()


# --- models: wrong capability, names and folders ------------------------------------------


def test_models_of_another_capability_are_refused_before_any_output(labelimg, tmp_path):
    out = tmp_path / "out" / "pred"
    proc = cytolens("detect", "predict", labelimg, "--out", out, "--model", "nuclei-v1")
    one_line_error(proc, r"model 'nuclei-v1' is a segment model .*not a detect model")
    proc = cytolens("detect", "train", "--images", labelimg, "--annotations", labelimg,
                    "--out", out, "--model", "hpa-v1")  # fmt: skip
    one_line_error(proc, r"model 'hpa-v1' is a classify model .*not a detect model")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (
            ["predict", "x.jpg", "--out", "o", "--min-score", "1.5"],
            r"'--min-score': must be between 0.0 and 1.0, got 1.5",
        ),
        (["predict", "x.jpg", "--out", "o", "--min-score", "nan"], r"'--min-score'"),
        (
            ["train", "--images", "i", "--annotations", "a", "--out", "o", "--steps", "0"],
            r"'--steps': must be at least 1, got 0",
        ),
        (
            ["train", "--images", "i", "--annotations", "a", "--out", "o", "--batch-size", "-2"],
            r"'--batch-size'",
        ),
        (
            ["train", "--images", "i", "--annotations", "a", "--out", "o", "--scale", "0"],
            r"'--scale': must be between 0.05 and 4.0",
        ),
    ],
)
def test_numeric_options_are_checked_at_the_command_line(tmp_path, args, pattern):
    proc = cytolens("detect", *args, cwd=tmp_path)
    one_line_error(proc, rf"Invalid value for {pattern}")
    assert not any(tmp_path.iterdir())


# --- train writes exactly the folder given; predict: a bad file fails alone ----------------


def test_train_into_dt_good_then_predict_a_batch_with_bad_files(labelimg, tmp_path):
    out = tmp_path / "o" / "dt_good"
    train = ["detect", "train", "--images", labelimg, "--annotations", labelimg, "--out", out,
             "--steps", "1", "--batch-size", "1", "--threads", "1"]  # fmt: skip
    proc = cytolens(*train)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["dt_good"]
    assert sorted(p.name for p in out.iterdir()) == ["card.yaml", "weights.pt"]
    assert "name: dt-good" in (out / "card.yaml").read_text()
    card = (out / "card.yaml").read_bytes()
    one_line_error(cytolens(*train), r"--out .*dt_good: already holds 2 file\(s\)")
    assert (out / "card.yaml").read_bytes() == card

    batch = tmp_path / "batch"
    batch.mkdir()
    for p in labelimg.glob("*.jpg"):
        shutil.copy(p, batch)
    jpeg = (batch / f"{STEMS[1]}.jpg").read_bytes()
    (batch / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 3])  # truncated
    (batch / "notes.png").write_text("not an image")  # wrong format
    tifffile.imwrite(batch / "stack.tif", np.zeros((6, 64, 64), np.uint8))  # a z-stack
    before = digest(batch)
    res = tmp_path / "pred"
    proc = cytolens("detect", "predict", batch, "--out", res, "--model", out, "--min-score", "0",
                    "--device", "cpu", "--json")  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    summary = json.loads(proc.stdout, parse_constant=lambda c: pytest.fail(f"not strict: {c}"))
    assert sorted(f["item"].rsplit("/", 1)[-1] for f in summary["failed"]) == [
        "cut.jpg", "notes.png", "stack.tif"]  # fmt: skip
    assert "3 of 5 input(s) failed" in proc.stderr
    failures = pd.read_csv(res / "failures.csv")
    assert len(failures) == 3 and failures["message"].str.contains("stack.tif").any()
    boxes = pd.read_csv(res / "boxes.csv")
    assert set(boxes["filename"]) == {f"{s}.jpg" for s in STEMS}
    assert "Failed inputs" in (res / "report.html").read_text()
    written = sorted(p.name for p in res.iterdir())
    assert not [n for n in written if n.startswith(("cut", "notes", "stack"))], written
    assert digest(batch) == before
    no_temporaries(tmp_path)


def test_bundled_sample_folder_keeps_its_labelimg_boxes(tmp_path):
    """The reported case on the bundled sample (no shared data needed): its 22 boxes stay."""
    folder = tmp_path / "sample"
    folder.mkdir()
    for name in ("blood_smear.jpg", "blood_smear.xml"):
        shutil.copy(sample_path(name), folder)
    before = digest(folder)
    proc = cytolens("detect", "predict", folder, "--out", folder, "--device", "cpu")
    one_line_error(proc, r"--out .*sample: holds the input .*blood_smear\.(jpg|xml)")
    assert digest(folder) == before and len(read_voc(folder / "blood_smear.xml")) == 22
    no_temporaries(tmp_path)
