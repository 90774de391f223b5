"""Metrics shared by every task: instance matching, detection/segmentation/tracking scores."""

from cytolens.evaluate.matching import iou_matrix, match_instances, overlap_matrix

__all__ = ["iou_matrix", "match_instances", "overlap_matrix"]
