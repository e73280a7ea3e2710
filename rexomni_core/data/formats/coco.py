"""COCO JSON: write generated scenes and converted records; read any COCO file through pycocotools.

Boxes are xywh in the file and xyxy in `Annotation`. Masks are written as compressed RLE, OCR
quadrilaterals as polygons, keypoints as x, y, v triplets (v = 0 for invisible, 2 for visible)
with the category's `keypoints` names. Crowd regions (`iscrowd: 1`) are read with their mask and
flagged `attributes["iscrowd"] = "1"`, so a sampler can leave them out of positives.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ...tasks import KEYPOINT_SCHEMAS
from ..worlds.common import Annotation
from .records import BadRecord, Record, SkipReport, check_box, handle, image_exists, image_file, mask_to_rle, rle_to_mask


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
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "area": float(a.mask.bits.sum()) if a.mask is not None else (x1 - x0) * (y1 - y0),
            "iscrowd": int(a.attributes.get("iscrowd", "0") == "1"),
        }
        if a.polygon is not None:
            data["segmentation"] = [list(a.polygon)]
        elif a.mask is not None:
            data["segmentation"] = mask_to_rle(a.mask, width, height)
        if a.keypoints is not None:
            triplets = []
            for xy in a.keypoints.values():
                triplets += [xy[0], xy[1], 2] if xy is not None else [0, 0, 0]
            data["keypoints"] = triplets
            data["num_keypoints"] = sum(xy is not None for xy in a.keypoints.values())
        if a.text is not None:
            data["text"] = a.text
        if a.attributes:
            data["attributes"] = dict(a.attributes)
        return data

    def to_json(self) -> dict:
        return {"images": self.images, "annotations": self.annotations, "categories": list(self.categories.values())}

    def write(self, path: str | os.PathLike) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_json()))


class CocoDataset:
    """Records of a COCO file; images are opened only when a record is used."""

    def __init__(self, path: str | os.PathLike, image_root: str | os.PathLike | None = None,
                 lenient: bool = False, report: SkipReport | None = None):
        from pycocotools.coco import COCO

        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"COCO file not found: {self.path}")
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            self.coco = COCO(str(self.path))
        self.image_root = Path(image_root) if image_root is not None else self.path.parent
        self.image_ids = sorted(self.coco.imgs)
        self.lenient, self.report = lenient, report

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, i: int) -> Record:
        info = self.coco.imgs[self.image_ids[i]]
        width, height = info["width"], info["height"]
        annotations = []
        for data in self.coco.imgToAnns.get(info["id"], []):
            where = f"{self.path}, image {info['file_name']!r}, annotation id {data.get('id')}"
            try:
                annotations.append(self._annotation(data, width, height, where))
            except BadRecord as error:
                handle(error, self.lenient, self.report, "bad annotations")
        return Record(str(self.image_root / info["file_name"]), width, height, annotations, name=Path(info["file_name"]).stem)

    def _annotation(self, data: dict, width: int, height: int, where: str) -> Annotation:
        category = self.coco.cats.get(data.get("category_id"))
        if category is None:
            raise BadRecord(f"{where}: unknown category_id {data.get('category_id')!r}")
        bbox = data.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise BadRecord(f"{where}: field 'bbox' must be [x, y, w, h], got {bbox!r}")
        box = check_box([bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3]], width, height, where)
        segmentation = data.get("segmentation")
        # One polygon (an OCR quadrilateral, a simple outline) is kept as a polygon too.
        is_polygon = isinstance(segmentation, list) and len(segmentation) == 1
        mask = rle_to_mask(segmentation, width, height) if segmentation else None
        keypoints = None
        if data.get("keypoints") and category.get("keypoints"):
            triplets = data["keypoints"]
            keypoints = {
                name: [float(triplets[3 * k]), float(triplets[3 * k + 1])] if triplets[3 * k + 2] > 0 else None
                for k, name in enumerate(category["keypoints"])
            }
        attributes = dict(data.get("attributes") or {})
        if data.get("iscrowd"):
            attributes["iscrowd"] = "1"
        return Annotation(
            category["name"], box, mask=mask,
            polygon=list(segmentation[0]) if is_polygon else None,
            text=data.get("text"), keypoints=keypoints, attributes=attributes,
        )

    def __iter__(self) -> Iterator[Record]:
        for i in range(len(self)):
            record = self[i]
            if image_exists(record, str(self.path), self.lenient, self.report):
                yield record


def write_coco(records: Iterable[Record], path: str | os.PathLike) -> int:
    """A COCO file for records; decoded images (from TSV) are saved as PNG beside it."""
    writer = CocoWriter()
    root = Path(path).parent
    for i, record in enumerate(records):
        writer.add(record, image_file(record, i, root))
    writer.write(path)
    return len(writer.images)
