"""The shipped detector, box ops and NMS, tiling, fine-tuning, classical baseline, CLI."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from cytolens import data
from cytolens.core.errors import InputError
from cytolens.detect import Detector, detect, detect_classical, validate_boxes
from cytolens.detect.boxes import batched_nms, box_iou, nms
from cytolens.detect.train import Example, TrainConfig, train_detector
from cytolens.evaluate.detection import box_iou_matrix, detection_scores

BCCD = "detection/bccd"


@pytest.fixture(scope="module")
def detector():
    return Detector.load(device="cpu")


def _random_boxes(n, seed):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 100, (n, 2))
    return torch.tensor(
        np.concatenate([xy, xy + rng.uniform(5, 40, (n, 2))], 1), dtype=torch.float32
    )


def test_box_iou_agrees_with_numpy_reference():
    a, b = _random_boxes(30, 0), _random_boxes(20, 1)
    np.testing.assert_allclose(
        box_iou(a, b).numpy(), box_iou_matrix(a.numpy(), b.numpy()), atol=1e-6
    )


@pytest.mark.parametrize("seed", range(3))
def test_nms_keeps_no_overlapping_pair_and_explains_every_drop(seed):
    boxes = _random_boxes(80, seed)
    scores = torch.rand(80, generator=torch.Generator().manual_seed(seed))
    keep = nms(boxes, scores, 0.4)
    iou = box_iou(boxes, boxes)
    kept = set(keep.tolist())
    assert all(iou[i, j] <= 0.4 for i in kept for j in kept if i != j)
    for d in set(range(80)) - kept:  # dropped: overlaps a kept box with a higher score
        assert any(iou[d, k] > 0.4 and scores[k] >= scores[d] for k in kept)
    assert scores[keep].tolist() == sorted(scores[keep].tolist(), reverse=True)


def test_batched_nms_never_mixes_classes():
    boxes = _random_boxes(1, 0).repeat(3, 1)
    keep = batched_nms(boxes, torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 1, 0]))
    assert sorted(keep.tolist()) == [0, 1]


def test_card_and_sample_detection(detector):
    assert detector.classes == ["RBC", "WBC", "Platelets"]
    assert detector.card.metrics["val_map50"] > 0.5
    image = data.blood_smear()
    boxes = detect(image, model=detector)
    assert (boxes["score"] >= 0.7).all()
    assert (boxes["xmin_px"] >= 0).all() and (boxes["xmax_px"] <= 640).all()
    truth = validate_boxes(data.blood_smear_boxes())[0]
    scores = detection_scores(boxes.assign(filename=truth["filename"].iloc[0]), truth)
    assert scores["per_class"]["WBC"]["ap50"] == 1.0  # the one white cell, found and alone
    assert scores["map50"] > 0.6


def test_large_image_is_tiled_and_each_object_reported_once(detector):
    image = np.asarray(data.blood_smear().data)
    single = detector.predict(image)
    mosaic = (
        np.block([[image, image], [image, image]])
        if image.ndim == 2
        else np.concatenate(
            [np.concatenate([image, image], 1), np.concatenate([image, image], 1)], 0
        )
    )
    tiled = detector.predict(mosaic, tile_size=256)  # 480x640 at scale 0.5: several tiles
    counts = tiled["class"].value_counts()
    for cls, n in single["class"].value_counts().items():
        assert abs(counts.get(cls, 0) - 4 * n) <= max(2, 0.15 * 4 * n), cls


def test_bad_input(detector):
    with pytest.raises(InputError, match=r"2 channel\(s\).*expects 3"):
        detector.predict(np.zeros((64, 64, 2)))
    with pytest.raises(InputError, match="min_score"):
        detector.predict(np.zeros((64, 64, 3)), min_score=1.5)


def test_fine_tuning_replaces_the_class_head(detector):
    img = np.zeros((3, 64, 64), np.float32)
    img[:, 20:44, 20:44] = 1.0
    ex = Example(img, np.array([[20, 20, 44, 44, 0]], np.float32), "square")
    cfg = TrainConfig(steps=2, batch_size=2, crop=64, width=16, threads=1)
    net = train_detector([ex], ["square"], config=cfg, initial=detector.net)
    assert net.heat[-1].out_channels == 1
    # the backbone starts from the shipped weights (changed only by two small steps)
    w0 = detector.net.stages[0][0][0].weight
    assert torch.allclose(net.stages[0][0][0].weight, w0, atol=0.05)
    # three classes again, but other names: the head must not be reused
    cfg = TrainConfig(steps=1, batch_size=1, crop=64, width=16, lr=1e-9, threads=1)
    names = ["a", "b", "c"]
    same = train_detector([ex], detector.classes, config=cfg, initial=detector.net,
                          initial_classes=detector.classes)  # fmt: skip
    other = train_detector([ex], names, config=cfg, initial=detector.net,
                           initial_classes=detector.classes)  # fmt: skip
    head = detector.net.heat[-1].weight
    assert torch.allclose(same.heat[-1].weight, head, atol=1e-6)
    assert not torch.allclose(other.heat[-1].weight, head, atol=1e-3)


def test_score_calibration_keeps_ranking_and_moves_the_pivot_to_the_default():
    from cytolens.detect.model import calibrate_score
    from cytolens.detect.train import fit_score_pivots

    raw = np.linspace(0, 1, 101)
    cal = calibrate_score(raw, pivot=0.3)
    assert np.all(np.diff(cal) > 0) and cal[0] == 0 and cal[-1] == pytest.approx(1)
    assert calibrate_score(0.3, pivot=0.3) == pytest.approx(0.7)
    with pytest.raises(InputError, match="pivot"):
        calibrate_score(raw, pivot=1.0)
    # 4 true boxes; predictions: 3 hits at 0.5, 0.45, 0.4 then misses below -> pivot 0.4
    truth = pd.DataFrame({"filename": "a", "class": "c", "xmin_px": [0, 20, 40, 60],
                          "ymin_px": 0, "xmax_px": [10, 30, 50, 70], "ymax_px": 10})  # fmt: skip
    hits = truth.iloc[:3].assign(score=[0.5, 0.45, 0.4])
    misses = pd.DataFrame({"filename": "a", "class": "c", "xmin_px": [100, 120], "ymin_px": 0,
                           "xmax_px": [110, 130], "ymax_px": 10, "score": [0.2, 0.1]})  # fmt: skip
    pivots = fit_score_pivots(pd.concat([hits, misses]), truth, ["c", "d"])
    assert pivots == {"c": 0.4, "d": 0.5}


def test_classical_baseline_on_the_sample():
    boxes = detect_classical(data.blood_smear().data)
    truth = validate_boxes(data.blood_smear_boxes())[0]
    scores = detection_scores(boxes.assign(filename=truth["filename"].iloc[0]), truth)
    assert set(boxes["class"]) <= {"RBC", "WBC", "Platelets"}
    assert scores["per_class"]["WBC"]["ap50"] == 1.0
    with pytest.raises(InputError, match="RGB"):
        detect_classical(np.zeros((10, 10)))


def test_cli_convert_predict_train(shared_data, tmp_path):
    from cytolens.detect.cli import app

    src = shared_data / BCCD
    ann, images = tmp_path / "ann", tmp_path / "images"
    ann.mkdir()
    images.mkdir()
    stems = ["BloodImage_00000", "BloodImage_00001", "BloodImage_00002"]
    for stem in stems:
        shutil.copy(src / "Annotations" / f"{stem}.xml", ann)
        shutil.copy(src / "JPEGImages" / f"{stem}.jpg", images)
    runner = CliRunner()
    res = runner.invoke(app, ["convert", str(ann), "--to", "csv", "--out", str(tmp_path / "b.csv")])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(tmp_path / "b.csv")
    assert table["filename"].nunique() == 3
    res = runner.invoke(
        app, ["convert", str(tmp_path / "b.csv"), "--to", "voc", "--out", str(tmp_path / "voc")]
    )
    assert res.exit_code == 0 and len(list((tmp_path / "voc").glob("*.xml"))) == 3

    out = tmp_path / "pred"
    res = runner.invoke(app, ["predict", str(images), "--out", str(out), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    boxes = pd.read_csv(out / "boxes.csv")
    assert set(boxes["filename"]) == {f"{s}.jpg" for s in stems} and (boxes["score"] >= 0.7).all()
    assert (out / "BloodImage_00000.xml").exists() and (out / "BloodImage_00000_boxes.png").exists()
    assert (out / "report.html").exists()

    res = runner.invoke(
        app,
        ["train", "--images", str(images), "--annotations", str(ann), "--out",
         str(tmp_path / "my_model"), "--steps", "2", "--batch-size", "2", "--threads", "1"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    tuned = Detector.load(tmp_path / "my_model", device="cpu")  # the folder as given
    assert tuned.classes == ["RBC", "WBC", "Platelets"]  # known classes keep the base head
    assert set(tuned.card.parameters["score_pivots"]) == set(tuned.classes)
    assert len(tuned.predict(np.asarray(data.blood_smear().data), min_score=0.0)) > 0
