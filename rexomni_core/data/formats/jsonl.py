"""Plain JSONL: one image per line, `{"name", "image", "width", "height", "annotations": [...]}`.

Annotations are `{"category", "bbox": [x0, y0, x1, y1], "mask"?: RLE, "polygon"?, "text"?,
"keypoints"?: {name: [x, y] | null}, "attributes"?}` in pixels; `image` is a path relative to
the JSONL file's folder that stays inside it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from ...errors import SkipReport
from .atomic import staged_files
from .lines import LineFile
from .records import Record, Where, checked_records, image_file, image_path, record_from_json, record_to_json


class JsonlDataset:
    """Lazy records of a JSONL file: indexed by byte offsets, each line parsed when asked for."""

    def __init__(self, path: str | os.PathLike, lenient: bool = False, report: SkipReport | None = None):
        self.lines = LineFile(path)
        self.root = Path(path).parent
        self.lenient, self.report = lenient, report

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, i: int) -> Record:
        where = Where(str(self.lines.path), f"line {i + 1}")
        try:
            data = json.loads(self.lines.line(i))
        except json.JSONDecodeError as error:
            raise where.bad(None, f"not valid JSON ({error.msg})") from None
        if not isinstance(data, dict):
            raise where.bad(None, "a record must be a JSON object")
        image = image_path(self.root, data.get("image"), where, "image")
        return record_from_json(data, where, image, self.lenient, self.report)

    def __iter__(self) -> Iterator[Record]:
        return checked_records(self, str(self.lines.path))


def write_jsonl(records: Iterable[Record], path: str | os.PathLike) -> int:
    """Write records (atomically, with the images it stores: see `image_file`). Returns the count."""
    path = Path(path)
    count = 0
    with staged_files() as staged, open(staged.path(path), "w") as out:
        for i, record in enumerate(records):
            out.write(json.dumps(record_to_json(record, image_file(record, i, path.parent, staged))) + "\n")
            count += 1
    return count
