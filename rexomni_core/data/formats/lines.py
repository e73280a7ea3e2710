"""Random access to the lines of a large text file through byte offsets (`.lineidx` files).

A `.lineidx` file holds one decimal byte offset per line of its data file, the index the
released Rex-Omni TSV data ships with. Without one, the offsets are found by one pass that reads
the file in blocks and parses nothing, so a 100k-line file is indexed without being held whole.
"""

from __future__ import annotations

import os
from pathlib import Path


def scan_offsets(path: str | os.PathLike) -> list[int]:
    offsets, position = [], 0
    with open(path, "rb") as handle:
        for line in handle:
            if line.strip():
                offsets.append(position)
            position += len(line)
    return offsets


def write_lineidx(path: str | os.PathLike, offsets: list[int]) -> None:
    Path(path).write_text("".join(f"{o}\n" for o in offsets))


class LineFile:
    """Line i of a text file, read by seeking to its offset (from `.lineidx` when present)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"file not found: {self.path}")
        index = self.path.with_name(self.path.name.rsplit(".", 1)[0] + ".lineidx")
        if index.exists():
            self.offsets = [int(v) for v in index.read_text().split()]
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
