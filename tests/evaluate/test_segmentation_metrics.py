"""AP, F1 and the DSB2018 score on hand-made label images with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from cytolens.core.errors import InputError
from cytolens.evaluate import (
    DSB_THRESHOLDS,
    average_precision,
    dsb_score,
    f1_score,
    match_counts,
    segmentation_scores,
)


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """Three true squares of 100 px; predictions with known IoUs, one split, one spurious."""
    true = np.zeros((40, 40), np.uint16)
    true[0:10, 0:10] = 1
    true[0:10, 20:30] = 2
    true[20:30, 0:10] = 3
    pred = np.zeros((40, 40), np.int32)
    pred[0:10, 0:10] = 11  # object 1 exact: IoU 1.0
    pred[0:10, 20:28] = 12  # object 2: 80 of 100 px -> IoU 0.8
    pred[20:30, 0:5] = 13  # object 3 split in halves: IoU 0.5 each
    pred[20:30, 5:10] = 14
    pred[35:40, 35:40] = 15  # nothing there
    return true, pred


def test_counts_at_known_thresholds():
    true, pred = _scene()
    c50, c55, c85 = match_counts(true, pred, [0.5, 0.55, 0.85])
    # at 0.5: objects 1, 2 and one half of 3 match; the other half and 15 are FP
    assert (c50.tp, c50.fp, c50.fn) == (3, 2, 0)
    assert (c55.tp, c55.fp, c55.fn) == (2, 3, 1)
    assert (c85.tp, c85.fp, c85.fn) == (1, 4, 2)


def test_ap_f1_and_dsb_score_values():
    true, pred = _scene()
    assert average_precision(true, pred, 0.5) == pytest.approx(3 / 5)
    assert f1_score(true, pred, 0.5) == pytest.approx(6 / 8)
    # AP per threshold: 0.5 -> 3/5; 0.55..0.8 (6 thresholds) -> 2/6; 0.85..0.95 (3) -> 1/7
    expected = (3 / 5 + 6 * (2 / 6) + 3 * (1 / 7)) / 10
    assert dsb_score(true, pred) == pytest.approx(expected)
    s = segmentation_scores(true, pred)
    assert s["n_true"] == 3 and s["n_pred"] == 5
    assert s["precision_50"] == pytest.approx(3 / 5) and s["recall_50"] == 1.0
    assert s["dsb_score"] == pytest.approx(expected)
    assert list(s["ap"]) == list(DSB_THRESHOLDS)


def test_perfect_and_empty_cases():
    true, _ = _scene()
    relabelled = np.where(true > 0, true + 100, 0)  # label values do not matter
    assert dsb_score(true, relabelled) == 1.0
    empty = np.zeros_like(true)
    assert average_precision(true, empty) == 0.0 and f1_score(true, empty) == 0.0
    assert average_precision(empty, true) == 0.0
    assert dsb_score(empty, empty) == 1.0  # nothing to find, nothing invented
    s = segmentation_scores(true, empty)
    assert s["precision_50"] == 0.0 and s["recall_50"] == 0.0


def test_threshold_is_inclusive():
    true = np.array([[1, 1, 1, 1]])
    pred = np.array([[1, 1, 0, 0]])  # IoU exactly 0.5
    assert average_precision(true, pred, 0.5) == 1.0
    assert average_precision(true, pred, 0.51) == 0.0


def test_bad_input_names_the_value():
    true, pred = _scene()
    with pytest.raises(InputError, match=r"1\.5"):
        average_precision(true, pred, 1.5)
    with pytest.raises(InputError, match="shape"):
        dsb_score(true, pred[:10])
    with pytest.raises(InputError, match=r"0\.5"):
        segmentation_scores(true, pred, thresholds=[0.75])
    with pytest.raises(InputError, match="integer"):
        f1_score(true.astype(float), pred)
