"""Evidence boxes against ground truth, beside the random and other-item baselines."""

from __future__ import annotations

import pytest

from ume.tcot.format import render_tcot
from ume.tcot.grounding import box_iou, grounding_scores

pytestmark = pytest.mark.unit


def _t(box):
    return render_tcot("x", "y", "z", {"bbox_2d": box} if box else None)


def test_iou():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)


def test_exact_boxes_beat_both_baselines_and_missing_boxes_score_zero():
    truth = [[[0, 0, 330, 330]], [[670, 670, 1000, 1000]], [[330, 0, 670, 330]], None]
    exact = grounding_scores([_t(g[0]) if g else "" for g in truth], truth)
    assert exact["boxes"] == 3 and exact["iou"] == 1.0 and exact["with_box"] == 1.0
    assert exact["iou_other_item"] == 0.0  # disjoint cells: another item's box misses
    assert 0.02 < exact["iou_random"] < 0.2
    missing = grounding_scores(["no evidence", _t(None), _t([0, 0, 330, 330])], truth[:3])
    assert missing["iou"] == pytest.approx(0.0) and missing["with_box"] == pytest.approx(1 / 3)
    # the first box counts, matched to the best ground-truth box of the item
    two = grounding_scores([_t([[670, 670, 1000, 1000], [0, 0, 330, 330]])], [truth[0] + truth[1]])
    assert two["iou"] == 1.0
    assert grounding_scores(["x"], [None]) == {"boxes": 0}
