"""CTC DET/SEG/TRA, link and division scores on hand-made cases with answers computed by hand.

Reference used below unless stated: two cells A (label 1) and B (label 2), 3 frames,
so |V| = 6 vertices and |E| = 4 track links; AOGM_0 = 10 * 6 + 1.5 * 4 = 66.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cytolens.core.errors import InputError
from cytolens.evaluate import AOGM_WEIGHTS, ctc_det, ctc_measures, ctc_seg, ctc_tra

A = (slice(1, 4), slice(1, 4))  # 9 px boxes
B = (slice(6, 9), slice(6, 9))


def table(rows):
    return pd.DataFrame(rows, columns=["label", "begin", "end", "parent"])


@pytest.fixture
def two_cells():
    gt = np.zeros((3, 10, 10), np.uint16)
    gt[(slice(None), *A)] = 1
    gt[(slice(None), *B)] = 2
    return gt, table([[1, 0, 2, 0], [2, 0, 2, 0]])


def test_weights_are_the_challenge_weights():
    assert AOGM_WEIGHTS == {"ns": 5, "fn": 10, "fp": 1, "ed": 1, "ea": 1.5, "ec": 1}


def test_perfect_result_scores_one(two_cells):
    gt, tracks = two_cells
    res = np.where(gt > 0, gt + 40, 0)  # other label values, same objects
    m = ctc_measures(gt, tracks, res, table([[41, 0, 2, 0], [42, 0, 2, 0]]), gt_seg=gt)
    assert (m.det, m.tra, m.seg) == (1.0, 1.0, 1.0)
    assert (m.link_precision, m.link_recall, m.division_f1) == (1.0, 1.0, 1.0)
    assert (m.n_vertices, m.n_edges, m.aogm_0) == (6, 4, 66.0)


def test_one_missed_object(two_cells):
    gt, tracks = two_cells
    res = gt.copy()
    res[1][res[1] == 2] = 0  # B missed in frame 1; its result track is cut in two
    res[2][res[2] == 2] = 3
    res_tracks = table([[1, 0, 2, 0], [2, 0, 0, 0], [3, 2, 2, 0]])
    m = ctc_measures(gt, tracks, res, res_tracks)
    assert (m.fn, m.fp, m.ea, m.ed, m.ec) == (1, 0, 2, 0, 0)
    assert m.det == pytest.approx(1 - 10 / 60)
    assert m.tra == pytest.approx(1 - (10 + 2 * 1.5) / 66)
    assert m.link_recall == pytest.approx(2 / 4) and m.link_precision == 1.0
    # closing the gap with a parent link adds an edge B0 -> B2 that the reference lacks
    gap = ctc_measures(gt, tracks, res, table([[1, 0, 2, 0], [2, 0, 0, 0], [3, 2, 2, 2]]))
    assert gap.ed == 1 and gap.tra == pytest.approx(1 - 14 / 66)


def test_one_wrong_link(two_cells):
    gt, tracks = two_cells
    res = gt.copy()
    res[2] = np.where(gt[2] == 1, 2, np.where(gt[2] == 2, 1, 0))  # identities swapped at t=2
    m = ctc_measures(gt, tracks, res, table([[1, 0, 2, 0], [2, 0, 2, 0]]))
    assert (m.ed, m.ea, m.ec, m.fn, m.fp) == (2, 2, 0, 0, 0)
    assert m.det == 1.0
    assert m.tra == pytest.approx(1 - (2 * 1 + 2 * 1.5) / 66)
    assert m.link_precision == pytest.approx(2 / 4) and m.link_recall == pytest.approx(2 / 4)


@pytest.fixture
def division():
    """Mother P (label 1) in frames 0-1 divides into C1 (2) and C2 (3) in frames 2-3."""
    gt = np.zeros((4, 10, 10), np.uint16)
    gt[0:2][(slice(None), slice(3, 6), slice(3, 6))] = 1
    gt[2:4][(slice(None), *A)] = 2
    gt[2:4][(slice(None), *B)] = 3
    return gt, table([[1, 0, 1, 0], [2, 2, 3, 1], [3, 2, 3, 1]])


def test_division_found(division):
    gt, tracks = division
    m = ctc_measures(gt, tracks, gt, tracks)
    # |V| = 6, |E| = P0-P1, C1 2-3, C2 2-3 and two parent links = 5
    assert (m.n_vertices, m.n_edges, m.n_divisions) == (6, 5, 1)
    assert m.tra == 1.0 and m.division_f1 == 1.0


def test_missed_division(division):
    gt, tracks = division
    res = gt.copy()
    res[res == 2] = 1  # the mother's track goes on into C1; C2 has no parent
    m = ctc_measures(gt, tracks, res, table([[1, 0, 3, 0], [3, 2, 3, 0]]))
    # P1 -> C1 is a track link instead of a parent link (EC); P1 -> C2 is missing (EA)
    assert (m.ec, m.ea, m.ed) == (1, 1, 0)
    assert m.tra == pytest.approx(1 - (1 + 1.5) / (60 + 1.5 * 5))
    assert (m.division_recall, m.division_precision, m.division_f1) == (0.0, 1.0, 0.0)
    # every result link joins the right objects; one of the five reference links is missing
    assert m.link_precision == 1.0 and m.link_recall == pytest.approx(4 / 5)


def test_spurious_division(two_cells):
    gt, tracks = two_cells
    res = gt.copy()
    res[1:][res[1:] == 1] = 3  # A's track ends at t=0 and continues as 3 ...
    res[1:][res[1:] == 2] = 4  # ... and B's as 4, both claimed daughters of A
    m = ctc_measures(
        gt, tracks, res, table([[1, 0, 0, 0], [2, 0, 0, 0], [3, 1, 2, 1], [4, 1, 2, 1]])
    )
    # A0 -> A1 is a parent link instead of a track link (EC); A0 -> B1 does not exist (ED);
    # B0 -> B1 is missing (EA)
    assert (m.ec, m.ed, m.ea) == (1, 1, 1)
    assert m.tra == pytest.approx(1 - (1 + 1 + 1.5) / 66)
    assert (m.division_precision, m.division_recall, m.division_f1) == (0.0, 1.0, 0.0)


def test_split_object(two_cells):
    gt, tracks = two_cells
    res = gt.copy()
    res[0, 1:4, 3] = 5  # A cut in frame 0: 6 px keep label 1 (> 50 %), 3 px become object 5
    m = ctc_measures(gt, tracks, res, table([[1, 0, 2, 0], [2, 0, 2, 0], [5, 0, 0, 0]]))
    assert (m.fp, m.fn, m.ns) == (1, 0, 0)
    assert m.det == pytest.approx(1 - 1 / 60) and m.tra == pytest.approx(1 - 1 / 66)
    # cut in halves neither piece covers more than half: A is missed, both pieces are FP
    halves = gt.copy()
    halves[0, 1:4, 1:4] = [[1, 1, 1], [1, 1, 6], [6, 6, 6]]  # 5 px vs 4 px: 1 still matches
    halves[0, 1:4, 1:4] = [[1, 1, 1], [1, 6, 6], [6, 6, 7]]  # 4, 4, 1 px: none matches
    h = ctc_measures(
        gt, tracks, halves, table([[1, 0, 2, 0], [2, 0, 2, 0], [6, 0, 0, 0], [7, 0, 0, 0]])
    )
    assert (h.fn, h.fp) == (1, 3)
    assert h.det == pytest.approx(1 - (10 + 3) / 60)


def test_merged_objects_cost_a_split_operation(two_cells):
    gt, tracks = two_cells
    res = gt.copy()
    res[1, 1:9, 1:9] = 1  # one object covers A and B in frame 1
    m = ctc_measures(gt, tracks, res, table([[1, 0, 2, 0], [2, 0, 2, 0]]))
    # NS = 1; edges through the merged vertex are not one-to-one: A0-A1, A1-A2, B0-B1, B1-B2 all
    # missing (EA = 4), and the result edges touching it are not judged
    assert (m.ns, m.fn, m.fp, m.ea, m.ed) == (1, 0, 0, 4, 0)
    assert m.det == pytest.approx(1 - 5 / 60)
    assert m.tra == pytest.approx(1 - (5 + 4 * 1.5) / 66)


def test_empty_result_scores_zero(two_cells):
    gt, tracks = two_cells
    empty = np.zeros_like(gt)
    m = ctc_measures(gt, tracks, empty, table([]))
    assert (m.det, m.tra) == (0.0, 0.0)
    assert m.aogm == m.aogm_0 == 66.0


def test_seg_by_hand():
    gt = np.zeros((1, 4, 8), np.uint16)
    gt[0, :, :4] = 1  # 16 px
    gt[0, :, 4:] = 2  # 16 px, matched by nothing
    res = np.zeros_like(gt)
    res[0, 1:, :5] = 9  # 12 px inside object 1 (> 8), 3 px outside: J = 12 / 19
    assert ctc_seg(gt, res) == pytest.approx((12 / 19 + 0) / 2)
    # a Mapping of annotated frames, as CTCSequence.seg_masks gives
    assert ctc_seg({0: gt[0]}, res) == pytest.approx((12 / 19) / 2)


def test_shortcuts_agree_with_full_measures(two_cells):
    gt, tracks = two_cells
    res = gt.copy()
    res[1][res[1] == 2] = 0
    full = ctc_measures(gt, tracks, res, None)
    assert ctc_det(gt, res) == full.det
    assert ctc_tra(gt, tracks, res, None) == full.tra


def test_bad_inputs_raise_input_error(two_cells):
    gt, tracks = two_cells
    with pytest.raises(InputError, match="shape"):
        ctc_measures(gt, tracks, gt[:2], tracks)
    with pytest.raises(InputError, match="float"):
        ctc_measures(gt, tracks, gt.astype(float), tracks)
    with pytest.raises(InputError, match="3-D or 4-D"):
        ctc_measures(gt[0], tracks, gt[0], tracks)
    with pytest.raises(InputError, match="lacks column"):
        ctc_measures(gt, tracks, gt, pd.DataFrame({"label": [1]}))
