"""The format-neutral record every reader yields and every writer takes, and its checks.

A `Record` is one image (a path, or decoded pixels for TSV) with its annotations (the same
`Annotation` the nano worlds make), so samplers work on real data as on synthetic scenes.
Bad input is either an error naming the file, record and field (strict, the default) or, in
lenient mode, a counted skip in a `SkipReport` that the caller prints: nothing is dropped silently.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from ..worlds.common import Annotation, Mask

# Coordinates may overshoot the image by rounding; more than this is an error.
EDGE_TOLERANCE = 1.0


@dataclass
class Record:
    image: str | Image.Image
    width: int
    height: int
    annotations: list[Annotation]
    name: str = ""

    def load_image(self) -> Image.Image:
        if isinstance(self.image, Image.Image):
            return self.image
        try:
            return Image.open(self.image).convert("RGB")
        except FileNotFoundError:
            raise FileNotFoundError(f"record {self.name!r}: image file not found: {self.image}") from None


class BadRecord(ValueError):
    """A record or annotation that breaks the format; the message names where and what."""


@dataclass
class SkipReport:
    """What lenient reading skipped: counts per reason and the first few messages."""

    counts: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def add(self, reason: str, message: str) -> None:
        self.counts[reason] += 1
        if len(self.examples) < 10:
            self.examples.append(message)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.total:
            return "nothing skipped"
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.counts.items()))
        return f"skipped {self.total}: {reasons}"


def handle(error: BadRecord, lenient: bool, report: SkipReport | None, reason: str) -> None:
    """Raise in strict mode; count it in lenient mode."""
    if not lenient:
        raise error
    if report is None:
        raise ValueError("lenient reading needs a SkipReport to count what it skips")
    report.add(reason, str(error))


def image_file(record: Record, index: int, root: str | os.PathLike) -> str:
    """The record's image as a path relative to `root`; decoded pixels are saved as PNG first."""
    if isinstance(record.image, str):
        return os.path.relpath(os.path.abspath(record.image), root)
    folder = os.path.join(root, "images")
    os.makedirs(folder, exist_ok=True)
    file = os.path.join(folder, f"{record.name or index}.png")
    record.image.save(file)
    return os.path.relpath(file, root)


def image_exists(record: Record, source: str, lenient: bool, report: SkipReport | None) -> bool:
    """True when the record's image file exists; otherwise raise (strict) or count (lenient)."""
    if isinstance(record.image, Image.Image) or os.path.exists(record.image):
        return True
    message = f"{source}: record {record.name!r}: image file not found: {record.image}"
    if not lenient:
        raise FileNotFoundError(message)
    handle(BadRecord(message), lenient, report, "missing images")
    return False


def check_box(box, width: float, height: float, where: str) -> list[float]:
    """A finite xyxy box with area, inside the image (within EDGE_TOLERANCE) → clipped box."""
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        raise BadRecord(f"{where}: bbox must be 4 numbers, got {box!r}")
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in box):
        raise BadRecord(f"{where}: bbox has a non-finite value: {box!r}")
    x0, y0, x1, y1 = (float(v) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise BadRecord(f"{where}: bbox {list(box)} has zero area")
    t = EDGE_TOLERANCE
    if x0 < -t or y0 < -t or x1 > width + t or y1 > height + t:
        raise BadRecord(f"{where}: bbox {list(box)} lies outside the {width}x{height} image")
    return [max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))]


def mask_to_rle(mask: Mask, width: int, height: int) -> dict[str, Any]:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.full(width, height).astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(segmentation, width: int, height: int) -> Mask:
    """COCO RLE (compressed or not) or polygons → a cropped Mask."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}
    return Mask.from_full(mask_utils.decode(rle).astype(bool))


def annotation_to_json(annotation: Annotation, width: int, height: int) -> dict[str, Any]:
    """An annotation as plain JSON (box xyxy; mask as RLE; keypoints name → [x, y] | null)."""
    data: dict[str, Any] = {"category": annotation.category, "bbox": list(annotation.box)}
    if annotation.mask is not None:
        data["mask"] = mask_to_rle(annotation.mask, width, height)
    for key in ("polygon", "text", "keypoints"):
        value = getattr(annotation, key)
        if value is not None:
            data[key] = value
    if annotation.attributes:
        data["attributes"] = dict(annotation.attributes)
    return data


def annotation_from_json(data: Any, width: int, height: int, where: str) -> Annotation:
    if not isinstance(data, dict):
        raise BadRecord(f"{where}: an annotation must be a JSON object, got {type(data).__name__}")
    category = data.get("category")
    if not isinstance(category, str) or not category:
        raise BadRecord(f"{where}: field 'category' must be a non-empty string, got {category!r}")
    box = check_box(data.get("bbox"), width, height, where)
    mask = rle_to_mask(data["mask"], width, height) if data.get("mask") is not None else None
    return Annotation(
        category,
        box,
        mask=mask,
        polygon=data.get("polygon"),
        text=data.get("text"),
        keypoints=data.get("keypoints"),
        attributes=dict(data.get("attributes") or {}),
    )


def record_to_json(record: Record, image_field: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {"name": record.name, "width": record.width, "height": record.height}
    if image_field is not None:
        data["image"] = image_field
    data["annotations"] = [annotation_to_json(a, record.width, record.height) for a in record.annotations]
    return data


def record_from_json(data: Any, where: str, image, lenient: bool, report: SkipReport | None) -> Record:
    """A record from its JSON form; bad annotations raise or (lenient) are skipped and counted."""
    if not isinstance(data, dict):
        raise BadRecord(f"{where}: a record must be a JSON object")
    for key in ("width", "height", "annotations"):
        if key not in data:
            raise BadRecord(f"{where}: missing field {key!r}")
    width, height = data["width"], data["height"]
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        raise BadRecord(f"{where}: width and height must be positive integers, got {width!r}, {height!r}")
    annotations = []
    for i, item in enumerate(data["annotations"]):
        try:
            annotations.append(annotation_from_json(item, width, height, f"{where}, annotation {i}"))
        except BadRecord as error:
            handle(error, lenient, report, "bad annotations")
    return Record(image, width, height, annotations, name=str(data.get("name", "")))
