"""The held-out data of every Rex-Omni-nano measurement: one seed that the training streams never
draw (they derive scene seeds from (seed, index) through numpy's SeedSequence), and the shapes
test sets generated from it, shared by the report and the GRPO study."""

from __future__ import annotations

from pathlib import Path

HELDOUT_SEED = 90210


def make_test_set(root: Path, split: str, count: int) -> Path:
    """The held-out shapes test set `root/heldout-SPLIT-COUNT`, generated when missing."""
    folder = root / f"heldout-{split}-{count}"
    if not (folder / "annotations.json").is_file():
        from ..cli import main

        main(["data", "synth", "--world", "shapes", "--split", split, "--n", str(count),
              "--seed", str(HELDOUT_SEED), "--out", str(folder)])
    return folder
