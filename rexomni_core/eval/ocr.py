"""OCR: a text instance is found when its region overlaps (box or polygon IoU ≥ t) AND its text
is exactly the GT text; the same matching without the text check gives detection-only F1, and the
pairs it matches at IoU 0.5 give the mean normalised edit distance of the recognised text.

Regions are Box or Polygon (rexomni_core.regions); the text is `region.text`, or the phrase (the
answer grammar writes the recognised text as the phrase).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from rexomni_core.eval.f1 import IOU_THRESHOLDS, F1Report, f1_from_quality_groups
from rexomni_core.eval.matching import TRUE_POSITIVE, box_iou, match_in_order, polygon_iou
from rexomni_core.regions import Box, Polygon

TextRegion = Box | Polygon


def text_of(region: TextRegion) -> str:
    return region.text if region.text is not None else region.phrase


def region_iou(a: TextRegion, b: TextRegion) -> float:
    """Box IoU when both are boxes, else polygon IoU (a box becomes its 4-corner polygon)."""
    if isinstance(a, Box) and isinstance(b, Box):
        return box_iou(a.coords, b.coords)
    return polygon_iou(_outline(a), _outline(b))


def _outline(region: TextRegion) -> list[float]:
    if isinstance(region, Polygon):
        return list(region.coords)
    x0, y0, x1, y1 = region.coords
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions), one row at a time."""
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def normalised_edit_distance(a: str, b: str) -> float:
    """Edit distance over the longer length: 0 identical, 1 nothing in common."""
    longest = max(len(a), len(b))
    return edit_distance(a, b) / longest if longest else 0.0


@dataclass(frozen=True)
class OCRReport:
    end_to_end: F1Report  # IoU ≥ t and exact text
    detection: F1Report  # IoU ≥ t only
    mean_edit_distance: float  # over pairs matched at IoU 0.5 by detection (0 when none)
    matched_pairs: int


def ocr_scores(samples: Iterable[tuple[Sequence[TextRegion], Sequence[TextRegion]]]) -> OCRReport:
    """Score (predictions in output order, ground truth) per image."""
    iou_matrices, text_equal = [], []
    distances: list[float] = []
    for predictions, targets in samples:
        iou = np.array([[region_iou(p, t) for t in targets] for p in predictions], dtype=np.float64)
        iou = iou.reshape(len(predictions), len(targets))
        iou_matrices.append(iou)
        text_equal.append(np.array([[text_of(p) == text_of(t) for t in targets] for p in predictions], dtype=bool).reshape(iou.shape))
        match = match_in_order(iou, (0.5,))
        for p in np.flatnonzero(match.outcome[0] == TRUE_POSITIVE):
            distances.append(normalised_edit_distance(text_of(predictions[p]), text_of(targets[match.matched_gt[0, p]])))
    return OCRReport(
        end_to_end=f1_from_quality_groups((("text", iou * same) for iou, same in zip(iou_matrices, text_equal)), IOU_THRESHOLDS),
        detection=f1_from_quality_groups((("text", iou) for iou in iou_matrices), IOU_THRESHOLDS),
        mean_edit_distance=float(np.mean(distances)) if distances else 0.0,
        matched_pairs=len(distances),
    )
