"""Metrics shared by every task: instance matching, detection/segmentation/tracking scores."""

from cytolens.evaluate.calibration import (
    expected_calibration_error,
    fit_temperature,
    reliability,
    scale_temperature,
)
from cytolens.evaluate.classification import (
    classification_scores,
    per_class_f1,
    tune_thresholds,
)
from cytolens.evaluate.ctc import (
    AOGM_WEIGHTS,
    CTCMeasures,
    ctc_det,
    ctc_measures,
    ctc_seg,
    ctc_tra,
)
from cytolens.evaluate.matching import iou_matrix, match_instances, overlap_matrix
from cytolens.evaluate.segmentation import (
    DSB_THRESHOLDS,
    MatchCounts,
    average_precision,
    dsb_score,
    f1_score,
    match_counts,
    segmentation_scores,
)

__all__ = [
    "AOGM_WEIGHTS",
    "DSB_THRESHOLDS",
    "CTCMeasures",
    "MatchCounts",
    "average_precision",
    "classification_scores",
    "ctc_det",
    "ctc_measures",
    "ctc_seg",
    "ctc_tra",
    "dsb_score",
    "expected_calibration_error",
    "f1_score",
    "fit_temperature",
    "iou_matrix",
    "match_counts",
    "match_instances",
    "overlap_matrix",
    "per_class_f1",
    "reliability",
    "scale_temperature",
    "segmentation_scores",
    "tune_thresholds",
]
