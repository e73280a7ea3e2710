"""GRPO rewards: plain functions of (parsed prediction, ground-truth regions) → a float in [0, 1].

Every geometric reward has the same form, the paper's Eq. 4 read one-to-one: predictions and
ground truth of the same phrase are paired one-to-one (best quality first), each pair scores its
quality q (IoU, a point hit, OKS, …), and the reward is the F1 of
    precision = Σq / #predictions   and   recall = Σq / #ground truth.
Because pairing is one-to-one, a duplicate box finds no partner and scores 0, so duplicates lower
precision. The released reward code takes each prediction's best IoU without that constraint,
which leaves duplicates unpunished; this is the deliberate difference.
An answer with no prediction for an image with no ground truth (a correct rejection, every asked
phrase answered `None`) scores 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from ..errors import InputError
from ..geometry import box_area, box_iou, inside, oks, one_to_one, point_of, region_iou
from ..regions import Box, Keypoints, Polygon, Prediction, Region, group_by_phrase
from ..tasks import TASKS, Task
from ..text_similarity import text_of

Quality = Callable[[Region, Region], float]
Reward = Callable[[Prediction, Sequence[Region]], float]


def matched_f1(predictions: Sequence[Region], truth: Sequence[Region], quality: Quality) -> float:
    """F1 of Σq/#pred and Σq/#truth over one-to-one pairs of the same phrase."""
    if not predictions and not truth:
        return 1.0
    if not predictions or not truth:
        return 0.0
    predicted, expected = group_by_phrase(predictions), group_by_phrase(truth)
    total = 0.0
    for phrase in predicted.keys() & expected.keys():
        grid = np.array([[quality(p, t) for t in expected[phrase]] for p in predicted[phrase]])
        total += sum(q for _, _, q in one_to_one(grid))
    precision, recall = total / len(predictions), total / len(truth)
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def box_reward(prediction: Prediction, truth: Sequence[Box]) -> float:
    """Box IoU reward (Eq. 4, one-to-one)."""
    boxes = [r for r in prediction.regions if r.kind == "box"]
    return matched_f1(boxes, truth, lambda p, t: box_iou(p.coords, t.coords))


def point_reward(prediction: Prediction, truth: Sequence[Box | Polygon]) -> float:
    """A point scores 1 inside a still-unpaired GT region of its phrase: its mask (Polygon) or
    its box (Box). A box answer stands for its centre."""
    points = [r for r in prediction.regions if r.kind in ("point", "box")]
    return matched_f1(points, truth, lambda p, t: float(inside(point_of(p), t)))


def _as_texts(regions: Iterable[Region]) -> list[Region]:
    """OCR regions under one shared phrase, keeping their text for the match."""
    return [type(r)("text", r.coords, text=text_of(r)) for r in regions]


def ocr_reward(prediction: Prediction, truth: Sequence[Box | Polygon]) -> float:
    """IoU × exact text match: a well-placed region with the wrong text scores 0.

    OCR answers put each text in its own group with the text as the phrase, so pairing runs
    across all texts (the text match decides), not within a phrase.
    """
    regions = [r for r in prediction.regions if r.kind in ("box", "polygon")]
    return matched_f1(
        _as_texts(regions), _as_texts(truth), lambda p, t: region_iou(p, t) * float(p.text == t.text)
    )


def keypoint_reward(prediction: Prediction, truth: Sequence[Keypoints]) -> float:
    """OKS with COCO sigmas, the GT box area as scale."""
    instances = [r for r in prediction.regions if r.kind == "keypoints"]
    return matched_f1(instances, truth, lambda p, t: oks(p, t, box_area(t)))


def format_reward(prediction: Prediction) -> float:
    """1 for an answer the parser reads without a single problem, else 0."""
    return 1.0 if prediction.well_formed else 0.0


# The reward of an answer is decided by the regions it holds; OCR answers are judged by their text too.
REWARDS_BY_REGION_KIND: dict[str, Reward] = {"box": box_reward, "point": point_reward, "keypoints": keypoint_reward}


def reward_of(task: Task) -> Reward:
    """The geometric reward a task's answers get."""
    return ocr_reward if task.ocr else REWARDS_BY_REGION_KIND[task.region_kind]


def task_reward(task: str, prediction: Prediction, truth: Sequence[Region]) -> float:
    """The geometric reward of `task` for one answer."""
    if task not in TASKS:
        raise InputError(f"no reward for task {task!r}; known: {', '.join(TASKS)}")
    return reward_of(TASKS[task])(prediction, truth)
