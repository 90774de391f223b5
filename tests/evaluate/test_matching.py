"""Overlaps, IoU and matching on hand-made label images with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from cytolens.core.errors import InputError
from cytolens.evaluate import iou_matrix, match_instances, overlap_matrix


def test_iou_of_hand_made_objects():
    true = np.zeros((4, 6), np.uint16)
    true[:2, :2] = 1  # 4 px
    true[2:, 3:] = 7  # 6 px
    pred = np.zeros((4, 6), np.int32)
    pred[:2, :3] = 5  # 6 px, overlaps object 1 by 4 -> IoU 4/6
    pred[3, 3:] = 9  # 3 px, inside object 7 -> IoU 3/6
    iou, tids, pids = iou_matrix(true, pred)
    assert tids.tolist() == [1, 7] and pids.tolist() == [5, 9]
    np.testing.assert_allclose(iou, [[4 / 6, 0], [0, 0.5]])
    overlap, *_, tsz, psz = overlap_matrix(true, pred)
    assert overlap.tolist() == [[4, 0], [0, 3]]
    assert tsz.tolist() == [4, 6] and psz.tolist() == [6, 3]


def test_matching_respects_threshold_and_is_one_to_one():
    iou = np.array([[0.6, 0.55], [0.52, 0.1]])
    rows, cols = match_instances(iou, 0.5)
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 1), (1, 0)]
    rows, cols = match_instances(iou, 0.58)
    assert rows.tolist() == [0] and cols.tolist() == [0]


def test_empty_images_give_empty_results():
    iou, tids, pids = iou_matrix(np.zeros((3, 3), int), np.zeros((3, 3), int))
    assert iou.shape == (0, 0) and tids.size == 0 and pids.size == 0
    assert match_instances(iou)[0].size == 0


def test_bad_label_images_are_rejected():
    with pytest.raises(InputError, match="differ in shape"):
        iou_matrix(np.zeros((3, 3), int), np.zeros((3, 4), int))
    with pytest.raises(InputError, match="integer label image"):
        iou_matrix(np.zeros((3, 3)), np.zeros((3, 3), int))
    with pytest.raises(InputError, match="negative labels"):
        iou_matrix(-np.ones((3, 3), int), np.zeros((3, 3), int))
