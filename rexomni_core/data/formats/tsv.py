"""The released project's TSV layout: `images.tsv`, `annotations.tsv` and their `.lineidx` files.

`images.tsv` line i: `<name>\t<base64 of the encoded image file>`; `annotations.tsv` line i:
`<name>\t<JSON record>` (the JSONL record without `image`); each `.lineidx` holds the byte offset
of every line, so any record is one seek away and the dataset is never loaded whole. The four
files are written together (see `atomic`): a `.lineidx` always belongs to the TSV beside it.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from PIL import Image

from ...errors import SkipReport
from .atomic import staged_files
from .lines import LineFile, index_path, write_lineidx
from .records import Record, Where, checked_records, encoded_image, record_from_json, record_to_json

IMAGES, ANNOTATIONS = "images.tsv", "annotations.tsv"


def tsv_files(folder: str | os.PathLike) -> tuple[Path, Path, Path, Path]:
    """images.tsv, annotations.tsv and their .lineidx files: the whole dataset in `folder`."""
    images, annotations = Path(folder) / IMAGES, Path(folder) / ANNOTATIONS
    return images, annotations, index_path(images), index_path(annotations)


def _split(line: str, where: Where) -> tuple[str, str]:
    name, tab, payload = line.partition("\t")
    if not tab or not payload:
        raise where.bad(None, "truncated line (expected '<name>\\t<data>')")
    return name, payload


class TsvDataset:
    def __init__(self, folder: str | os.PathLike, lenient: bool = False, report: SkipReport | None = None):
        images, annotations, images_index, annotations_index = tsv_files(folder)
        self.images, self.annotations = LineFile(images, images_index), LineFile(annotations, annotations_index)
        if len(self.images) != len(self.annotations):
            raise Where(str(folder)).bad(
                None, f"{IMAGES} has {len(self.images)} lines but {ANNOTATIONS} has {len(self.annotations)}"
            )
        self.lenient, self.report = lenient, report

    def __len__(self) -> int:
        return len(self.annotations)

    def __getitem__(self, i: int) -> Record:
        image_where = Where(str(self.images.path), f"line {i + 1}")
        name, encoded = _split(self.images.line(i), image_where)
        where = Where(str(self.annotations.path), f"line {i + 1}")
        annotation_name, payload = _split(self.annotations.line(i), where)
        if annotation_name != name:
            raise where.bad(None, f"record {annotation_name!r} does not match image {name!r}")
        try:
            data = json.loads(payload)
        except json.JSONDecodeError as error:
            raise where.bad(None, f"truncated or invalid JSON ({error.msg})") from None
        try:
            image = Image.open(io.BytesIO(base64.b64decode(encoded, validate=True)))
            image.load()
        except (binascii.Error, OSError, ValueError) as error:
            raise image_where.bad(None, f"image {name!r} does not decode ({error})") from None
        record = record_from_json(data, where, image.convert("RGB"), self.lenient, self.report)
        record.name = name
        return record

    def __iter__(self) -> Iterator[Record]:
        return checked_records(self, str(self.annotations.path))


def write_tsv(records: Iterable[Record], folder: str | os.PathLike) -> int:
    """Write images.tsv, annotations.tsv and both .lineidx files; returns the record count."""
    image_offsets, annotation_offsets = [], []
    with staged_files() as staged:
        images_file, annotations_file, images_index, annotations_index = map(staged.path, tsv_files(folder))
        with open(images_file, "wb") as images, open(annotations_file, "wb") as annotations:
            for i, record in enumerate(records):
                name = record.name or str(i)
                if "\t" in name or "\n" in name:
                    raise Where(str(folder), f"record {name!r}").bad(None, "a TSV name cannot hold tabs or newlines")
                image_offsets.append(images.tell())
                images.write(f"{name}\t".encode() + base64.b64encode(encoded_image(record)) + b"\n")
                annotation_offsets.append(annotations.tell())
                annotations.write(f"{name}\t{json.dumps(record_to_json(record, None))}\n".encode())
        write_lineidx(images_index, image_offsets)
        write_lineidx(annotations_index, annotation_offsets)
    return len(image_offsets)
