"""The nano's scorecard: every row of the v3 target table (model card), measured on held-out
scenes of each world (`HELDOUT_SEED`, which no training stream draws), with the project's
evaluators (`eval.run.evaluate_model`, sound protocol, phrases = what each image holds).

    python -m rexomni_core.nano.scorecard --model DIR [--count 200] --out runs/nano/scorecard-v3 [--worlds shapes]

The target table's referring row is not here: a `rexomni data synth` folder carries category
names, not referring expressions, so `eval run --task referring` on it asks category names and
scores detection again.

Writes `scorecard.json` (each row: task, metric, target, measured, well-formed share) into
`--out` and prints the table as Markdown.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..eval.run import evaluate_model
from ..model import RexOmni
from .heldout import HELDOUT_SEED


@dataclass(frozen=True)
class Row:
    world: str
    task: str
    metric: str  # a key of the task's metrics.json
    target: float
    label: str


ROWS = (
    Row("shapes", "detection", "f1@0.5", 0.85, "shapes normal, detection F1@0.5"),
    Row("shapes", "detection", "f1@miou", 0.55, "shapes normal, detection F1@mIoU"),
    Row("shapes", "pointing", "f1@point", 0.85, "shapes normal, pointing F1@point"),
    Row("shapes", "visual_prompting", "f1@0.5", 0.70, "shapes normal, visual prompting F1@0.5"),
    Row("ocr", "ocr_box", "det_f1@0.5", 0.80, "OCR words, detection-only F1@0.5"),
    Row("ocr", "ocr_box", "e2e_f1@0.5", 0.50, "OCR words, end-to-end F1@0.5"),
    Row("gui", "gui_grounding", "accuracy", 0.80, "GUI grounding accuracy"),
    Row("keypoints", "keypoint", "f1@oks0.5", 0.60, "keypoints F1@OKS 0.5"),
)


def heldout_folder(root: Path, world: str, count: int) -> Path:
    """`root/heldout-WORLD-COUNT`: the world's held-out normal-split scenes, made when missing."""
    folder = root / f"heldout-{world}-{count}"
    if not (folder / "annotations.json").is_file():
        from ..cli import main

        main(["data", "synth", "--world", world, "--split", "normal", "--n", str(count),
              "--seed", str(HELDOUT_SEED), "--out", str(folder)])
    return folder


def scorecard(model: RexOmni, root: Path, out: Path, count: int, fingerprint: str,
              worlds: tuple[str, ...] | None = None) -> list[dict]:
    """The rows of `worlds` (None: every world), measured; also written to `out/scorecard.json`."""
    measured: dict[str, dict] = {}
    rows = []
    for row in ROWS:
        if worlds is not None and row.world not in worlds:
            continue
        if row.task not in measured:
            data = heldout_folder(root, row.world, count)
            measured[row.task] = evaluate_model(model, data, row.task, out / row.task, model_fingerprint=fingerprint)
        metrics = measured[row.task]
        rows.append(asdict(row) | {"measured": metrics.get(row.metric), "well_formed": metrics["well_formed"]})
    (out / "scorecard.json").write_text(json.dumps(rows, indent=1))
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| world / task | target | measured | well-formed |", "|---|---|---|---|"]
    for row in rows:
        value = "n/a" if row["measured"] is None else f"{row['measured']:.3f}"
        lines.append(f"| {row['label']} | ≥ {row['target']:.2f} | {value} | {row['well_formed']:.0%} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a checkpoint directory (default: the shipped nano)")
    parser.add_argument("--count", type=int, default=200, help="held-out images per world")
    parser.add_argument("--test-root", type=Path, default=Path("runs/nano"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--worlds", default=None, help="comma-separated worlds to score (default: all): shapes,ocr,gui,keypoints")
    args = parser.parse_args()
    worlds = tuple(args.worlds.split(",")) if args.worlds else None
    known = {row.world for row in ROWS}
    if worlds is not None and set(worlds) - known:
        parser.error(f"--worlds: unknown {sorted(set(worlds) - known)}; known: {', '.join(sorted(known))}")
    model = RexOmni.from_pretrained(args.model, device="cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = scorecard(model, args.test_root, args.out, args.count, fingerprint=str(args.model or "shipped nano"), worlds=worlds)
    print(markdown(rows))


if __name__ == "__main__":
    main()
