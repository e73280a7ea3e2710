"""Keypoints: object keypoint similarity (OKS) with COCO's per-keypoint sigmas, F1 at OKS 0.5 and
F1 of the mean P and R over OKS 0.50:0.05:0.95 (as F1@mIoU is for boxes).

Regions are rexomni_core.regions.Keypoints (name → [x, y], or None for "unvisible").
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Mapping, Sequence

import numpy as np

from rexomni_core.eval.f1 import IOU_THRESHOLDS, F1Report, f1_from_quality_groups
from rexomni_core.regions import Keypoints

# COCO person keypoint sigmas (pycocotools COCOeval Params.kpt_oks_sigmas), in COCO order.
COCO_PERSON_SIGMAS = {
    "nose": 0.026, "left eye": 0.025, "right eye": 0.025, "left ear": 0.035, "right ear": 0.035,
    "left shoulder": 0.079, "right shoulder": 0.079, "left elbow": 0.072, "right elbow": 0.072,
    "left wrist": 0.062, "right wrist": 0.062, "left hip": 0.107, "right hip": 0.107,
    "left knee": 0.087, "right knee": 0.087, "left ankle": 0.089, "right ankle": 0.089,
}


def oks(prediction: Keypoints, target: Keypoints, area: float, sigmas: Mapping[str, float] = COCO_PERSON_SIGMAS) -> float:
    """COCO's OKS: mean over the GT's labelled keypoints of exp(-d² / (2 · area · (2σ)²)).

    A keypoint the prediction leaves out or calls "unvisible" contributes 0. A GT with no labelled
    keypoint has OKS 0 (COCO would fall back to a distance to its box; such GT are rare in our data).
    """
    terms = []
    for name, xy in target.coords.items():
        if xy is None or name not in sigmas:
            continue
        guess = prediction.coords.get(name)
        if guess is None:
            terms.append(0.0)
            continue
        squared = (guess[0] - xy[0]) ** 2 + (guess[1] - xy[1]) ** 2
        terms.append(float(np.exp(-squared / ((2 * sigmas[name]) ** 2) / (area + np.spacing(1)) / 2)))
    return float(np.mean(terms)) if terms else 0.0


def box_area(region: Keypoints) -> float:
    """The scale OKS uses when no segment area is known: the GT box area."""
    if region.box is None:
        raise ValueError(f"keypoint instance {region.instance_id or region.phrase!r} has no box for its OKS scale")
    x0, y0, x1, y1 = region.box
    return max(x1 - x0, 0.0) * max(y1 - y0, 0.0)


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
