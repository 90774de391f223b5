"""COCO-style detection AP on hand-made cases with answers worked out by hand."""

import numpy as np
import pandas as pd
import pytest

from cytolens.core.errors import InputError
from cytolens.evaluate.detection import box_iou_matrix, detection_ap, detection_scores


def _table(rows, score=False):
    cols = ["filename", "class", "xmin_px", "ymin_px", "xmax_px", "ymax_px"] + (
        ["score"] if score else []
    )
    return pd.DataFrame(rows, columns=cols)


TRUTH = _table([("a", "c", 0, 0, 10, 10), ("a", "c", 20, 0, 30, 10), ("b", "c", 0, 0, 10, 10)])


def test_perfect_predictions_score_one_at_every_threshold():
    pred = TRUTH.assign(score=[0.9, 0.8, 0.7])
    s = detection_scores(pred, TRUTH)
    assert s["map50"] == 1.0 and s["map50_95"] == 1.0
    assert s["per_class"]["c"]["n_truth"] == 3


def test_false_positive_ranked_first():
    # ranking: FP (0.95), TP, TP, TP -> precision 0, 1/2, 2/3, 3/4 at recall 0, 1/3, 2/3, 1;
    # monotone envelope 3/4 everywhere -> AP = 0.75
    fp = ("b", "c", 50, 50, 60, 60, 0.95)
    pred = _table(
        [fp] + [(*r, s) for r, s in zip(TRUTH.values.tolist(), [0.9, 0.8, 0.7], strict=True)], True
    )
    assert detection_ap(pred, TRUTH)["c"] == pytest.approx(0.75)


def test_duplicate_box_is_a_false_positive_and_images_do_not_mix():
    pred = _table(
        [
            ("a", "c", 0, 0, 10, 10, 0.9),
            ("a", "c", 0, 0, 10, 10, 0.85),  # duplicate: FP
            ("a", "c", 20, 0, 30, 10, 0.8),
            ("c", "c", 0, 0, 10, 10, 0.7),  # right place, wrong image: FP
        ],
        True,
    )
    # TP, FP, TP, FP: precision envelope 1 up to recall 1/3, 2/3 up to 2/3, never reaches 1
    ap = detection_ap(pred, TRUTH)["c"]
    expected = (34 * 1.0 + 33 * (2 / 3)) / 101  # recall points 0..0.33 and 0.34..0.66
    assert ap == pytest.approx(expected)


def test_iou_thresholds_and_classes_are_separate():
    truth = _table([("a", "p", 0, 0, 10, 10), ("a", "q", 0, 0, 10, 10)])
    pred = _table([("a", "p", 0, 0, 10, 7, 0.9), ("a", "q", 0, 0, 10, 10, 0.9)], True)
    s = detection_scores(pred, truth)
    assert s["per_class"]["p"]["ap50"] == 1.0
    assert s["per_class"]["p"]["ap50_95"] == pytest.approx(0.5)  # IoU 0.7: 5 of 10 thresholds
    assert s["per_class"]["q"]["ap50_95"] == 1.0
    assert s["map50_95"] == pytest.approx(0.75)


def test_class_without_predictions_scores_zero():
    pred = _table([("a", "other", 0, 0, 10, 10, 0.9)], True)
    assert detection_ap(pred, TRUTH) == {"c": 0.0}


def test_box_iou_matrix_matches_areas():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, (20, 2))
    a = np.concatenate([xy, xy + rng.uniform(1, 20, (20, 2))], axis=1)
    iou = box_iou_matrix(a, a)
    np.testing.assert_allclose(np.diag(iou), 1.0)
    assert (iou >= 0).all() and (iou <= 1 + 1e-12).all()
    np.testing.assert_allclose(iou, iou.T)


def test_bad_input():
    with pytest.raises(InputError, match="score"):
        detection_ap(TRUTH, TRUTH)
    with pytest.raises(InputError, match="iou_threshold"):
        detection_ap(TRUTH.assign(score=1.0), TRUTH, iou_threshold=0)
