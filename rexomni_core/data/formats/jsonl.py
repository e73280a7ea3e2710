"""Plain JSONL: one image per line, `{"name", "image", "width", "height", "annotations": [...]}`.

Annotations are `{"category", "bbox": [x0, y0, x1, y1], "mask"?: RLE, "polygon"?, "text"?,
"keypoints"?: {name: [x, y] | null}, "attributes"?}` in pixels; `image` is a path relative to
the JSONL file's folder (or absolute).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Iterator

from .lines import LineFile
from .records import BadRecord, Record, SkipReport, handle, image_exists, image_file, record_from_json, record_to_json


class JsonlDataset:
    """Lazy records of a JSONL file: indexed by byte offsets, each line parsed when asked for."""

    def __init__(self, path: str | os.PathLike, lenient: bool = False, report: SkipReport | None = None):
        self.lines = LineFile(path)
        self.root = Path(path).parent
        self.lenient, self.report = lenient, report

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, i: int) -> Record:
        where = f"{self.lines.path}, line {i + 1}"
        try:
            data = json.loads(self.lines.line(i))
        except json.JSONDecodeError as error:
            raise BadRecord(f"{where}: not valid JSON ({error.msg})") from None
        image = data.get("image") if isinstance(data, dict) else None
        if not isinstance(image, str):
            raise BadRecord(f"{where}: field 'image' must be a path")
        return record_from_json(data, where, str(self.root / image), self.lenient, self.report)

    def __iter__(self) -> Iterator[Record]:
        for i in range(len(self)):
            try:
                record = self[i]
            except BadRecord as error:
                handle(error, self.lenient, self.report, "bad records")
                continue
            if image_exists(record, str(self.lines.path), self.lenient, self.report):
                yield record


def write_jsonl(records: Iterable[Record], path: str | os.PathLike) -> int:
    """Write records; decoded images are saved as PNG in `images/` beside the file. Returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "w") as out:
        for i, record in enumerate(records):
            out.write(json.dumps(record_to_json(record, image_file(record, i, path.parent))) + "\n")
            count += 1
    return count
