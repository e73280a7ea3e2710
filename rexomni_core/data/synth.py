"""Synthetic datasets on disk: `images/NNNNNN.png` and one COCO `annotations.json` per folder.

A folder remembers how it was made in `synth.json` (world, split, seed, n). Images are
deterministic in (world, split, seed, index), so a run into a folder made with the same world,
split and seed reuses the images already there (an interrupted run resumes, a larger `n` grows
the set); any other folder that already holds images or annotations is refused, since reusing its
images would pair them with another scene's annotations.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .formats import CocoWriter
from .formats.atomic import staged_files
from .formats.records import Record
from .worlds import generate, world_categories

MANIFEST = "synth.json"
# What makes two runs' images the same; `n` may differ (a resumed or grown run).
IDENTITY = ("world", "split", "seed")


@dataclass
class SyntheticDataset:
    annotations: Path  # the COCO file
    written: int  # images drawn by this run
    reused: int  # images already in the folder from an earlier run with the same manifest


def scene_seed(seed: int, index: int) -> int:
    """Seed of image `index` of a run with `seed` (independent streams, no overlap between runs)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def write_synthetic_dataset(out: str | os.PathLike, world: str, n: int, seed: int = 0, split: str = "normal",
                            progress: bool = False) -> SyntheticDataset:
    """Write (or resume) `n` images of `world` and their COCO annotations into `out`; `progress`
    shows a bar on a terminal."""
    from tqdm import tqdm

    if n < 1:
        raise InputError(f"n must be at least 1, got {n}")
    out = Path(out)
    manifest = {"world": world, "split": split, "seed": seed, "n": n}
    check_folder(out, manifest)
    scenes = (generate(world, scene_seed(seed, i), split) for i in range(n))
    first = next(scenes)  # an unknown world or split fails here, before the folder is touched
    with staged_files() as staged:
        staged.path(out / MANIFEST).write_text(json.dumps(manifest))
    writer = CocoWriter(world_categories(world, split))
    reused = 0
    for i, scene in enumerate(tqdm(itertools.chain([first], scenes), total=n, desc=f"synth {world}",
                                   unit="img", disable=None if progress else True)):
        file_name = f"images/{i:06d}.png"
        if (out / file_name).exists():
            reused += 1  # same manifest: the image is deterministic, only its annotations are needed
        else:
            with staged_files() as staged:  # an interrupted run leaves no truncated image to resume from
                scene.image.save(staged.path(out / file_name), format="PNG")
        writer.add(Record(scene.image, scene.width, scene.height, scene.annotations, name=f"{i:06d}"), file_name)
    writer.write(out / "annotations.json")
    return SyntheticDataset(out / "annotations.json", n - reused, reused)


def check_folder(out: Path, manifest: dict) -> None:
    """Refuse a folder whose images were made by another world, split or seed, or by nobody known."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: is a file; the output of synth is a folder")
    path = out / MANIFEST
    if path.exists():
        found = _read_manifest(path)
        differing = [key for key in IDENTITY if found.get(key) != manifest[key]]
        if differing:
            was = ", ".join(f"{key} {found.get(key)!r}" for key in differing)
            asked = ", ".join(f"{key} {manifest[key]!r}" for key in differing)
            raise InputError(f"{out}: holds a synthetic dataset made with {was} ({MANIFEST}), not {asked}; "
                             "use another output folder, or delete this one to remake it")
    elif (out / "annotations.json").exists() or any((out / "images").glob("*")):
        raise InputError(f"{out}: already holds images or annotations.json but no {MANIFEST} saying how they were "
                         "made; use an empty output folder")


def _read_manifest(path: Path) -> dict:
    try:
        found = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not valid JSON ({error.msg})") from None
    if not isinstance(found, dict):
        raise InputError(f"{path}: must be a JSON object with fields {', '.join(IDENTITY)}")
    return found
