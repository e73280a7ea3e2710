"""Writes that never leave a partial destination.

Every dataset writer writes its files (COCO/JSONL file, the four TSV files, the images it stores)
under temporary names beside their destinations and renames them onto the destinations
(`os.replace`, atomic on one filesystem) only when the whole write has succeeded. A failure removes
the temporaries: the old destination stays exactly as it was, and a TSV file never sits beside a
`.lineidx` from another write.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


class StagedFiles:
    """Destinations of one write and the temporary file each one's new content goes to."""

    def __init__(self):
        self._temporaries: dict[Path, Path] = {}
        self._made_folders: list[Path] = []

    def path(self, destination: str | os.PathLike) -> Path:
        """Where to write `destination`'s new content; it becomes `destination` on `commit`."""
        destination = Path(destination)
        if destination in self._temporaries:
            raise RuntimeError(f"{destination} is already being written")
        self._make_folder(destination.parent)
        # Hidden, and ending in .tmp, so no reader's glob takes it for data.
        temporary = destination.with_name(f".{destination.name}.{uuid.uuid4().hex[:12]}.tmp")
        self._temporaries[destination] = temporary
        return temporary

    def current(self, destination: str | os.PathLike) -> Path:
        """Where `destination`'s content lies as of this write: its temporary once staged."""
        destination = Path(destination)
        return self._temporaries.get(destination, destination)

    def commit(self) -> None:
        try:
            for destination, temporary in list(self._temporaries.items()):
                os.replace(temporary, destination)
                del self._temporaries[destination]
        except BaseException:
            self.discard()
            raise
        self._made_folders.clear()

    def discard(self) -> None:
        """Remove every temporary not yet renamed, then the folders this write made for them."""
        for temporary in self._temporaries.values():
            temporary.unlink(missing_ok=True)
        self._temporaries.clear()
        for folder in reversed(self._made_folders):
            with contextlib.suppress(OSError):  # not empty: a committed file lives there
                folder.rmdir()
        self._made_folders.clear()

    def _make_folder(self, folder: Path) -> None:
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for made in reversed(missing):
            made.mkdir(exist_ok=True)  # another process may make it meanwhile
            self._made_folders.append(made)


@contextlib.contextmanager
def staged_files() -> Iterator[StagedFiles]:
    """A `StagedFiles` committed when the block ends normally and discarded when it raises."""
    staged = StagedFiles()
    try:
        yield staged
    except BaseException:
        staged.discard()
        raise
    staged.commit()


@contextlib.contextmanager
def staged_folder(destination: str | os.PathLike) -> Iterator[Path]:
    """A hidden folder beside `destination` to fill; when the block ends normally it replaces
    `destination` (a checkpoint is then complete or absent, wherever a run is killed), and when
    it raises it is removed."""
    destination = Path(destination)
    staging = destination.with_name(f".{destination.name}.{uuid.uuid4().hex[:12]}.partial")
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(destination, ignore_errors=True)
    staging.rename(destination)
