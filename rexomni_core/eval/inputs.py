"""Reading and checking evaluation inputs: COCO ground truth and COCO results lists.

Records are turned into numpy arrays in one pass (fast enough for COCO-scale files). When that
pass fails, or values are out of range, each record is checked on its own so that every problem
names its file, record index, field and what was expected (a `RecordProblem`). Bad prediction
records are fatal (the default) or, read leniently, left out AND counted in `Detections.skipped`;
they are never dropped silently. A bad ground-truth record is always fatal: without a trustworthy
reference no number means anything.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..coco import bboxes_to_xyxy
from ..errors import BadRecordError, InputError, MissingInputError, RecordProblem, SkipReport


@dataclass(frozen=True)
class GroundTruth:
    """A COCO ground truth as arrays. Images and categories keep their file order (the released
    evaluator walks them in that order, which its `paper` quirks depend on)."""

    image_ids: np.ndarray  # (I,)
    image_sizes: np.ndarray  # (I, 2) width, height
    category_ids: np.ndarray  # (K,)
    category_names: list[str]
    image_index: np.ndarray  # (G,) row of image_ids for each annotation
    category_index: np.ndarray  # (G,) row of category_ids for each annotation
    boxes: np.ndarray  # (G, 4) xyxy
    is_crowd: np.ndarray  # (G,) bool
    area: np.ndarray  # (G,) the file's `area` (w*h when absent)
    polygons: list[Any] | None = None  # COCO `segmentation` polygons when asked for

    @property
    def num_categories(self) -> int:
        return len(self.category_ids)


@dataclass(frozen=True)
class Detections:
    """Predictions as arrays, in output (file) order."""

    image_index: np.ndarray  # (P,)
    category_index: np.ndarray  # (P,)
    boxes: np.ndarray  # (P, 4) xyxy
    scores: np.ndarray | None  # (P,) or None when the predictions carry no scores
    polygons: list[Any] | None = None
    skipped: SkipReport = field(default_factory=SkipReport)  # bad records left out (lenient reading)

    def __len__(self) -> int:
        return len(self.image_index)

    def subset(self, keep: np.ndarray) -> Detections:
        """The predictions where `keep` (bool mask or index array) selects, order preserved."""
        keep_index = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep)
        return Detections(
            image_index=self.image_index[keep_index],
            category_index=self.category_index[keep_index],
            boxes=self.boxes[keep_index],
            scores=None if self.scores is None else self.scores[keep_index],
            polygons=None if self.polygons is None else [self.polygons[i] for i in keep_index],
            skipped=self.skipped,
        )


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; a syntax error names the file, line and column.

    orjson, when installed, parses COCO-scale files about twice as fast. It rejects the NaN and
    Infinity that Python writes into JSON, so on any orjson error the standard parser decides:
    it reads those (the bad values are then reported per record) and words real syntax errors.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: no such file")
    data = path.read_bytes()
    try:
        import orjson

        return orjson.loads(data)
    except (ImportError, ValueError):  # no orjson, or its JSONDecodeError: the standard parser decides
        pass
    try:
        return json.loads(data)
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: malformed JSON at line {error.lineno} column {error.colno}: {error.msg}") from None
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None


def _number_problem(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"expected a number, got {value!r}"
    if not math.isfinite(value):
        return f"expected a finite number, got {value!r}"
    return None


def _bbox_problem(value: Any) -> str | None:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return f"expected [x, y, width, height], got {value!r}"
    for number in value:
        if _number_problem(number):
            return f"expected 4 finite numbers [x, y, width, height], got {value!r}"
    if value[2] < 0 or value[3] < 0:
        return f"expected width and height >= 0, got {value!r}"
    return None


def _is_a(value: Any, expected: type) -> bool:
    # bool is an int in Python: `true` would count as id 1.
    return isinstance(value, expected) and not (expected is int and isinstance(value, bool))


_KIND_WORDS = {int: "an integer", str: "a string", list: "a list"}


def field_problems(file: str, records: list, name: str, expected: type) -> list[RecordProblem]:
    """A RecordProblem for each record whose field `name` is missing or not of type `expected`."""
    problems = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            problems.append(RecordProblem(file, index, "(record)", f"expected a JSON object, got {type(record).__name__}"))
        elif name not in record:
            problems.append(RecordProblem(file, index, name, f"missing (expected {_KIND_WORDS[expected]})"))
        elif not _is_a(record[name], expected):
            problems.append(RecordProblem(file, index, name, f"expected {_KIND_WORDS[expected]}, got {record[name]!r}"))
    return problems


def _id_problem(value: Any, known: dict[int, int], what: str) -> str | None:
    if not _is_a(value, int):
        return f"expected an integer {what} id, got {value!r}"
    if value not in known:
        return f"unknown {what} id {value} (not in the ground truth)"
    return None


def _record_problems(
    file: str,
    index: int,
    record: Any,
    image_rows: dict[int, int],
    category_rows: dict[int, int],
    need_score: bool,
    need_polygon: bool,
) -> list[RecordProblem]:
    """Everything wrong with one annotation or result record (empty when it is fine)."""
    if not isinstance(record, dict):
        return [RecordProblem(file, index, "(record)", f"expected a JSON object, got {type(record).__name__}")]
    checks = [
        ("image_id", lambda v: _id_problem(v, image_rows, "image")),
        ("category_id", lambda v: _id_problem(v, category_rows, "category")),
        ("bbox", _bbox_problem),
    ]
    if need_score:
        checks.append(("score", _number_problem))
    if need_polygon:
        checks.append(("segmentation", _polygon_problem))
    problems = []
    for name, check in checks:
        problem = f"missing (expected {name})" if name not in record else check(record[name])
        if problem:
            problems.append(RecordProblem(file, index, name, problem))
    return problems


def _polygon_problem(value: Any) -> str | None:
    rings = value if isinstance(value, list) and value and isinstance(value[0], list) else [value]
    for ring in rings:
        if not isinstance(ring, list) or len(ring) < 6 or len(ring) % 2:
            return "expected a polygon [x0, y0, x1, y1, x2, y2, ...] (or a list of them; RLE is not supported)"
        if any(_number_problem(number) for number in ring):
            return "expected finite polygon coordinates"
    return None


def _find_problems(
    file: str, records: list, image_rows, category_rows, need_score: bool, need_polygon: bool
) -> list[RecordProblem]:
    problems: list[RecordProblem] = []
    for index, record in enumerate(records):
        problems.extend(_record_problems(file, index, record, image_rows, category_rows, need_score, need_polygon))
    return problems


def _as_arrays(records: list, image_rows: dict[int, int], category_rows: dict[int, int]):
    """The fast path: (image rows, category rows, xywh boxes); raises on any malformed record."""
    image_ids = [r["image_id"] for r in records]
    category_ids = [r["category_id"] for r in records]
    if bool in set(map(type, image_ids)) | set(map(type, category_ids)):
        raise TypeError("a boolean id")  # True == 1 as a dict key: it would pass as id 1
    image_index = np.array([image_rows[i] for i in image_ids], dtype=np.int64)
    category_index = np.array([category_rows[c] for c in category_ids], dtype=np.int64)
    xywh = np.array([r["bbox"] for r in records], dtype=np.float64).reshape(len(records), 4)
    return image_index, category_index, xywh


def _values_look_valid(xywh: np.ndarray, scores: np.ndarray | None) -> bool:
    boxes_ok = bool(np.isfinite(xywh).all() and (xywh[:, 2:] >= 0).all())
    return boxes_ok and (scores is None or bool(np.isfinite(scores).all()))


def _check_list(file: str, payload: Any, what: str) -> list:
    if not isinstance(payload, list):
        raise BadRecordError(RecordProblem(file, -1, "(top level)", f"expected a list of {what}, got {type(payload).__name__}"))
    return payload


def load_ground_truth(path: str | Path, with_polygons: bool = False) -> GroundTruth:
    """Read a COCO ground-truth file (images, annotations, categories)."""
    return ground_truth_from_payload(read_json(path), str(path), with_polygons)


def ground_truth_from_payload(payload: Any, file: str = "<ground truth>", with_polygons: bool = False) -> GroundTruth:
    """A parsed COCO ground truth (images, annotations, categories) as arrays, checked."""
    if not isinstance(payload, dict):
        expected = "expected a COCO object with images, annotations, categories"
        raise BadRecordError(RecordProblem(file, -1, "(top level)", expected))
    missing = [key for key in ("images", "annotations", "categories") if key not in payload]
    if missing:
        raise BadRecordError([RecordProblem(file, -1, key, "missing (expected a list)") for key in missing])
    images = _check_list(file, payload["images"], "images")
    categories = _check_list(file, payload["categories"], "categories")
    annotations = _check_list(file, payload["annotations"], "annotations")
    id_problems = field_problems(f"{file} images", images, "id", int)
    id_problems += field_problems(f"{file} categories", categories, "id", int)
    if id_problems:
        raise BadRecordError(id_problems)
    image_ids = np.array([image["id"] for image in images], dtype=np.int64)
    category_ids = np.array([category["id"] for category in categories], dtype=np.int64)
    names = [str(category.get("name", category["id"])) for category in categories]
    try:
        sizes = np.array([[image.get("width", 0), image.get("height", 0)] for image in images], dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InputError(f"{file}: image width and height must be numbers ({error})") from None
    image_rows = {int(i): row for row, i in enumerate(image_ids)}
    category_rows = {int(c): row for row, c in enumerate(category_ids)}
    try:
        image_index, category_index, xywh = _as_arrays(annotations, image_rows, category_rows)
        fast_ok = _values_look_valid(xywh, None) and not with_polygons
    except (KeyError, TypeError, ValueError):
        fast_ok = False
    if not fast_ok:
        problems = _find_problems(f"{file} annotations", annotations, image_rows, category_rows, False, with_polygons)
        if problems:
            raise BadRecordError(problems)
        image_index, category_index, xywh = _as_arrays(annotations, image_rows, category_rows)
    return GroundTruth(
        image_ids=image_ids,
        image_sizes=sizes.reshape(-1, 2),
        category_ids=category_ids,
        category_names=names,
        image_index=image_index,
        category_index=category_index,
        boxes=bboxes_to_xyxy(xywh),
        is_crowd=np.array([bool(a.get("iscrowd", 0)) for a in annotations], dtype=bool),
        area=np.array([a.get("area", a["bbox"][2] * a["bbox"][3]) for a in annotations], dtype=np.float64),
        polygons=[a["segmentation"] for a in annotations] if with_polygons else None,
    )


def detections_from_records(
    records: Any, gt: GroundTruth, file: str = "<predictions>", lenient: bool = False, with_polygons: bool = False
) -> Detections:
    """Turn a COCO results list into Detections checked against `gt`.

    A bad record raises a BadRecordError naming every bad record; `lenient` leaves bad records
    out instead and counts them in `skipped`. Scores are used only when every record has one (a
    partly scored file is treated as unscored, since mixing orders would be meaningless).
    """
    records = _check_list(file, records, "results")
    image_rows = {int(i): row for row, i in enumerate(gt.image_ids)}
    category_rows = {int(c): row for row, c in enumerate(gt.category_ids)}
    has_scores = bool(records) and all(isinstance(r, dict) and "score" in r for r in records)
    skipped = SkipReport()
    try:
        image_index, category_index, xywh = _as_arrays(records, image_rows, category_rows)
        scores = np.array([r["score"] for r in records], dtype=np.float64) if has_scores else None
        fast_ok = _values_look_valid(xywh, scores) and not with_polygons
    except (KeyError, TypeError, ValueError):
        fast_ok = False
    if not fast_ok:
        problems = _find_problems(file, records, image_rows, category_rows, has_scores, with_polygons)
        if problems and not lenient:
            raise BadRecordError(problems)
        bad: dict[int, list[RecordProblem]] = {}
        for problem in problems:
            bad.setdefault(problem.record, []).append(problem)
        for record_problems in bad.values():
            skipped.add("bad records", str(BadRecordError(record_problems)))
        records = [r for i, r in enumerate(records) if i not in bad]
        image_index, category_index, xywh = _as_arrays(records, image_rows, category_rows)
        scores = np.array([r["score"] for r in records], dtype=np.float64) if has_scores else None
    return Detections(
        image_index=image_index,
        category_index=category_index,
        boxes=bboxes_to_xyxy(xywh),
        scores=scores,
        polygons=[r["segmentation"] for r in records] if with_polygons else None,
        skipped=skipped,
    )


def load_detections(path: str | Path, gt: GroundTruth, lenient: bool = False, with_polygons: bool = False) -> Detections:
    """Read a COCO results list (image_id, category_id, bbox xywh, optional score)."""
    return detections_from_records(read_json(path), gt, str(path), lenient, with_polygons)
