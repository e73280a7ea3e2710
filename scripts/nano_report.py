"""Evaluate a Rex-Omni-nano checkpoint on a held-out nano-world test set and draw its model card
figures (learning curve, sample predictions).

    python scripts/nano_report.py --model /work/runs/nano/stage2/checkpoint-5000 \
        --runs /work/runs/nano/stage1 /work/runs/nano/stage2 --out rexomni_core/assets/nano

The test set is `rexomni data synth --world shapes --split normal --seed 90210` (seeds the training
stream never draws: it derives scene seeds from (seed, index) through numpy's SeedSequence).
Scores come from the project's evaluators (`rexomni eval run`, sound protocol, phrases = the
categories present in each image). Writes results.json, learning_curve.png and samples.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rexomni_core.eval.run import evaluate_model
from rexomni_core.model import RexOmni

TASKS = ("detection", "pointing", "visual_prompting")
HELDOUT_SEED = 90210


def make_test_set(folder: Path, count: int) -> Path:
    if not (folder / "annotations.json").is_file():
        from rexomni_core.cli import main

        main(["data", "synth", "--world", "shapes", "--split", "normal", "--n", str(count),
              "--seed", str(HELDOUT_SEED), "--out", str(folder)])
    return folder


def learning_curve(runs: list[Path], out: Path, evaluations: list[dict]) -> None:
    """Training loss over cumulative steps of the stages, with held-out F1 points if given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    offset = 0
    for run in runs:
        states = sorted(run.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1]))
        if not states:
            continue
        history = [h for h in json.loads(states[-1].read_text())["log_history"] if "loss" in h]
        ax.plot([offset + h["step"] for h in history], [h["loss"] for h in history], label=f"train loss ({run.name})")
        offset += history[-1]["step"] if history else 0
    ax.set_xlabel("optimizer step (batch 16)")
    ax.set_ylabel("loss (soft coordinate CE)")
    if evaluations:
        twin = ax.twinx()
        steps = [e["step"] for e in evaluations]
        twin.plot(steps, [e["detection_f1@0.5"] for e in evaluations], "o-", color="black", label="held-out detection F1@0.5")
        twin.set_ylabel("held-out F1@0.5")
        twin.set_ylim(0, 1)
        twin.legend(loc="upper center", fontsize=8)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def sample_predictions(model: RexOmni, test_set: Path, out: Path, count: int = 4) -> None:
    from PIL import Image

    from rexomni_core.viz import annotate

    payload = json.loads((test_set / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in payload["categories"]}
    tiles = []
    for image in payload["images"][:count]:
        present = sorted({names[a["category_id"]] for a in payload["annotations"] if a["image_id"] == image["id"]})
        picture = Image.open(test_set / "images" / image["file_name"]).convert("RGB")
        tiles.append(annotate(picture, model.predict(picture, categories=present)))
    height = max(t.height for t in tiles)
    sheet = Image.new("RGB", (sum(t.width for t in tiles), height), "white")
    x = 0
    for tile in tiles:
        sheet.paste(tile, (x, 0))
        x += tile.width
    sheet.save(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--runs", nargs="*", type=Path, default=[], help="training output dirs, in stage order")
    parser.add_argument("--test-set", type=Path, default=Path("/work/runs/nano/heldout"))
    parser.add_argument("--count", type=int, default=200, help="test images")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--evaluations", type=Path, help="JSON list of {step, detection_f1@0.5} for the curve")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    test_set = make_test_set(args.test_set, args.count)
    model = RexOmni.from_pretrained(args.model)
    results = {"model": args.model, "test_set": f"shapes normal, seed {HELDOUT_SEED}, {args.count} images"}
    for task in TASKS:
        results[task] = evaluate_model(model, test_set, task, args.test_set.parent / f"eval-{Path(args.model).name}-{task}")
        print(task, json.dumps(results[task]), flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    evaluations = json.loads(args.evaluations.read_text()) if args.evaluations else []
    learning_curve(args.runs, args.out / "learning_curve.png", evaluations)
    sample_predictions(model, test_set, args.out / "samples.png")


if __name__ == "__main__":
    main()
