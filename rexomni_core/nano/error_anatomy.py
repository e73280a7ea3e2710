"""What a nano detection answer gets wrong, attribute by attribute: each box it writes either
lands on a true object (IoU ≥ 0.5 with one) or hits nothing; one that lands is right, or names
the wrong colour (right shape), the wrong shape (right colour), or neither of that object's.
Shapes-world phrases are "<colour> <shape>", so the split says whether the tokens lacked colour,
lacked shape, or the phrase was bound to whichever object was there (neither).

    python -m rexomni_core.nano.error_anatomy --data runs/nano/heldout-shapes-100 RUN_DIR...

RUN_DIR is an `eval run` (or scorecard) output folder holding `detection/answers.jsonl`, or the
task folder itself.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..coco import bbox_to_xyxy
from ..errors import InputError
from ..geometry import box_iou_matrix

OUTCOMES = ("right", "wrong colour", "wrong shape", "neither", "hits nothing")


def box_outcome(phrase: str, box: Sequence[float], truth: Sequence[tuple[str, Sequence[float]]]) -> str:
    """The outcome (one of `OUTCOMES`) of a box named `phrase` among an image's true (name, box)s."""
    if not truth:
        return "hits nothing"
    ious = box_iou_matrix(np.array([box], dtype=np.float64), np.array([b for _, b in truth], dtype=np.float64))[0]
    landed = [truth[i][0] for i in np.flatnonzero(ious >= 0.5)]
    if not landed:
        return "hits nothing"
    if phrase in landed:
        return "right"
    colour, _, shape = phrase.partition(" ")
    if any(name.partition(" ")[2] == shape for name in landed):
        return "wrong colour"
    if any(name.partition(" ")[0] == colour for name in landed):
        return "wrong shape"
    return "neither"


def anatomy(answers: Iterable[Mapping], truth: Mapping[int, Sequence[tuple[str, Sequence[float]]]]) -> Counter:
    """Outcome counts over every box of `answers` (answers.jsonl records) against `truth` by image id."""
    counts = Counter({outcome: 0 for outcome in OUTCOMES})
    for answer in answers:
        for region in answer["prediction"]["regions"]:
            if region["kind"] == "box":
                counts[box_outcome(region["phrase"], region["coords"], truth.get(answer["image_id"], ()))] += 1
    return counts


def coco_truth(annotations_file: Path) -> dict[int, list[tuple[str, list[float]]]]:
    coco = json.loads(annotations_file.read_text())
    names = {category["id"]: category["name"] for category in coco["categories"]}
    truth: dict[int, list[tuple[str, list[float]]]] = {image["id"]: [] for image in coco["images"]}
    for annotation in coco["annotations"]:
        truth[annotation["image_id"]].append((names[annotation["category_id"]], bbox_to_xyxy(annotation["bbox"])))
    return truth


def _answers_file(run: Path) -> Path:
    for candidate in (run / "answers.jsonl", run / "detection" / "answers.jsonl"):
        if candidate.is_file():
            return candidate
    raise InputError(f"{run}: no answers.jsonl (nor detection/answers.jsonl) in it")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="eval run folders (or their detection/ folders)")
    parser.add_argument("--data", type=Path, required=True, help="the held-out folder the runs answered (annotations.json)")
    args = parser.parse_args(argv)
    truth = coco_truth(args.data / "annotations.json")
    print("| run | boxes | " + " | ".join(OUTCOMES) + " |")
    print("|---|---|" + "---|" * len(OUTCOMES))
    for run in args.runs:
        lines = _answers_file(run).read_text().splitlines()
        counts = anatomy((json.loads(line) for line in lines if line.strip()), truth)
        print(f"| {run} | {sum(counts.values())} | " + " | ".join(str(counts[o]) for o in OUTCOMES) + " |")


if __name__ == "__main__":
    main()
