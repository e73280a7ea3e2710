"""The released project's TSV layout: `images.tsv`, `annotations.tsv` and their `.lineidx` files.

`images.tsv` line i: `<name>\t<base64 of the encoded image file>`; `annotations.tsv` line i:
`<name>\t<JSON record>` (the JSONL record without `image`); each `.lineidx` holds the byte offset
of every line, so any record is one seek away and the dataset is never loaded whole.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
from pathlib import Path
from typing import Iterable, Iterator

from PIL import Image

from .lines import LineFile, write_lineidx
from .records import BadRecord, Record, SkipReport, handle, record_from_json, record_to_json

IMAGES, ANNOTATIONS = "images.tsv", "annotations.tsv"


def _split(line: str, where: str) -> tuple[str, str]:
    name, tab, payload = line.partition("\t")
    if not tab or not payload:
        raise BadRecord(f"{where}: truncated line (expected '<name>\\t<data>')")
    return name, payload


class TsvDataset:
    def __init__(self, folder: str | os.PathLike, lenient: bool = False, report: SkipReport | None = None):
        folder = Path(folder)
        self.images, self.annotations = LineFile(folder / IMAGES), LineFile(folder / ANNOTATIONS)
        if len(self.images) != len(self.annotations):
            raise BadRecord(
                f"{folder}: {IMAGES} has {len(self.images)} lines but {ANNOTATIONS} has {len(self.annotations)}"
            )
        self.lenient, self.report = lenient, report

    def __len__(self) -> int:
        return len(self.annotations)

    def __getitem__(self, i: int) -> Record:
        image_where = f"{self.images.path}, line {i + 1}"
        name, encoded = _split(self.images.line(i), image_where)
        where = f"{self.annotations.path}, line {i + 1}"
        annotation_name, payload = _split(self.annotations.line(i), where)
        if annotation_name != name:
            raise BadRecord(f"{where}: record {annotation_name!r} does not match image {name!r}")
        try:
            data = json.loads(payload)
        except json.JSONDecodeError as error:
            raise BadRecord(f"{where}: truncated or invalid JSON ({error.msg})") from None
        try:
            image = Image.open(io.BytesIO(base64.b64decode(encoded, validate=True)))
            image.load()
        except (binascii.Error, OSError, ValueError) as error:
            raise BadRecord(f"{image_where}: image {name!r} does not decode ({error})") from None
        record = record_from_json(data, where, image.convert("RGB"), self.lenient, self.report)
        record.name = name
        return record

    def __iter__(self) -> Iterator[Record]:
        for i in range(len(self)):
            try:
                yield self[i]
            except BadRecord as error:
                handle(error, self.lenient, self.report, "bad records")


def _encoded_image(record: Record) -> bytes:
    """The image file's own bytes (no re-encoding) for a path; PNG for decoded pixels."""
    if isinstance(record.image, str):
        try:
            return Path(record.image).read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"record {record.name!r}: image file not found: {record.image}") from None
    buffer = io.BytesIO()
    record.image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_tsv(records: Iterable[Record], folder: str | os.PathLike) -> int:
    """Write images.tsv, annotations.tsv and both .lineidx files; returns the record count."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    image_offsets, annotation_offsets = [], []
    with open(folder / IMAGES, "wb") as images, open(folder / ANNOTATIONS, "wb") as annotations:
        for i, record in enumerate(records):
            name = record.name or str(i)
            if "\t" in name or "\n" in name:
                raise BadRecord(f"record {name!r}: a TSV name cannot hold tabs or newlines")
            image_offsets.append(images.tell())
            images.write(f"{name}\t".encode() + base64.b64encode(_encoded_image(record)) + b"\n")
            annotation_offsets.append(annotations.tell())
            annotations.write(f"{name}\t{json.dumps(record_to_json(record, None))}\n".encode())
    write_lineidx(folder / "images.lineidx", image_offsets)
    write_lineidx(folder / "annotations.lineidx", annotation_offsets)
    return len(image_offsets)
