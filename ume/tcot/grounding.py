"""How well T-CoT evidence boxes match ground-truth boxes, beside what chance gives.

A Reasoner that writes well-formed evidence may still point anywhere. Where items carry
ground-truth boxes (the synthetic data does: ``item.gt["boxes"]``, 0..1000), the IoU of the
T-CoT's first box with the best-matching ground-truth box says whether it looks at the right
place. Two baselines say what that number is worth:

* ``random``: boxes with corners drawn uniformly in 0..1000 (a Reasoner that writes any box);
* ``other_item``: the ground-truth box of *another* item of the same set (a Reasoner that has
  learnt where boxes usually are but does not look at its input).

A T-CoT without a usable box scores 0 (its evidence is missing, not neutral).

>>> box_iou((0, 0, 100, 100), (50, 0, 150, 100))
0.3333333333333333
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from ume.tcot.format import parse_tcot

Box = tuple[int, int, int, int] | Sequence[float]
RANDOM_DRAWS = 64  # uniform boxes per item for the random baseline


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _best(box: Box, truth: Sequence[Box]) -> float:
    return max((box_iou(box, g) for g in truth), default=0.0)


def _uniform_box(rng: random.Random) -> tuple[int, int, int, int]:
    x1, x2 = sorted(rng.sample(range(1001), 2))
    y1, y2 = sorted(rng.sample(range(1001), 2))
    return x1, y1, x2, y2


def grounding_scores(texts: Sequence[str], gt_boxes: Sequence[Any], seed: int = 0) -> dict:
    """Mean IoU of each text's first evidence box with its ground truth, and the baselines.

    ``gt_boxes``: per text, the ground-truth boxes (a list of [x1, y1, x2, y2]) or None/[]
    where the item has none (those texts are not counted).
    """
    rows = [(t, [tuple(b) for b in g]) for t, g in zip(texts, gt_boxes, strict=True) if g]
    if not rows:
        return {"boxes": 0}
    rng = random.Random(seed)
    iou, rand, other = [], [], []
    for k, (text, truth) in enumerate(rows):
        boxes = parse_tcot(text).evidence.boxes
        iou.append(_best(boxes[0], truth) if boxes else 0.0)
        rand.append(
            sum(_best(_uniform_box(rng), truth) for _ in range(RANDOM_DRAWS)) / RANDOM_DRAWS
        )
        if len(rows) > 1:  # the next item's first box (a derangement: never its own)
            other.append(_best(rows[(k + 1) % len(rows)][1][0], truth))
    n = len(rows)
    return {
        "boxes": n,
        "iou": sum(iou) / n,
        "iou_random": sum(rand) / n,
        "iou_other_item": sum(other) / len(other) if other else None,
        "with_box": sum(bool(parse_tcot(t).evidence.boxes) for t, _ in rows) / n,
    }
