"""COCO's conventions, in one place: its boxes, its keypoint triplets, its result records and
the regions its annotations stand for.

COCO writes a box as `bbox` [x, y, width, height] and the package as xyxy; keypoints as x, y, v
triplets (v = 0: not labelled, v > 0 labelled; written as 2, visible) in the order of the
category's `keypoints` names. The data formats, the evaluators and `Prediction.to_coco` all
convert through these functions. On the ground floor: imports only the region types.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .regions import Box, Keypoints, Polygon, Region

Keypoint = list[float] | None  # [x, y], or None when not visible


def bbox_to_xyxy(bbox: Sequence[float]) -> list[float]:
    """COCO [x, y, width, height] → [x0, y0, x1, y1]."""
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


def xyxy_to_bbox(box: Sequence[float]) -> list[float]:
    """[x0, y0, x1, y1] → COCO [x, y, width, height]."""
    x0, y0, x1, y1 = box
    return [x0, y0, x1 - x0, y1 - y0]


def bboxes_to_xyxy(bboxes: np.ndarray) -> np.ndarray:
    """(N, 4) COCO boxes → (N, 4) xyxy, as a new float array."""
    xyxy = np.array(bboxes, dtype=np.float64).reshape(-1, 4)
    xyxy[:, 2:] += xyxy[:, :2]
    return xyxy


def xyxy_to_bboxes(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy → (N, 4) COCO boxes, as a new float array."""
    bboxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    bboxes[:, 2:] -= bboxes[:, :2]
    return bboxes


def keypoint_triplets(keypoints: Mapping[str, Keypoint]) -> list[float]:
    """name → [x, y] | None, in the names' order → x, y, v triplets (hidden: 0, 0, 0)."""
    triplets: list[float] = []
    for xy in keypoints.values():
        triplets += [xy[0], xy[1], 2] if xy is not None else [0, 0, 0]
    return triplets


def keypoints_from_triplets(triplets: Sequence[float], names: Sequence[str]) -> dict[str, Keypoint]:
    """x, y, v triplets, one per name → name → [x, y] (None where v = 0)."""
    return {
        name: [triplets[3 * k], triplets[3 * k + 1]] if triplets[3 * k + 2] > 0 else None
        for k, name in enumerate(names)
    }


def result_record(region: Region, image_id: int, category_id: int, unscored: float | None = 1.0) -> dict[str, Any]:
    """A region as a COCO result record: `bbox` (xywh of its bounds), and `segmentation` for a
    polygon, `point` for a point, `keypoints` triplets for keypoints, `text` when it has one.

    A region without a score is given `unscored`; None leaves the record without a score (a
    results file scored in output order).
    """
    record: dict[str, Any] = {"image_id": image_id, "category_id": category_id, "bbox": xyxy_to_bbox(region.bounds())}
    score = region.score if region.score is not None else unscored
    if score is not None:
        record["score"] = float(score)
    if region.kind == "polygon":
        record["segmentation"] = [list(region.coords)]
    elif region.kind == "point":
        record["point"] = list(region.coords)
    elif region.kind == "keypoints":
        record["keypoints"] = keypoint_triplets(region.coords)
    if region.text is not None:
        record["text"] = region.text
    return record


def text_region(annotation: Mapping[str, Any], as_polygon: bool) -> Box | Polygon:
    """An OCR annotation as the region an answer should give: its one-part segmentation polygon
    when `as_polygon` and it has one, else its box; the phrase and text are its `text`."""
    text, segmentation = annotation.get("text", ""), annotation.get("segmentation")
    if as_polygon and isinstance(segmentation, list) and len(segmentation) == 1:
        return Polygon(text, list(segmentation[0]), text=text)
    return Box(text, bbox_to_xyxy(annotation["bbox"]), text=text)


def keypoint_instance(annotation: Mapping[str, Any], category: Mapping[str, Any]) -> Keypoints:
    """A keypoint annotation as a Keypoints region: its category's name, keypoints and box."""
    coords = keypoints_from_triplets(annotation["keypoints"], category["keypoints"])
    return Keypoints(category["name"], coords, box=bbox_to_xyxy(annotation["bbox"]))
