import numpy as np
import pytest

from cytolens.core.errors import InputError
from cytolens.evaluate import (
    expected_calibration_error,
    fit_temperature,
    reliability,
    scale_temperature,
)


def _sampled(n=20000, k=5, sharpness=2.0, seed=0):
    """Predictions whose labels are drawn from the predicted distribution: calibrated."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, sharpness, (n, k))
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return p, labels


def test_calibrated_predictions_have_small_ece_and_unit_temperature():
    p, y = _sampled()
    assert expected_calibration_error(p, y, n_bins=15) < 0.015
    assert fit_temperature(p, y) == pytest.approx(1.0, abs=0.05)


def test_overconfident_predictions_are_detected_and_fixed_by_temperature():
    p, y = _sampled()
    over = scale_temperature(p, 0.4)  # same argmax, much too sure
    assert expected_calibration_error(over, y) > 0.1
    t = fit_temperature(over, y)
    assert t == pytest.approx(2.5, rel=0.1)  # undoes the 0.4
    fixed = scale_temperature(over, t)
    assert expected_calibration_error(fixed, y) < 0.02
    np.testing.assert_array_equal(fixed.argmax(axis=1), over.argmax(axis=1))


def test_reliability_bins_by_hand():
    p = np.array([[1.0, 0.0], [0.55, 0.45], [0.45, 0.55], [0.95, 0.05]])
    table = reliability(p, np.array([0, 1, 1, 0]), n_bins=2)
    # confidences 1.0, 0.55, 0.55, 0.95 all fall in the upper bin; 3 of 4 right
    assert table["count"].tolist() == [4]
    assert table["accuracy"].tolist() == [0.75]
    assert table["confidence"].iloc[0] == pytest.approx(0.7625)


@pytest.mark.parametrize(
    ("probs", "labels", "match"),
    [
        (np.zeros((0, 3)), np.zeros(0, int), "N > 0"),
        (np.full((2, 3), 1 / 3), np.array([0, 3]), r"\[0, 2\]"),
        (np.full((2, 3), 1 / 3), np.array([0.0, 1.0]), "integer"),
        (np.full((2, 3), np.nan), np.array([0, 1]), "finite"),
    ],
)
def test_bad_input(probs, labels, match):
    with pytest.raises(InputError, match=match):
        expected_calibration_error(probs, labels)
