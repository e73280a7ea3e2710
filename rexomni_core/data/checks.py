"""A user's dataset checked as a whole, before anything trains on it.

The readers (`data/formats`) check each record as they read it: a box outside its image, a box
without area, a malformed field. Some mistakes only show across the dataset, and a run trained
on them is silently ruined, so `check_dataset` looks for those too:
- boxes stored in the other convention: COCO's `bbox` slot holds [x, y, width, height], the JSONL
  and TSV slot [x0, y0, x1, y1]; boxes written the other way overrun their image or have no area
  in many records at once, and fit once read the other way; the message says which and how many;
- a COCO category that no annotation uses (a model would only ever learn that it is absent);
- an image whose file is missing, or whose pixels are not the size its record says (every box
  would be misplaced).
Every record is read, and every problem is reported at once (the first MAX_LISTED of them), each
naming its file, record and field. Lenient reading leaves the bad records out and counts them.
Torch-free: `rexomni finetune` runs these checks before it loads a model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

from tqdm import tqdm

from ..errors import BadRecordError, InputError, RecordProblem, SkipReport, skip_or_raise
from ..images import image_size
from .formats import CocoDataset, JsonlDataset, Record, TsvDataset
from .formats.records import EDGE_TOLERANCE, Where, is_number

# How each format's `bbox` slot is laid out, in words for the messages.
CONVENTIONS = {"xywh": "[x, y, width, height]", "xyxy": "[x0, y0, x1, y1]"}
# Boxes that must misfit before a dataset is said to use the other convention (a couple of bad
# boxes are the reader's per-record errors), and the share of those that must fit the other way.
MIN_MISFITS, MIN_MISFIT_SHARE, MIN_OTHER_FIT = 2, 0.1, 0.9


@dataclass(frozen=True)
class StoredBox:
    """A box exactly as the file stores it, with its record's image size."""

    where: Where
    values: list[float]
    width: float
    height: float


@dataclass
class CheckedDataset:
    """The records that passed (with their index in the dataset) and its category names."""

    records: list[tuple[int, Record]]
    categories: list[str]


def corners(values: list[float], convention: str) -> list[float]:
    """A stored box as [x0, y0, x1, y1]."""
    x, y, a, b = values
    return [x, y, x + a, y + b] if convention == "xywh" else [x, y, a, b]


def fits(box: list[float], width: float, height: float) -> bool:
    """Whether an [x0, y0, x1, y1] box has area and lies inside the image (as the readers allow)."""
    x0, y0, x1, y1 = box
    t = EDGE_TOLERANCE
    return x1 > x0 and y1 > y0 and x0 >= -t and y0 >= -t and x1 <= width + t and y1 <= height + t


def box_convention(dataset) -> str:
    """How `dataset`'s format stores a box."""
    return "xywh" if isinstance(dataset, CocoDataset) else "xyxy"


def stored_boxes(dataset) -> Iterator[StoredBox]:
    """Every well-formed box of a COCO, JSONL or TSV dataset, as stored (malformed ones are the
    readers' to report)."""
    if isinstance(dataset, CocoDataset):
        for image_id, annotations in dataset.image_annotations.items():
            info = dataset.images[image_id]
            for annotation in annotations:
                where = Where(str(dataset.path), f"image {info.get('file_name')!r}, annotation id {annotation.get('id')}")
                yield from _well_formed(where, annotation.get("bbox"), info.get("width"), info.get("height"))
        return
    lines = dataset.lines if isinstance(dataset, JsonlDataset) else dataset.annotations
    for i in range(len(lines)):
        text = lines.line(i)
        if isinstance(dataset, TsvDataset):
            text = text.partition("\t")[2]
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            continue
        if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
            continue
        for k, annotation in enumerate(data["annotations"]):
            where = Where(str(lines.path), f"line {i + 1}, annotation {k}")
            box = annotation.get("bbox") if isinstance(annotation, dict) else None
            yield from _well_formed(where, box, data.get("width"), data.get("height"))


def _well_formed(where: Where, box, width, height) -> Iterator[StoredBox]:
    if isinstance(box, list) and len(box) == 4 and all(map(is_number, box + [width, height])):
        yield StoredBox(where, [float(v) for v in box], float(width), float(height))


def box_convention_problem(boxes: list[StoredBox], stored_as: str) -> str | None:
    """What is wrong when many boxes misfit their image as stored yet fit read the other way
    (corners in COCO's size slot, or sizes in a corner slot); None when the boxes look right."""
    other = "xyxy" if stored_as == "xywh" else "xywh"
    misfits = [b for b in boxes if not fits(corners(b.values, stored_as), b.width, b.height)]
    if len(misfits) < max(MIN_MISFITS, MIN_MISFIT_SHARE * len(boxes)):
        return None
    fit_other = [b for b in misfits if fits(corners(b.values, other), b.width, b.height)]
    if len(fit_other) < MIN_OTHER_FIT * len(misfits):
        return None
    first = fit_other[0]
    return (
        f"{len(misfits)} of {len(boxes)} boxes look like {other} {CONVENTIONS[other]} stored in the {stored_as} slot "
        f"{CONVENTIONS[stored_as]} this format uses: read as {stored_as} they overrun their image or have no area, "
        f"read as {other} {len(fit_other)} of them fit (first: {first.where.record}: {first.values} in a "
        f"{first.width:g}x{first.height:g} image); rewrite the boxes as {stored_as} {CONVENTIONS[stored_as]}"
    )


def unannotated_categories(dataset: CocoDataset) -> list[RecordProblem]:
    """A problem for each category of a COCO file that no annotation uses."""
    used = {annotation.get("category_id") for annotations in dataset.image_annotations.values() for annotation in annotations}
    return [
        RecordProblem(str(dataset.path), f"category id {category_id}", "categories",
                      f"{category['name']!r} has no annotation: a model would only learn that it is never there; "
                      "annotate it or remove it from the categories")
        for category_id, category in dataset.categories.items() if category_id not in used
    ]


def image_problem(record: Record, where: Where, field: str) -> RecordProblem | None:
    """A missing or unreadable image file, or one whose size is not the record's."""
    if not isinstance(record.image, str):
        size = record.image.size
    else:
        if not os.path.exists(record.image):
            return RecordProblem(where.file, where.record, field, f"image file not found: {record.image}")
        try:
            size = image_size(record.image)
        except InputError as error:
            return RecordProblem(where.file, where.record, field, str(error))
    if tuple(size) != (record.width, record.height):
        return RecordProblem(where.file, where.record, "width, height",
                             f"the record says {record.width}x{record.height} but the image is {size[0]}x{size[1]}: "
                             "its boxes would be misplaced")
    return None


def _source_file(dataset) -> str:
    """The file a dataset's records are read from (a TSV dataset's: its annotations)."""
    if isinstance(dataset, CocoDataset):
        return str(dataset.path)
    return str((dataset.lines if isinstance(dataset, JsonlDataset) else dataset.annotations).path)


def _record_place(dataset, i: int) -> tuple[Where, str]:
    """Where record `i` lies in its file, in the reader's words, and its image field's name."""
    if isinstance(dataset, CocoDataset):
        info = dataset.images[dataset.image_ids[i]]
        return Where(str(dataset.path), f"image id {info['id']} ({info.get('file_name')!r})"), "file_name"
    if isinstance(dataset, TsvDataset):
        return Where(str(dataset.images.path), f"line {i + 1}"), "image"
    return Where(_source_file(dataset), f"line {i + 1}"), "image"


def check_dataset(dataset, lenient: bool = False, report: SkipReport | None = None) -> CheckedDataset:
    """Read and check every record of `dataset` (opened by `formats.open_dataset`); raise one
    `InputError` listing the problems, or (lenient) leave the bad records out, counted in `report`."""
    misread = box_convention_problem(list(stored_boxes(dataset)), box_convention(dataset))
    if misread:
        raise InputError(f"{_source_file(dataset)}: field 'bbox': {misread}")
    problems: list[RecordProblem] = []
    unused = unannotated_categories(dataset) if isinstance(dataset, CocoDataset) else []
    for problem in unused:
        _problem_or_skip(BadRecordError(problem), problems, lenient, report, "unannotated categories")
    records = []
    for i in tqdm(range(len(dataset)), desc="check records", unit="record", disable=None):
        try:
            record = dataset[i]
        except BadRecordError as error:
            _problem_or_skip(error, problems, lenient, report, "bad records")
            continue
        problem = image_problem(record, *_record_place(dataset, i))
        if problem is not None:
            _problem_or_skip(BadRecordError(problem), problems, lenient, report, "bad images")
            continue
        records.append((i, record))
    if problems:
        raise BadRecordError(problems)
    if isinstance(dataset, CocoDataset):
        left_out = {problem.record for problem in unused}
        categories = [c["name"] for k, c in dataset.categories.items() if f"category id {k}" not in left_out]
    else:
        categories = sorted({a.category for _, record in records for a in record.annotations})
    return CheckedDataset(records, categories)


def _problem_or_skip(
    error: BadRecordError, problems: list[RecordProblem], lenient: bool, report: SkipReport | None, reason: str
) -> None:
    """Strict: collect the problems (all are raised together); lenient: count a skip."""
    if lenient:
        skip_or_raise(error, lenient, report, reason)
    else:
        problems.extend(error.problems)
