"""Degenerate outputs: duplicate boxes (two definitions) and boxes covering the whole image."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from rexomni_core.coords import quantize_xy
from rexomni_core.eval.inputs import Detections, GroundTruth
from rexomni_core.eval.matching import same_group_pairs
from rexomni_core.geometry import box_iou_pairs

DUPLICATE_IOU = 0.95
PAPER_MIN_RUN = 10  # consecutive repeats of one coordinate value
PAPER_BOX_RATIO = 2  # more than twice as many boxes as the GT
LARGE_BOX_COVER = 0.95


def duplicate_flags(boxes: np.ndarray, group: np.ndarray, iou_threshold: float = DUPLICATE_IOU) -> np.ndarray:
    """(N,) bool: the box has IoU ≥ threshold with an EARLIER box (output order) of its group
    (same answer and phrase). Vectorised over any number of answers."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    pairs = same_group_pairs(group, group)
    earlier = pairs.gt < pairs.pred
    later, first = pairs.pred[earlier], pairs.gt[earlier]
    flags = np.zeros(len(boxes), dtype=bool)
    flags[later[box_iou_pairs(boxes[later], boxes[first]) >= iou_threshold]] = True
    return flags


def duplicate_rate(answers: Iterable[Sequence[tuple[str, Sequence[float]]]]) -> float:
    """Share of predicted boxes that duplicate an earlier box of the same phrase in the same
    answer (IoU ≥ 0.95). Each answer is its (phrase, xyxy) boxes in output order."""
    boxes, groups, names = [], [], {}
    for answer_index, answer in enumerate(answers):
        for phrase, xyxy in answer:
            boxes.append(xyxy)
            groups.append(names.setdefault((answer_index, phrase), len(names)))
    if not boxes:
        return 0.0
    return float(duplicate_flags(np.array(boxes), np.array(groups)).mean())


def longest_run(values: Sequence[float]) -> int:
    """Length of the longest run of one value repeated consecutively."""
    values = np.asarray(values)
    if len(values) == 0:
        return 0
    change = np.flatnonzero(np.r_[True, values[1:] != values[:-1], True])
    return int(np.diff(change).max())


def is_degenerate_answer(coordinate_bins: Sequence[int], num_boxes: int, num_gt: int) -> bool:
    """The paper's definition: one coordinate value repeats ≥ 10 times consecutively AND the
    answer has more than twice as many boxes as the GT."""
    return longest_run(coordinate_bins) >= PAPER_MIN_RUN and num_boxes > PAPER_BOX_RATIO * num_gt


@dataclass(frozen=True)
class AnswerShape:
    """What the paper's duplicate definition needs from one answer."""

    coordinate_bins: Sequence[int]  # every coordinate token of the answer, in order
    num_boxes: int
    num_gt: int


def degenerate_answer_rate(answers: Iterable[AnswerShape]) -> float:
    flags = [is_degenerate_answer(a.coordinate_bins, a.num_boxes, a.num_gt) for a in answers]
    return sum(flags) / len(flags) if flags else 0.0


def large_box_flags(boxes: np.ndarray, image_sizes: np.ndarray, cover: float = LARGE_BOX_COVER) -> np.ndarray:
    """(N,) bool: the box (clipped to its image) covers more than `cover` of the image area.
    `image_sizes` is (N, 2) width, height of each box's image."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    sizes = np.asarray(image_sizes, dtype=np.float64).reshape(-1, 2)
    clipped_w = np.clip(np.minimum(boxes[:, 2], sizes[:, 0]) - np.maximum(boxes[:, 0], 0), 0, None)
    clipped_h = np.clip(np.minimum(boxes[:, 3], sizes[:, 1]) - np.maximum(boxes[:, 1], 0), 0, None)
    image_area = sizes[:, 0] * sizes[:, 1]
    return clipped_w * clipped_h > cover * image_area


def large_box_rate(boxes: np.ndarray, image_sizes: np.ndarray) -> float:
    flags = large_box_flags(boxes, image_sizes)
    return float(flags.mean()) if len(flags) else 0.0


def file_degeneracy(gt: GroundTruth, dets: Detections) -> dict[str, float]:
    """The three rates for a COCO results file: an answer is one image, a phrase one category,
    output order is file order; coordinate bins are re-quantised from the pixels."""
    num_k = gt.num_categories
    duplicates = duplicate_flags(dets.boxes, dets.image_index * num_k + dets.category_index)
    sizes = gt.image_sizes[dets.image_index]
    gt_per_image = np.bincount(gt.image_index[~gt.is_crowd], minlength=len(gt.image_ids))
    by_image = np.argsort(dets.image_index, kind="stable")
    starts = np.searchsorted(dets.image_index[by_image], np.arange(len(gt.image_ids) + 1))
    answers = []
    for image, (start, stop) in enumerate(zip(starts[:-1], starts[1:])):
        rows = by_image[start:stop]
        width, height = gt.image_sizes[image]
        bins = [quantize_xy(box, width, height) for box in dets.boxes[rows].tolist()]
        answers.append(AnswerShape([b for box in bins for b in box], len(rows), int(gt_per_image[image])))
    return {
        "duplicate_rate": float(duplicates.mean()) if len(dets) else 0.0,
        "degenerate_answer_rate": degenerate_answer_rate(answers),
        "large_box_rate": large_box_rate(dets.boxes, sizes),
        "num_predictions": len(dets),
        "num_answers": len(answers),
    }
