"""Real-data formats: COCO JSON, the released TSV layout, plain JSONL; all yield `Record`s lazily."""

from __future__ import annotations

from pathlib import Path

from ...errors import InputError, SkipReport
from .coco import CocoDataset, CocoWriter, write_coco
from .jsonl import JsonlDataset, write_jsonl
from .records import Record
from .tsv import TsvDataset, tsv_files, write_tsv

FORMATS = ("coco", "tsv", "jsonl")


def open_dataset(path, fmt: str, lenient: bool = False, report: SkipReport | None = None, image_root=None):
    """A lazy dataset of `fmt` at `path` (a COCO file, a TSV folder, a JSONL file)."""
    if fmt == "coco":
        return CocoDataset(path, image_root=image_root, lenient=lenient, report=report)
    if fmt == "tsv":
        return TsvDataset(path, lenient=lenient, report=report)
    if fmt == "jsonl":
        return JsonlDataset(path, lenient=lenient, report=report)
    raise InputError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")


def write_dataset(records, path, fmt: str) -> int:
    """Write records as `fmt`; COCO copies no pixels: it points at the records' image files."""
    if fmt == "tsv":
        return write_tsv(records, path)
    if fmt == "jsonl":
        return write_jsonl(records, path)
    if fmt == "coco":
        return write_coco(records, path)
    raise InputError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")


def dataset_files(path, fmt: str) -> list[Path]:
    """The files a dataset of `fmt` at `path` consists of: what a reader reads, a writer replaces."""
    return list(tsv_files(path)) if fmt == "tsv" else [Path(path)]


def check_conversion(source, source_format: str, destination, destination_format: str, overwrite: bool = False) -> None:
    """Refuse a conversion that would write onto its own source, or (unless `overwrite`) replace
    an existing dataset: a convert must never be the way a user's data is lost."""
    read = {file.resolve() for file in dataset_files(source, source_format)} | {Path(source).resolve()}
    written = dataset_files(destination, destination_format)
    if read & {file.resolve() for file in [Path(destination), *written]}:
        raise InputError(f"{destination}: this is the source being converted ({source}); "
                         "write the conversion to another file or folder")
    destination = Path(destination)
    if destination_format == "tsv" and destination.exists() and not destination.is_dir():
        raise InputError(f"{destination}: a TSV dataset is a folder, and this is a file")
    if destination_format != "tsv" and destination.is_dir():
        raise InputError(f"{destination}: a {destination_format} dataset is a file, and this is a folder")
    existing = [file for file in written if file.exists()]
    if existing and not overwrite:
        raise InputError(f"{existing[0]}: already exists; pass --overwrite to replace it")


__all__ = [
    "FORMATS", "CocoDataset", "CocoWriter", "JsonlDataset", "Record",
    "TsvDataset", "check_conversion", "dataset_files", "open_dataset", "write_coco", "write_dataset",
    "write_jsonl", "write_tsv",
]
