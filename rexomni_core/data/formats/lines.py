"""Random access to the lines of a large text file through byte offsets (`.lineidx` files).

A `.lineidx` file holds one decimal byte offset per line of its data file, the index the
released Rex-Omni TSV data ships with. Without one, the offsets are found by one pass that reads
the file in blocks and parses nothing, so a 100k-line file is indexed without being held whole.
Only TSV data uses an index: `NAME.lineidx` of a JSONL file could be the index of `NAME.tsv`
beside it (annotations.jsonl and annotations.tsv), so a JSONL file is always scanned.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import InputError, MissingInputError


def scan_offsets(path: str | os.PathLike) -> list[int]:
    offsets, position = [], 0
    with open(path, "rb") as handle:
        for line in handle:
            if line.strip():
                offsets.append(position)
            position += len(line)
    return offsets


def index_path(path: str | os.PathLike) -> Path:
    """The `.lineidx` file of a data file: `images.tsv` → `images.lineidx`."""
    path = Path(path)
    return path.with_name(path.name.rsplit(".", 1)[0] + ".lineidx")


def write_lineidx(path: str | os.PathLike, offsets: list[int]) -> None:
    Path(path).write_text("".join(f"{o}\n" for o in offsets))


def read_lineidx(path: str | os.PathLike) -> list[int]:
    try:
        return [int(v) for v in Path(path).read_text().split()]
    except ValueError:
        raise InputError(f"{path}: a .lineidx file must hold one integer byte offset per line") from None


class LineFile:
    """Line i of a text file, read by seeking to its offset (from the `index` file when present)."""

    def __init__(self, path: str | os.PathLike, index: str | os.PathLike | None = None):
        self.path = Path(path)
        if not self.path.exists():
            raise MissingInputError(f"file not found: {self.path}")
        if index is not None and Path(index).exists():
            self.offsets = read_lineidx(index)
            if self.offsets and self.offsets[-1] >= self.path.stat().st_size:
                # An index of another version of the file: its lines would be read at wrong offsets.
                raise InputError(f"{index}: offsets run past the end of {self.path}; the index belongs to another "
                                 "version of it (delete the .lineidx file: the TSV is then indexed by scanning it)")
        else:
            self.offsets = scan_offsets(self.path)
        self._handle = None

    def __len__(self) -> int:
        return len(self.offsets)

    def line(self, i: int) -> str:
        if self._handle is None:
            self._handle = open(self.path, "rb")
        self._handle.seek(self.offsets[i])
        return self._handle.readline().decode("utf-8").rstrip("\r\n")

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
