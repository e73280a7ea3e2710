"""The format-neutral record every reader yields and every writer takes, and its checks.

A `Record` is one image (a path, or decoded pixels for TSV) with its annotations (the same
`Annotation` the nano worlds make), so samplers work on real data as on synthetic scenes.
Bad input is either an error naming the file, record and field (strict, the default) or, in
lenient mode, a counted skip in a `SkipReport` that the caller prints: nothing is dropped silently
(the package's one bad-record mechanism, `rexomni_core.errors`). The field checks here are shared
by the readers; every value is checked before it is used, so a malformed file gives a
`BadRecordError`, never a KeyError or TypeError from deep inside.
"""

from __future__ import annotations

import io
import itertools
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...annotations import Annotation, Mask
from ...errors import BadRecordError, InputError, MissingInputError, RecordProblem, SkipReport, skip_or_raise
from ...images import load_image
from .atomic import StagedFiles

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
        """The record's pixels as the model reads them (8-bit RGB; unreadable files refused)."""
        if isinstance(self.image, Image.Image):
            return self.image
        try:
            return load_image(self.image)
        except InputError as error:
            raise type(error)(f"record {self.name!r}: {error}") from None


@dataclass(frozen=True)
class Where:
    """Where a record (or a part of one) lies in its file, for the problems found in it."""

    file: str
    record: str | None = None  # the reader's words: "line 3", "image id 7"; None: the file itself

    def within(self, part: str) -> Where:
        """A part of this record: "line 3" → "line 3, annotation 0"."""
        return Where(self.file, part if self.record is None else f"{self.record}, {part}")

    def bad(self, field: str | None, problem: str) -> BadRecordError:
        """The error of `problem` here (in `field`, when one field is at fault)."""
        return BadRecordError(RecordProblem(self.file, self.record, field, problem))


def is_inside(root: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Whether `path` lies below `root`, judged on the names alone: a '..' or an absolute path
    that leaves is caught, while a symlink inside `root` (images -> /data/coco) is the user's own."""
    root, path = os.path.abspath(root), os.path.abspath(path)
    return path != root and os.path.commonpath([root, path]) == root


def image_path(root: str | os.PathLike, name: Any, where: Where, field: str) -> str:
    """`root/name` for an image name read from a file: a relative path that stays inside `root`,
    so a dataset cannot make a convert read (and embed) any other file of the machine."""
    if not isinstance(name, str) or not name:
        raise where.bad(field, f"must be a non-empty path, got {name!r}")
    if os.path.isabs(name) or not is_inside(root, os.path.join(root, name)):
        raise where.bad(field, f"{name!r} leaves the image folder {root}; "
                        "image paths must be relative to it and stay inside it")
    return str(Path(root) / name)


def encoded_image(record: Record) -> bytes:
    """The image file's own bytes (no re-encoding) for a path; PNG for decoded pixels."""
    if isinstance(record.image, str):
        try:
            return Path(record.image).read_bytes()
        except FileNotFoundError:
            raise MissingInputError(f"record {record.name!r}: image file not found: {record.image}") from None
    buffer = io.BytesIO()
    record.image.save(buffer, format="PNG")
    return buffer.getvalue()


def image_file(record: Record, index: int, root: str | os.PathLike, staged: StagedFiles) -> str:
    """The record's image as a path relative to `root`, for a COCO or JSONL file there. An image
    file inside `root` is pointed at; decoded pixels (as PNG) and image files outside `root` (which
    the readers refuse to follow) are stored in `root/images/` as part of the `staged` write."""
    if isinstance(record.image, str) and is_inside(root, record.image):
        return os.path.relpath(os.path.abspath(record.image), root)
    if isinstance(record.image, str):
        name = os.path.basename(record.image)
    else:
        name = f"{_plain_file_name(record.name) or index}.png"
    file = _store_image(os.path.join(root, "images"), name, encoded_image(record), staged)
    return os.path.relpath(file, root)


def _plain_file_name(name: str) -> str:
    """A record name as a file name that stays in its folder (no separators, not hidden)."""
    return re.sub(r"[/\\\x00]", "_", name).lstrip(".")


def _store_image(folder: str, name: str, content: bytes, staged: StagedFiles) -> str:
    """`folder/name`, or `name-1`, `name-2`, ... when that name holds a different image already
    (the user's, or another record's in this write): an image is never overwritten."""
    stem, suffix = os.path.splitext(name)
    for n in itertools.count():
        file = os.path.join(folder, f"{stem}-{n}{suffix}" if n else name)
        current = staged.current(file)
        if not current.exists():
            staged.path(file).write_bytes(content)
            return file
        if current.is_file() and current.read_bytes() == content:
            return file


def checked_records(dataset, source: str) -> Iterator[Record]:
    """Every record of an indexed reader (`len`, `[i]`, `lenient`, `report`): a bad record or a
    missing image file raises (strict) or is skipped and counted (lenient)."""
    for i in range(len(dataset)):
        try:
            record = dataset[i]
        except BadRecordError as error:
            skip_or_raise(error, dataset.lenient, dataset.report, "bad records")
            continue
        if image_exists(record, source, dataset.lenient, dataset.report):
            yield record


def image_exists(record: Record, source: str, lenient: bool, report: SkipReport | None) -> bool:
    """True when the record's image file exists; otherwise raise (strict) or count (lenient)."""
    if isinstance(record.image, Image.Image) or os.path.exists(record.image):
        return True
    problem = RecordProblem(source, f"record {record.name!r}", None, f"image file not found: {record.image}")
    if not lenient:
        raise MissingInputError(str(problem))
    skip_or_raise(BadRecordError(problem), lenient, report, "missing images")
    return False


def is_number(value: Any) -> bool:
    """A finite int or float (JSON's true and false are not numbers)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def numbers(value: Any, where: Where, field: str, count: int | None = None) -> list[float]:
    """`value` as floats: a list of finite numbers (exactly `count` of them when given)."""
    if not isinstance(value, (list, tuple)) or (count is not None and len(value) != count):
        expected = f"{count} numbers" if count is not None else "a list of numbers"
        raise where.bad(field, f"must be {expected}, got {value!r:.80}")
    if not all(is_number(v) for v in value):
        raise where.bad(field, f"must hold finite numbers only, got {value!r:.80}")
    return [float(v) for v in value]


def positive_int(value: Any, where: Where, field: str) -> int:
    if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        raise where.bad(field, f"must be a positive integer, got {value!r}")
    return value


def check_polygon(value: Any, where: Where, field: str) -> list:
    """A flat [x0, y0, x1, y1, ...] outline of at least 3 points; returned as given."""
    numbers(value, where, field)
    if len(value) < 6 or len(value) % 2:
        raise where.bad(field, f"must be a flat [x0, y0, x1, y1, ...] outline of 3 or more points, "
                        f"got {len(value)} numbers")
    return value


def text_field(data: dict, where: Where) -> str | None:
    text = data.get("text")
    if text is not None and not isinstance(text, str):
        raise where.bad("text", f"must be a string, got {text!r}")
    return text


def attributes_field(data: dict, where: Where) -> dict:
    attributes = data.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise where.bad("attributes", f"must be a JSON object, got {attributes!r}")
    return dict(attributes)


def check_box(box, width: float, height: float, where: Where) -> list[float]:
    """A finite xyxy box with area, inside the image (within EDGE_TOLERANCE) → clipped box."""
    x0, y0, x1, y1 = numbers(box, where, "bbox", 4)
    if x1 <= x0 or y1 <= y0:
        raise where.bad("bbox", f"{list(box)} has zero area")
    t = EDGE_TOLERANCE
    if x0 < -t or y0 < -t or x1 > width + t or y1 > height + t:
        raise where.bad("bbox", f"{list(box)} lies outside the {width}x{height} image")
    return [max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))]


def mask_to_rle(mask: Mask, width: int, height: int) -> dict[str, Any]:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.full(width, height).astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(segmentation: Any, width: int, height: int, where: Where, field: str) -> Mask:
    """COCO polygons or RLE (compressed or not) → a cropped Mask; checked in full first, since
    pycocotools asserts on some malformed input and reads past the end of other."""
    if isinstance(segmentation, list) and segmentation:
        return Mask.from_full(_polygons_bits(segmentation, width, height, where, field))
    if isinstance(segmentation, dict):
        return Mask.from_full(_rle_bits(segmentation, width, height, where, field))
    raise where.bad(field, f"must be polygons [[x0, y0, ...], ...] or RLE "
                    f"{{'size': [h, w], 'counts': ...}}, got {segmentation!r:.80}")


def _polygons_bits(polygons: list, width: int, height: int, where: Where, field: str) -> np.ndarray:
    from pycocotools import mask as mask_utils

    rings = [check_polygon(ring, where, field) for ring in polygons]
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(rings, height, width))).astype(bool)


def _rle_bits(rle: dict, width: int, height: int, where: Where, field: str) -> np.ndarray:
    size, counts = rle.get("size"), rle.get("counts")
    if size != [height, width]:
        raise where.bad(field, f"RLE 'size' must be the image's [height, width] = "
                        f"[{height}, {width}], got {size!r}")
    if isinstance(counts, str):
        counts = _compressed_counts(counts, where, field)
    elif not (isinstance(counts, list) and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts)):
        raise where.bad(field, f"RLE 'counts' must be a compressed string or a list of "
                        f"run lengths, got {counts!r:.80}")
    if sum(counts) != width * height:
        raise where.bad(field, f"RLE runs cover {sum(counts)} pixels, "
                        f"the {width}x{height} image has {width * height}")
    # Runs alternate 0, 1, 0, ... down the columns (COCO's column-major order).
    return np.repeat(np.arange(len(counts)) % 2 == 1, counts).reshape(width, height).T


def _compressed_counts(text: str, where: Where, field: str) -> list[int]:
    """The run lengths of a compressed COCO RLE string (pycocotools' rleFrString, but checked).
    A run is 5-bit groups, each a character from '0' (0x20: more groups follow; 0x10 in the last:
    negative); from the third run on, a run is stored as the difference to the run two before."""
    counts, value, shift = [], 0, 0
    for char in text:
        code = ord(char) - ord("0")
        if not 0 <= code < 64:
            raise where.bad(field, f"RLE 'counts' holds {char!r}, not a compressed RLE character")
        value |= (code & 0x1F) << shift
        shift += 5
        if code & 0x20:
            continue
        if code & 0x10:
            value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        if value < 0:
            raise where.bad(field, "RLE 'counts' decodes to a negative run length")
        counts.append(value)
        value, shift = 0, 0
    if shift:
        raise where.bad(field, "RLE 'counts' ends in the middle of a run")
    return counts


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


def annotation_from_json(data: Any, width: int, height: int, where: Where) -> Annotation:
    if not isinstance(data, dict):
        raise where.bad(None, f"an annotation must be a JSON object, got {type(data).__name__}")
    category = data.get("category")
    if not isinstance(category, str) or not category:
        raise where.bad("category", f"must be a non-empty string, got {category!r}")
    box = check_box(data.get("bbox"), width, height, where)
    mask = rle_to_mask(data["mask"], width, height, where, "mask") if data.get("mask") is not None else None
    polygon = data.get("polygon")
    return Annotation(
        category,
        box,
        mask=mask,
        polygon=check_polygon(polygon, where, "polygon") if polygon is not None else None,
        text=text_field(data, where),
        keypoints=_keypoints_from_json(data.get("keypoints"), where),
        attributes=attributes_field(data, where),
    )


def _keypoints_from_json(keypoints: Any, where: Where) -> dict[str, list[float] | None] | None:
    if keypoints is None:
        return None
    if not isinstance(keypoints, dict):
        raise where.bad("keypoints", f"must map names to [x, y] or null, got {keypoints!r}")
    for name, xy in keypoints.items():
        if xy is not None:
            numbers(xy, where, f"keypoints.{name}", 2)
    return keypoints


def record_to_json(record: Record, image_field: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {"name": record.name, "width": record.width, "height": record.height}
    if image_field is not None:
        data["image"] = image_field
    data["annotations"] = [annotation_to_json(a, record.width, record.height) for a in record.annotations]
    return data


def record_from_json(data: Any, where: Where, image, lenient: bool, report: SkipReport | None) -> Record:
    """A record from its JSON form; bad annotations raise or (lenient) are skipped and counted."""
    if not isinstance(data, dict):
        raise where.bad(None, "a record must be a JSON object")
    for key in ("width", "height", "annotations"):
        if key not in data:
            raise where.bad(key, "missing")
    width, height = positive_int(data["width"], where, "width"), positive_int(data["height"], where, "height")
    if not isinstance(data["annotations"], list):
        raise where.bad("annotations", f"must be a list, got {data['annotations']!r}")
    annotations = []
    for i, item in enumerate(data["annotations"]):
        try:
            annotations.append(annotation_from_json(item, width, height, where.within(f"annotation {i}")))
        except BadRecordError as error:
            skip_or_raise(error, lenient, report, "bad annotations")
    return Record(image, width, height, annotations, name=str(data.get("name", "")))
