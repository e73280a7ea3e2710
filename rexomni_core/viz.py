"""Drawing predictions with supervision's annotators.

One entry point, `annotate(image, prediction)`, for every kind of region: boxes with labels
(the phrase, the recognised text for OCR, the score when there is one), polygons, points and
keypoint skeletons. A phrase always gets the same colour (a hash of its text picks the palette
entry), so the same category looks the same across images, tabs and runs.
"""

from __future__ import annotations

import warnings
import zlib
from typing import Sequence

import numpy as np
from PIL import Image

from .regions import Prediction, Region

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
        scene = _draw_boxes_and_polygons(scene, boxes, thickness, font_size, show_labels)
    for kind in ("point", "keypoints"):
        for phrase in dict.fromkeys(r.phrase for r in regions if r.kind == kind):
            group = [r for r in regions if r.kind == kind and r.phrase == phrase]
            scene = _draw_points(scene, group, thickness, font_size, show_labels)
    return scene


def _detections(regions: Sequence[Region], size: tuple[int, int]) -> sv.Detections:
    polygons = [r for r in regions if r.kind == "polygon"]
    masks = None
    if polygons:
        masks = np.stack(
            [
                sv.polygon_to_mask(np.round(np.array(r.vertices)).astype(int), size).astype(bool)
                if r.kind == "polygon"
                else np.zeros((size[1], size[0]), dtype=bool)
                for r in regions
            ]
        )
    return sv.Detections(
        xyxy=np.array([r.bounds() for r in regions], dtype=np.float32),
        mask=masks,
        class_id=np.array([phrase_color_index(r.phrase) for r in regions], dtype=int),
    )


def _draw_boxes_and_polygons(scene, regions, thickness, font_size, show_labels):
    detections = _detections(regions, scene.size)
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


def _draw_points(scene, regions, thickness, font_size, show_labels):
    color_index = phrase_color_index(regions[0].phrase)
    color = PALETTE.by_idx(color_index)
    if regions[0].kind == "point":
        xy = np.array([[r.coords] for r in regions], dtype=np.float32)
        visible = np.ones(xy.shape[:2], dtype=bool)
    else:
        xy = np.array(
            [[p if p is not None else [0.0, 0.0] for p in r.coords.values()] for r in regions],
            dtype=np.float32,
        )
        visible = np.array([[p is not None for p in r.coords.values()] for r in regions], dtype=bool)
    keypoints = sv.KeyPoints(xy=xy, visible=visible)
    if regions[0].kind == "keypoints" and xy.shape[1] == 17:
        # supervision picks the COCO skeleton from the number of keypoints.
        scene = sv.EdgeAnnotator(color=color, thickness=thickness).annotate(scene, keypoints)
        box_regions = [r for r in regions if r.box is not None]
        if box_regions:
            boxes = sv.Detections(
                xyxy=np.array([r.box for r in box_regions], dtype=np.float32),
                class_id=np.full(len(box_regions), color_index),
            )
            scene = sv.BoxAnnotator(color=PALETTE, thickness=thickness).annotate(scene, boxes)
    scene = sv.VertexAnnotator(color=color, radius=max(3, thickness * 3)).annotate(scene, keypoints)
    if show_labels and regions[0].kind == "point":
        anchors = sv.Detections(
            xyxy=np.array([r.bounds() for r in regions], dtype=np.float32),
            class_id=np.full(len(regions), color_index),
        )
        scene = sv.RichLabelAnnotator(
            color=PALETTE, font_size=font_size, text_padding=max(2, font_size // 4),
            text_position=sv.Position.TOP_CENTER, text_offset=(0, -thickness * 4), smart_position=True,
        ).annotate(scene, anchors, labels=[label_for(r) for r in regions])
    return scene
