"""HPA labels and the multi-label scores of cytolens.evaluate.classification."""

from __future__ import annotations

import numpy as np
import pytest

from cytolens.classify.hpa import CLASS_NAMES, parse_targets, read_labels, targets_to_matrix
from cytolens.core.errors import FileFormatError, InputError, MissingFileError
from cytolens.evaluate import classification_scores, per_class_f1, tune_thresholds


def test_class_names_match_the_readme():
    assert len(CLASS_NAMES) == 28
    assert CLASS_NAMES[2] == "Nucleoli" and CLASS_NAMES[27] == "Rods & rings"


@pytest.mark.parametrize(("target", "msg"), [("3 x", "space-separated"), ("28", "outside 0-27")])
def test_parse_targets_rejects_bad_entries(target, msg):
    with pytest.raises(InputError, match=msg):
        parse_targets(target, where="labels.csv row 5")


def test_read_labels_errors_name_the_file(tmp_path):
    with pytest.raises(MissingFileError, match=r"nope\.csv"):
        read_labels(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("Name,Target\na,1\n")
    with pytest.raises(FileFormatError, match=r"missing column.*Id"):
        read_labels(bad)
    dup = tmp_path / "dup.csv"
    dup.write_text("Id,Target\na,1\na,2\n")
    with pytest.raises(InputError, match="duplicate Id 'a'"):
        read_labels(dup)
    row = tmp_path / "row.csv"
    row.write_text("Id,Target\na,1\nb,40\n")
    with pytest.raises(InputError, match="row 3"):
        read_labels(row)


def test_per_class_f1_matches_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    t = rng.random((40, 6)) < 0.3
    p = rng.random((40, 6)) < 0.3
    ours = per_class_f1(t, p)["f1"].to_numpy()
    ref = sklearn_metrics.f1_score(t, p, average=None, zero_division=0)
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    micro = sklearn_metrics.f1_score(t, p, average="micro")
    assert classification_scores(t, p)["micro_f1"] == pytest.approx(micro)


def test_macro_f1_is_over_present_classes_only():
    t = targets_to_matrix([[0], [0, 1], []])
    p = targets_to_matrix([[0], [0], [5]])  # class 1 missed, class 5 a false positive
    s = classification_scores(t, p)
    assert s["n_classes_present"] == 2
    assert s["macro_f1"] == pytest.approx(0.5)  # (1 + 0) / 2
    # over all 28: 26 absent classes never predicted count 1, absent class 5 predicted counts 0
    assert s["macro_f1_all"] == pytest.approx((1 + 0 + 0 + 25) / 28)


def test_tune_thresholds_finds_the_separating_value_and_defaults_rare_classes():
    prob = np.array([[0.9, 0.3], [0.35, 0.1], [0.3, 0.2], [0.1, 0.8]])
    truth = np.array([[1, 0], [1, 0], [0, 0], [0, 1]])
    t = tune_thresholds(prob, truth, grid=[0.2, 0.32, 0.5, 0.7], default=0.42, min_support=2)
    assert t[0] == 0.32  # only 0.32 keeps both positives and drops the 0.3 negative
    assert t[1] == 0.42  # one positive: the default
    with pytest.raises(InputError, match="same shape"):
        per_class_f1(np.zeros((3, 2)), np.zeros((3, 3)))


def test_nucleolar_probability_takes_per_sample_thresholds():
    from cytolens.classify import nucleolar_probability

    rng = np.random.default_rng(0)
    p, t = rng.uniform(0.05, 0.95, (5, 28)), rng.uniform(0.1, 0.9, (5, 28))
    rowwise = [float(nucleolar_probability(pi, ti)) for pi, ti in zip(p, t, strict=True)]
    np.testing.assert_allclose(nucleolar_probability(p, t), rowwise)
    # at 0.5 exactly when the most confident group class sits at its threshold
    t2 = t.copy()
    t2[:, 2:6] = p[:, 2:6].max(axis=1, keepdims=True)
    assert (nucleolar_probability(p, t2) >= 0.5).all()


def test_score_predictions_nucleolar_group():
    from cytolens.classify.train import score_predictions

    y = np.zeros((4, 28), np.uint8)
    y[0, 2] = y[1, 4] = 1  # two nucleolar images, two without
    p = np.full((4, 28), 0.1)
    p[0, 3] = 0.9  # a different group class still counts for the group
    p[2, 5] = 0.9  # false group call
    s = score_predictions(y, p, np.full(28, 0.5))
    assert s["nucleolar_support"] == 2
    assert s["nucleolar_f1"] == pytest.approx(0.5)  # tp 1, fp 1, fn 1
