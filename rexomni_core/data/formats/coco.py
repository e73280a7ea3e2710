"""COCO JSON: write generated scenes and converted records; read and check any COCO file.

Boxes are xywh in the file and xyxy in `Annotation`. Masks are written as compressed RLE, OCR
quadrilaterals as polygons, keypoints as x, y, v triplets (v = 0 for invisible, 2 for visible)
with the category's `keypoints` names (the conversions are `rexomni_core.coco`'s). Crowd regions
(`iscrowd: 1`) are read with their mask and flagged `attributes["iscrowd"] = "1"`, so a sampler
can leave them out of positives.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from ...annotations import Annotation
from ...coco import bbox_to_xyxy, keypoint_triplets, keypoints_from_triplets, xyxy_to_bbox
from ...errors import BadRecordError, InputError, MissingInputError, SkipReport, skip_or_raise
from ...tasks import KEYPOINT_SCHEMAS
from .atomic import StagedFiles, staged_files
from .records import (
    Record,
    Where,
    attributes_field,
    check_box,
    checked_records,
    image_file,
    image_path,
    mask_to_rle,
    numbers,
    positive_int,
    rle_to_mask,
    text_field,
)


class CocoWriter:
    """Collects images and annotations; categories get ids in the order first seen (or given)."""

    def __init__(self, categories: Sequence[str] = ()):
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        self.categories: dict[str, dict] = {}
        for name in categories:
            self.category_id(name)

    def category_id(self, name: str) -> int:
        if name not in self.categories:
            category = {"id": len(self.categories) + 1, "name": name, "supercategory": name.split(" ")[-1]}
            if name in KEYPOINT_SCHEMAS:
                names = KEYPOINT_SCHEMAS[name]
                category["keypoints"] = list(names)
                category["skeleton"] = []
            self.categories[name] = category
        return self.categories[name]["id"]

    def add(self, record: Record, file_name: str) -> int:
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": file_name, "width": record.width, "height": record.height})
        for annotation in record.annotations:
            self.annotations.append(self._annotation(annotation, image_id, record.width, record.height))
        return image_id

    def _annotation(self, a: Annotation, image_id: int, width: int, height: int) -> dict:
        x0, y0, x1, y1 = a.box
        data = {
            "id": len(self.annotations) + 1,
            "image_id": image_id,
            "category_id": self.category_id(a.category),
            "bbox": xyxy_to_bbox(a.box),
            "area": float(a.mask.bits.sum()) if a.mask is not None else (x1 - x0) * (y1 - y0),
            "iscrowd": int(a.attributes.get("iscrowd", "0") == "1"),
        }
        if a.polygon is not None:
            data["segmentation"] = [list(a.polygon)]
        elif a.mask is not None:
            data["segmentation"] = mask_to_rle(a.mask, width, height)
        if a.keypoints is not None:
            data["keypoints"] = keypoint_triplets(a.keypoints)
            data["num_keypoints"] = sum(xy is not None for xy in a.keypoints.values())
        if a.text is not None:
            data["text"] = a.text
        if a.attributes:
            data["attributes"] = dict(a.attributes)
        return data

    def to_json(self) -> dict:
        return {"images": self.images, "annotations": self.annotations, "categories": list(self.categories.values())}

    def write(self, path: str | os.PathLike) -> None:
        """Write the COCO file atomically: a reader sees the old file or the whole new one."""
        with staged_files() as staged:
            self.stage(path, staged)

    def stage(self, path: str | os.PathLike, staged: StagedFiles) -> None:
        """Write the COCO file as part of `staged`, to become `path` when the whole write does."""
        staged.path(path).write_text(json.dumps(self.to_json()))


class CocoDataset:
    """Records of a COCO file; images are opened only when a record is used. The file is indexed
    and checked here, not by pycocotools, whose index asserts on some mistakes and silently drops
    the annotations of an image that is not there."""

    def __init__(self, path: str | os.PathLike, image_root: str | os.PathLike | None = None,
                 lenient: bool = False, report: SkipReport | None = None):
        self.path = Path(path)
        self.image_root = Path(image_root) if image_root is not None else self.path.parent
        self.lenient, self.report = lenient, report
        data = self._load()
        self.images = self._by_id(data, "images")
        self.categories = self._categories(data)
        self.image_annotations = self._annotations_by_image(data)
        self.image_ids = sorted(self.images, key=lambda image_id: (isinstance(image_id, str), image_id))

    def _load(self) -> dict:
        if not self.path.exists():
            raise MissingInputError(f"COCO file not found: {self.path}")
        try:
            with open(self.path, "rb") as file:
                data = json.load(file)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InputError(f"{self.path}: not valid JSON ({error})") from None
        if not isinstance(data, dict):
            raise InputError(f"{self.path}: a COCO file must be a JSON object with 'images', 'annotations' and "
                             f"'categories', got a {type(data).__name__}")
        return data

    # Images and categories are what every record refers to: a bad one is fatal even when
    # reading leniently (it is raised, never skipped).

    def _list(self, data: dict, key: str, default: list | None = None) -> list:
        entries = data.get(key, default)
        if not isinstance(entries, list):
            raise Where(str(self.path)).bad(key, f"must be a list, got {entries!r:.80}")
        return entries

    def _by_id(self, data: dict, key: str) -> dict[int | str, dict]:
        """The entries of `data[key]` (images or categories) by their unique id."""
        entries = {}
        for k, entry in enumerate(self._list(data, key)):
            where = Where(str(self.path), f"{key}[{k}]")
            entry_id = entry.get("id") if isinstance(entry, dict) else None
            if not _is_id(entry_id):
                raise where.bad("id", f"must be the integer id of an object, got {entry!r:.80}")
            if entry_id in entries:
                raise where.bad("id", f"{entry_id!r} is used twice")
            entries[entry_id] = entry
        return entries

    def _categories(self, data: dict) -> dict[int | str, dict]:
        categories = self._by_id(data, "categories")
        for category_id, category in categories.items():
            where = Where(str(self.path), f"category id {category_id}")
            name, keypoints = category.get("name"), category.get("keypoints")
            if not isinstance(name, str) or not name:
                raise where.bad("name", f"must be a non-empty string, got {name!r}")
            if keypoints is not None and not (isinstance(keypoints, list) and all(isinstance(k, str) for k in keypoints)):
                raise where.bad("keypoints", f"must be a list of keypoint names, got {keypoints!r}")
        return categories

    def _annotations_by_image(self, data: dict) -> dict[int | str, list[dict]]:
        by_image: dict[int | str, list[dict]] = {image_id: [] for image_id in self.images}
        for k, annotation in enumerate(self._list(data, "annotations", default=[])):
            try:
                by_image[self._image_of(annotation, k)].append(annotation)
            except BadRecordError as error:
                skip_or_raise(error, self.lenient, self.report, "bad annotations")
        return by_image

    def _image_of(self, annotation: object, k: int) -> int | str:
        if not isinstance(annotation, dict):
            raise Where(str(self.path), f"annotations[{k}]").bad(
                None, f"an annotation must be a JSON object, got {annotation!r:.80}")
        image_id = annotation.get("image_id")
        if not (_is_id(image_id) and image_id in self.images):
            raise Where(str(self.path), f"annotation id {annotation.get('id')}").bad("image_id", f"{image_id!r} names no image")
        return image_id

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, i: int) -> Record:
        image_id = self.image_ids[i]
        info = self.images[image_id]
        where = Where(str(self.path), f"image id {image_id}")
        file = image_path(self.image_root, info.get("file_name"), where, "file_name")
        width, height = positive_int(info.get("width"), where, "width"), positive_int(info.get("height"), where, "height")
        annotations = []
        for data in self.image_annotations[image_id]:
            where = Where(str(self.path), f"image {info['file_name']!r}, annotation id {data.get('id')}")
            try:
                annotations.append(self._annotation(data, width, height, where))
            except BadRecordError as error:
                skip_or_raise(error, self.lenient, self.report, "bad annotations")
        return Record(file, width, height, annotations, name=Path(info["file_name"]).stem)

    def _annotation(self, data: dict, width: int, height: int, where: Where) -> Annotation:
        category_id = data.get("category_id")
        category = self.categories.get(category_id) if _is_id(category_id) else None
        if category is None:
            raise where.bad(None, f"unknown category_id {category_id!r}")
        box = check_box(bbox_to_xyxy(numbers(data.get("bbox"), where, "bbox", 4)), width, height, where)
        segmentation = data.get("segmentation")
        mask = rle_to_mask(segmentation, width, height, where, "segmentation") if segmentation else None
        # One polygon (an OCR quadrilateral, a simple outline) is kept as a polygon too.
        is_polygon = isinstance(segmentation, list) and len(segmentation) == 1
        attributes = attributes_field(data, where)
        if data.get("iscrowd"):
            attributes["iscrowd"] = "1"
        return Annotation(
            category["name"], box, mask=mask,
            polygon=list(segmentation[0]) if is_polygon else None,
            text=text_field(data, where), keypoints=self._keypoints(data, category, where), attributes=attributes,
        )

    @staticmethod
    def _keypoints(data: dict, category: dict, where: Where) -> dict[str, list[float] | None] | None:
        """x, y, v triplets, one per keypoint name of the category → name → [x, y] (None: v = 0)."""
        names = category.get("keypoints")
        if not data.get("keypoints") or not names:
            return None
        return keypoints_from_triplets(numbers(data["keypoints"], where, "keypoints", 3 * len(names)), names)

    def __iter__(self) -> Iterator[Record]:
        return checked_records(self, str(self.path))


def _is_id(value: object) -> bool:
    """COCO ids are integers; strings are taken too, as pycocotools takes any hashable value."""
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def write_coco(records: Iterable[Record], path: str | os.PathLike) -> int:
    """A COCO file for records, written atomically with the images it stores (see `image_file`)."""
    writer = CocoWriter()
    root = Path(path).parent
    with staged_files() as staged:
        for i, record in enumerate(records):
            writer.add(record, image_file(record, i, root, staged))
        writer.stage(path, staged)
    return len(writer.images)
