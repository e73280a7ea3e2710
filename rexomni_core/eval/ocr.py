"""OCR: a text instance is found when its region overlaps (box or polygon IoU ≥ t) AND its text
is exactly the GT text; the same matching without the text check gives detection-only F1, and the
pairs it matches at IoU 0.5 give the mean normalised edit distance of the recognised text.

Regions are Box or Polygon (rexomni_core.regions); the overlap is `geometry.region_iou`, the
text `text_similarity.text_of` (`region.text`, or the phrase the answer grammar writes it as).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from rexomni_core.eval.f1 import IOU_THRESHOLDS, F1Report, f1_from_quality_groups
from rexomni_core.eval.matching import TRUE_POSITIVE, match_in_order
from rexomni_core.geometry import region_iou
from rexomni_core.text_similarity import TextRegion, normalised_edit_distance, text_of


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
        same_text = [[text_of(p) == text_of(t) for t in targets] for p in predictions]
        text_equal.append(np.array(same_text, dtype=bool).reshape(iou.shape))
        match = match_in_order(iou, (0.5,))
        for p in np.flatnonzero(match.outcome[0] == TRUE_POSITIVE):
            distances.append(normalised_edit_distance(text_of(predictions[p]), text_of(targets[match.matched_gt[0, p]])))
    return OCRReport(
        end_to_end=f1_from_quality_groups((("text", iou * same) for iou, same in zip(iou_matrices, text_equal)), IOU_THRESHOLDS),
        detection=f1_from_quality_groups((("text", iou) for iou in iou_matrices), IOU_THRESHOLDS),
        mean_edit_distance=float(np.mean(distances)) if distances else 0.0,
        matched_pairs=len(distances),
    )
