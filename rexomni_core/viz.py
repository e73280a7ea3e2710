"""Drawing predictions with supervision's annotators.

One entry point, `annotate(image, prediction)`, for every kind of region: boxes with labels
(the phrase, the recognised text for OCR, the score when there is one), polygons, points and
keypoint skeletons. A phrase always gets the same colour (a hash of its text picks the palette
entry), so the same category looks the same across images, tabs and runs.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from PIL import Image

from .regions import Box, Prediction, Region

with warnings.catch_warnings():
    # supervision warns at import when OpenCV is absent; its numpy fallback draws all we use.
    warnings.simplefilter("ignore")
    import supervision as sv

PALETTE = sv.ColorPalette.DEFAULT


def phrase_color_index(phrase: str) -> int:
    """A stable palette index for a phrase (same phrase, same colour, in every run)."""
    return zlib.crc32(phrase.encode("utf-8")) % len(PALETTE.colors)


def label_for(region: Region) -> str:
    label = region.text if region.text is not None else region.phrase
    return label if region.score is None else f"{label} {region.score:.2f}"


def annotate(
    image: Image.Image | np.ndarray,
    prediction: Prediction,
    show_labels: bool = True,
    min_score: float | None = None,
) -> Image.Image:
    """A copy of `image` with the prediction's regions drawn on it.

    `min_score` hides regions whose score is below it (regions without a score are kept).
    """
    scene = (image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))).convert("RGB").copy()
    regions = [r for r in prediction.regions if min_score is None or r.score is None or r.score >= min_score]
    if not regions:
        return scene
    thickness = max(1, round(min(scene.size) / 200))
    font_size = max(10, round(min(scene.size) / 40))
    boxes = [r for r in regions if r.kind in ("box", "polygon")]
    if boxes:
        scene = _draw_boxes_and_polygons(scene, replace(prediction, regions=boxes), thickness, font_size, show_labels)
    for group in _point_groups(regions):
        scene = _draw_points(scene, replace(prediction, regions=group), thickness, font_size, show_labels)
    return scene


def _point_groups(regions: Sequence[Region]) -> list[list[Region]]:
    """Points, then keypoint instances, in the groups drawn together: one per phrase, split by
    the keypoint names an instance carries (one `sv.KeyPoints` holds instances that name the
    same keypoints)."""
    groups: dict[tuple, list[Region]] = {}
    for kind in ("point", "keypoints"):
        for region in regions:
            if region.kind == kind:
                names = tuple(region.coords) if kind == "keypoints" else ()
                groups.setdefault((kind, region.phrase, names), []).append(region)
    return list(groups.values())


def _coloured_detections(prediction: Prediction) -> sv.Detections:
    """`prediction.to_supervision()` of its boxes and polygons, each coloured by its phrase: the
    annotators pick palette entries by class_id, so class_id becomes the phrase's palette index."""
    detections = prediction.to_supervision()
    detections.class_id = np.array([phrase_color_index(p) for p in detections.data["class_name"]], dtype=int)
    return detections


def _detections(prediction: Prediction, size: tuple[int, int]) -> sv.Detections:
    """The boxes and polygons as the annotators draw them: polygons rasterised into masks
    (PolygonAnnotator draws masks), other rows with an empty mask."""
    detections = _coloured_detections(prediction)
    if any(r.kind == "polygon" for r in prediction.regions):
        detections.mask = np.stack(
            [
                sv.polygon_to_mask(np.round(np.array(r.vertices)).astype(int), size).astype(bool)
                if r.kind == "polygon"
                else np.zeros((size[1], size[0]), dtype=bool)
                for r in prediction.regions
            ]
        )
    return detections


def _draw_boxes_and_polygons(scene, prediction, thickness, font_size, show_labels):
    regions = prediction.regions
    detections = _detections(prediction, scene.size)
    polygon_rows = np.array([r.kind == "polygon" for r in regions])
    box_rows = ~polygon_rows
    if box_rows.any():
        scene = sv.BoxAnnotator(color=PALETTE, thickness=thickness).annotate(scene, detections[box_rows])
    if polygon_rows.any():
        scene = sv.PolygonAnnotator(color=PALETTE, thickness=thickness).annotate(scene, detections[polygon_rows])
    if show_labels:
        scene = sv.RichLabelAnnotator(
            color=PALETTE, font_size=font_size, text_padding=max(2, font_size // 4), smart_position=True
        ).annotate(scene, detections, labels=[label_for(r) for r in regions])
    return scene


def _draw_points(scene, prediction, thickness, font_size, show_labels):
    """One group of `_point_groups` (one phrase, so one colour): vertices, and for 17-keypoint
    instances the COCO skeleton and the instance boxes; point labels above the points."""
    regions = prediction.regions
    color = PALETTE.by_idx(phrase_color_index(regions[0].phrase))
    keypoints = prediction.to_supervision()
    if regions[0].kind == "keypoints" and keypoints.xy.shape[1] == 17:
        # supervision picks the COCO skeleton from the number of keypoints.
        scene = sv.EdgeAnnotator(color=color, thickness=thickness).annotate(scene, keypoints)
        instance_boxes = [Box(r.phrase, list(r.box)) for r in regions if r.box is not None]
        if instance_boxes:
            boxes = _coloured_detections(replace(prediction, regions=instance_boxes))
            scene = sv.BoxAnnotator(color=PALETTE, thickness=thickness).annotate(scene, boxes)
    scene = sv.VertexAnnotator(color=color, radius=max(3, thickness * 3)).annotate(scene, keypoints)
    if show_labels and regions[0].kind == "point":
        anchors = _coloured_detections(replace(prediction, regions=[Box(r.phrase, r.bounds()) for r in regions]))
        scene = sv.RichLabelAnnotator(
            color=PALETTE, font_size=font_size, text_padding=max(2, font_size // 4),
            text_position=sv.Position.TOP_CENTER, text_offset=(0, -thickness * 4), smart_position=True,
        ).annotate(scene, anchors, labels=[label_for(r) for r in regions])
    return scene
