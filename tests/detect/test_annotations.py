"""Box annotation I/O: VOC, CSV and COCO round trips, validation, clear errors; real BCCD files."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from cytolens.core.errors import FileFormatError, InputError, MissingFileError
from cytolens.detect import (
    COLUMNS,
    read_annotations,
    read_boxes_csv,
    read_coco,
    read_voc,
    validate_boxes,
    write_boxes_csv,
    write_coco,
    write_voc,
)

BCCD = "detection/bccd"


def _table():
    return pd.DataFrame(
        [
            ["a.jpg", 640, 480, "RBC", 10, 20, 110, 120],
            ["a.jpg", 640, 480, "WBC", 300, 200, 500, 400],
            ["b.jpg", 320, 240, "Platelets", 5, 5, 40, 40],
        ],
        columns=COLUMNS,
    )


def test_voc_csv_coco_round_trips(tmp_path):
    table = _table()
    for name, rows in table.groupby("filename"):
        r = rows.iloc[0]
        write_voc(rows, tmp_path / f"{name}.xml", filename=name, width=r.width, height=r.height)
    back = read_annotations(tmp_path)
    pd.testing.assert_frame_equal(back, table)
    write_boxes_csv(table, tmp_path / "boxes.csv")
    pd.testing.assert_frame_equal(read_boxes_csv(tmp_path / "boxes.csv"), table)
    write_coco(table, tmp_path / "boxes.json")
    pd.testing.assert_frame_equal(read_coco(tmp_path / "boxes.json"), table)


def test_boxes_csv_of_an_earlier_version_is_read_with_unit_names(tmp_path):
    table = _table().assign(score=0.5)
    old = table.rename(
        columns=dict(zip(COLUMNS[4:], ["xmin", "ymin", "xmax", "ymax"], strict=True))
    )
    old.to_csv(tmp_path / "old.csv", index=False)  # as earlier versions wrote boxes.csv
    back = read_boxes_csv(tmp_path / "old.csv")
    pd.testing.assert_frame_equal(back, table)
    pd.testing.assert_frame_equal(read_annotations(tmp_path / "old.csv"), table)
    # messages name the file's own column
    (tmp_path / "bad.csv").write_text(
        "filename,width,height,class,xmin,ymin,xmax,ymax\na.jpg,640,480,RBC,1,x,5,6\n"
    )
    with pytest.raises(FileFormatError, match="line 2, column 'ymin': 'x' is not a number"):
        read_boxes_csv(tmp_path / "bad.csv")
    write_boxes_csv(back, tmp_path / "new.csv")
    assert (tmp_path / "new.csv").read_text().splitlines()[0] == (
        "filename,width,height,class,xmin_px,ymin_px,xmax_px,ymax_px,score"
    )


def test_scores_survive_voc_and_labelimg_fields_are_written(tmp_path):
    boxes = (
        _table().iloc[:1][["class", "xmin_px", "ymin_px", "xmax_px", "ymax_px"]].assign(score=0.93)
    )
    path = write_voc(boxes, tmp_path / "p.xml", filename="a.jpg", width=640, height=480)
    text = path.read_text()
    for tag in ("<filename>a.jpg</filename>", "<depth>3</depth>", "<score>0.9300</score>"):
        assert tag in text
    assert read_voc(path)["xmax_px"].tolist() == [110]


def test_validation_clips_drops_and_reports():
    table = pd.DataFrame(
        [
            ["a.jpg", 100, 80, "RBC", -5, 10, 40, 50],  # clipped
            ["a.jpg", 100, 80, "RBC", 30, 30, 30, 60],  # empty: dropped
            ["a.jpg", 100, 80, "RBC", 120, 10, 150, 50],  # outside: dropped
            ["a.jpg", 100, 80, "RBC", 10, 10, 20, 20],  # fine
        ],
        columns=COLUMNS,
    )
    fixed, problems = validate_boxes(table, classes=["RBC"])
    assert len(fixed) == 2 and fixed["xmin_px"].tolist() == [0, 10]
    assert len(problems) == 3 and all(p.startswith("a.jpg: RBC box") for p in problems)
    with pytest.raises(InputError, match=r"a.jpg: RBC box \(-5, 10, 40, 50\).*and 2 more"):
        validate_boxes(table, strict=True)
    with pytest.raises(InputError, match=r"unknown class\(es\) \['RBC'\].*knows \['WBC'\]"):
        validate_boxes(table, classes=["WBC"])


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(MissingFileError, match=r"nothing.xml"):
        read_voc(tmp_path / "nothing.xml")
    (tmp_path / "bad.xml").write_text("<annotation><object>")
    with pytest.raises(FileFormatError, match=r"bad.xml: not a Pascal VOC"):
        read_voc(tmp_path / "bad.xml")
    (tmp_path / "nosize.xml").write_text("<annotation><filename>x.jpg</filename></annotation>")
    with pytest.raises(FileFormatError, match=r"nosize.xml: no <size>"):
        read_voc(tmp_path / "nosize.xml")
    (tmp_path / "t.csv").write_text("filename,class\na.jpg,RBC\n")
    with pytest.raises(FileFormatError, match=r"t.csv: missing column\(s\)"):
        read_boxes_csv(tmp_path / "t.csv")
    (tmp_path / "c.json").write_text('{"images": []}')
    with pytest.raises(FileFormatError, match=r"c.json: not COCO"):
        read_coco(tmp_path / "c.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingFileError, match="no Pascal VOC"):
        read_annotations(tmp_path / "empty")


def test_real_bccd_annotations_read_and_validate(shared_data):
    table = read_annotations(shared_data / BCCD / "Annotations")
    assert table["filename"].nunique() == 292
    assert set(table["class"]) == {"RBC", "WBC", "Platelets"}
    fixed, problems = validate_boxes(table, classes=["RBC", "WBC", "Platelets"])
    # the source has zero-size boxes and boxes crossing the image border: reported, not fatal
    assert problems and len(fixed) == len(table) - sum("dropped" in p for p in problems)
    assert (fixed["xmax_px"] <= fixed["width"]).all() and (
        fixed["xmin_px"] < fixed["xmax_px"]
    ).all()


def test_missing_image_is_named(shared_data, tmp_path):
    src = shared_data / BCCD
    for stem in ("BloodImage_00000", "BloodImage_00001"):
        shutil.copy(src / "Annotations" / f"{stem}.xml", tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(src / "JPEGImages" / "BloodImage_00000.jpg", images)
    with pytest.raises(MissingFileError, match=r"BloodImage_00001.jpg: annotated image not found"):
        read_annotations(tmp_path, images=images)
