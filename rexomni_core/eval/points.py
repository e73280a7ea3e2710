"""Pointing (F1@Point) and GUI grounding accuracy.

Regions are the package's own (rexomni_core.regions): predictions are Point (or Box, scored by
its centre) regions, ground truth is Polygon (a mask outline) or Box regions, matched by phrase;
whether a point hits a region is `geometry.inside`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from rexomni_core.eval.f1 import F1Report, f1_from_quality_groups
from rexomni_core.eval.inputs import Detections, GroundTruth
from rexomni_core.geometry import inside, point_of
from rexomni_core.regions import Box, Point, Polygon, group_by_phrase

POINT_HIT = (0.5,)  # quality is 1 (inside) or 0 (outside): any threshold in (0, 1] works


def pointing_f1(samples: Iterable[tuple[Sequence[Point | Box], Sequence[Box | Polygon]]]) -> F1Report:
    """F1@Point over (predictions, ground truth) per image: a point is a TP when it lies inside a
    still-unmatched GT region of its phrase; one-to-one, greedy in output order."""

    def groups():
        for predictions, targets in samples:
            predicted, expected = group_by_phrase(predictions), group_by_phrase(targets)
            for phrase in predicted.keys() | expected.keys():
                hits = [[float(inside(point_of(p), t)) for t in expected.get(phrase, [])] for p in predicted.get(phrase, [])]
                shape = (len(predicted.get(phrase, [])), len(expected.get(phrase, [])))
                yield phrase, np.array(hits, dtype=np.float64).reshape(shape)

    return f1_from_quality_groups(groups(), POINT_HIT)


def gui_grounding_accuracy(samples: Iterable[tuple[Point | Box | None, Box]]) -> float:
    """Share of GUI queries whose predicted point (or box centre) lies inside the GT element box;
    a missing prediction (None) is a miss."""
    hits = [prediction is not None and inside(point_of(prediction), target) for prediction, target in samples]
    return sum(hits) / len(hits) if hits else 0.0


def pointing_f1_arrays(gt: GroundTruth, points: Detections) -> F1Report:
    """F1@Point for COCO-style inputs: `points` are zero-size boxes at the predicted points;
    GT regions are their polygons when loaded with them, else their boxes. Crowd GT are left out."""
    names = gt.category_names
    targets: list[list] = [[] for _ in gt.image_ids]
    for g in np.flatnonzero(~gt.is_crowd):
        phrase = names[gt.category_index[g]]
        region = Polygon(phrase, gt.polygons[g]) if gt.polygons is not None else Box(phrase, gt.boxes[g].tolist())
        targets[gt.image_index[g]].append(region)
    predictions: list[list] = [[] for _ in gt.image_ids]
    for p in range(len(points)):
        predictions[points.image_index[p]].append(Point(names[points.category_index[p]], points.boxes[p, :2].tolist()))
    return pointing_f1(zip(predictions, targets))


def pointing_summary(report: F1Report) -> dict:
    """F1@Point and its counts: a hit does not depend on an IoU threshold, so only one point."""
    result = {key: value for key, value in report.to_dict().items() if "@0.5" in key or key.startswith("num_")}
    return {key.replace("@0.5", "@point"): value for key, value in result.items()}
