"""The ``detect.boxes`` pipeline step: its boxes table and row, in a pipeline and on its own."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from cytolens import data
from cytolens.core.errors import InputError
from cytolens.detect.model import Detector
from cytolens.detect.steps import BOX_TABLE, DetectBoxes
from cytolens.pipeline import Item, make_step, make_steps, run_pipeline


def test_step_gives_the_detectors_boxes_and_counts():
    image = data.blood_smear()
    item = Item(data.sample_path("blood_smear.jpg"), "smear", image)
    DetectBoxes({"min_score": 0.5, "device": "cpu"}).run(item)
    det = Detector.load("detect-bccd-v1", device="cpu")
    direct = det.predict(image, min_score=0.5)
    table = item.tables[BOX_TABLE]
    assert list(table.columns) == [
        "image", "class", "xmin_px", "ymin_px", "xmax_px", "ymax_px", "score"
    ]  # fmt: skip
    assert (table["image"] == "smear").all()
    pd.testing.assert_frame_equal(table.drop(columns="image"), direct.reset_index(drop=True))
    assert item.row["boxes"] == len(direct) > 10
    for c in det.classes:
        assert item.row[f"n {c}"] == int((direct["class"] == c).sum())
    assert {"ood_score", "in_domain"} <= set(item.row)
    assert item.row["in_domain"] is True


def test_step_parameters_are_checked():
    with pytest.raises(InputError, match="min_score: Input should be less than or equal to 1"):
        make_step("detect.boxes", {"min_score": 2})
    with pytest.raises(InputError, match="threshold: Extra inputs"):
        make_step("detect.boxes", {"threshold": 0.5})
    assert make_step("detect.boxes").models()[0]["name"] == "detect-bccd-v1"


def test_pipeline_writes_the_boxes_table(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(data.sample_path("blood_smear.jpg"), src / "a.jpg")
    shutil.copy(data.sample_path("blood_smear.jpg"), src / "b.jpg")
    out = tmp_path / "out"
    steps = make_steps([("detect.boxes", {"device": "cpu"})])
    result = run_pipeline([src], steps, out, progress=False, report=False)
    assert [r["status"] for r in result.records] == ["done", "done"]
    boxes = pd.read_csv(out / "boxes.csv")
    assert {"image", "class", "xmin_px", "ymin_px", "xmax_px", "ymax_px", "score"} <= set(boxes)
    assert (boxes["score"] >= 0.7).all()  # the card's threshold
    items = pd.read_csv(out / "items.csv").set_index("name")
    for name in ("a", "b"):
        assert items.loc[name, "boxes"] == (boxes["image"] == name).sum() > 10
        assert items.loc[name, "n WBC"] == 1
