"""Real-data formats: COCO JSON, the released TSV layout, plain JSONL; all yield `Record`s lazily."""

from __future__ import annotations

from .coco import CocoDataset, CocoWriter, write_coco
from .jsonl import JsonlDataset, write_jsonl
from .records import BadRecord, Record, SkipReport
from .tsv import TsvDataset, write_tsv

FORMATS = ("coco", "tsv", "jsonl")


def open_dataset(path, fmt: str, lenient: bool = False, report: SkipReport | None = None, image_root=None):
    """A lazy dataset of `fmt` at `path` (a COCO file, a TSV folder, a JSONL file)."""
    if fmt == "coco":
        return CocoDataset(path, image_root=image_root, lenient=lenient, report=report)
    if fmt == "tsv":
        return TsvDataset(path, lenient=lenient, report=report)
    if fmt == "jsonl":
        return JsonlDataset(path, lenient=lenient, report=report)
    raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")


def write_dataset(records, path, fmt: str) -> int:
    """Write records as `fmt`; COCO copies no pixels: it points at the records' image files."""
    if fmt == "tsv":
        return write_tsv(records, path)
    if fmt == "jsonl":
        return write_jsonl(records, path)
    if fmt == "coco":
        return write_coco(records, path)
    raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")


__all__ = [
    "FORMATS", "BadRecord", "CocoDataset", "CocoWriter", "JsonlDataset", "Record", "SkipReport",
    "TsvDataset", "open_dataset", "write_coco", "write_dataset", "write_jsonl", "write_tsv",
]
