"""Keypoints: F1 at object keypoint similarity (OKS, `geometry.oks` with COCO's per-keypoint
sigmas) 0.5 and F1 of the mean P and R over OKS 0.50:0.05:0.95 (as F1@mIoU is for boxes).

Regions are rexomni_core.regions.Keypoints (name → [x, y], or None for "unvisible").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from rexomni_core.eval.f1 import IOU_THRESHOLDS, F1Report, f1_from_quality_groups
from rexomni_core.geometry import COCO_PERSON_SIGMAS, box_area, oks
from rexomni_core.regions import Keypoints


def keypoint_f1(
    samples: Iterable[tuple[Sequence[Keypoints], Sequence[Keypoints]]],
    sigmas: Mapping[str, float] = COCO_PERSON_SIGMAS,
) -> F1Report:
    """(predictions in output order, GT) per image, matched per phrase greedily by OKS.
    `at_50` is F1@OKS0.5, `at_miou` the F1 of the mean P and R over OKS 0.50:0.95."""

    def groups():
        for predictions, targets in samples:
            by_phrase: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
            for p in predictions:
                by_phrase[p.phrase][0].append(p)
            for t in targets:
                by_phrase[t.phrase][1].append(t)
            for phrase, (mine, theirs) in by_phrase.items():
                quality = np.array([[oks(p, t, box_area(t), sigmas) for t in theirs] for p in mine], dtype=np.float64)
                yield phrase, quality.reshape(len(mine), len(theirs))

    return f1_from_quality_groups(groups(), IOU_THRESHOLDS)
