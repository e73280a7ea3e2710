"""Evaluate a Rex-Omni-nano checkpoint on a held-out nano-world test set and draw its model card
figures (learning curve, sample predictions).

    python -m rexomni_core.nano.report --model rexomni_core/assets/nano \
        --keep-curve --curve grpo+600:13200:runs/nano/grpo_v2_more/final --out rexomni_core/assets/nano

The model card's command, `python scripts/nano_report.py`, launches this module. The test sets
live in `--test-root` as heldout-SPLIT-COUNT (made when missing; shared with `grpo_study`).

The test set is `rexomni data synth --world shapes --split normal --seed 90210` (seeds the training
stream never draws: it derives scene seeds from (seed, index) through numpy's SeedSequence).
Scores come from the project's evaluators (`rexomni eval run`, sound protocol, phrases = the
categories present in each image); detection and pointing are also scored on an easier test set
(`--easy-split`, default the one-or-two-shape `few` split, same seed). The learning curve is teacher-forced coordinate error on 32
held-out conversations (normal split, every shapes task, seed 90210). Writes results.json,
learning_curve.png and samples.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..eval.run import evaluate_model
from ..model import RexOmni
from .heldout import HELDOUT_SEED, make_test_set
from .metrics import coordinate_error

TASKS = ("detection", "pointing", "visual_prompting")


def learning_curve(points: list[dict], out: Path) -> None:
    """Teacher-forced coordinate error of each checkpoint against cumulative optimizer steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    steps = [p["step"] for p in points]
    ax.plot(steps, [p["coordinate_mae_bins"] for p in points], "o-", label="coordinate error (bins, of 1000)")
    for p in points:
        ax.annotate(p["stage"], (p["step"], p["coordinate_mae_bins"]), fontsize=7, xytext=(2, 4), textcoords="offset points")
    ax.axhline(points[0]["centre_guess_mae_bins"], color="grey", linestyle=":", label="always the image centre")
    ax.set_xlabel("cumulative optimizer steps (batch 16)")
    ax.set_ylabel("mean |argmax - truth| (bins)")
    twin = ax.twinx()
    twin.plot(steps, [p["coordinate_within_20_bins"] for p in points], "s--", color="tab:green", label="share within 20 bins")
    twin.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    twin.legend(loc="upper right", fontsize=8)
    ax.set_title("Rex-Omni-nano: held-out coordinates, teacher-forced", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def sample_predictions(model: RexOmni, test_sets: list[Path], out: Path, count: int = 3) -> None:
    """The first `count` images of each test set, side by side, with the model's detections."""
    from PIL import Image

    from ..viz import annotate

    tiles = []
    for test_set in test_sets:
        payload = json.loads((test_set / "annotations.json").read_text())
        names = {c["id"]: c["name"] for c in payload["categories"]}
        for image in payload["images"][:count]:
            present = sorted({names[a["category_id"]] for a in payload["annotations"] if a["image_id"] == image["id"]})
            picture = Image.open(test_set / image["file_name"]).convert("RGB")  # "images/…"
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
    parser.add_argument("--model", required=True, help="the checkpoint to evaluate and ship")
    parser.add_argument(
        "--curve", nargs="*", default=[], metavar="STAGE:STEP:DIR",
        help="checkpoints for the learning curve: a label, the cumulative step, the directory",
    )
    parser.add_argument("--test-root", type=Path, default=Path("runs/nano"),
                        help="where the held-out test sets live (heldout-SPLIT-COUNT, made when missing)")
    parser.add_argument("--count", type=int, default=200, help="test images")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--easy-split", default="few",
        help="a second, easier test set (same seed and count) scored for detection and pointing too",
    )
    parser.add_argument(
        "--keep-curve", action="store_true",
        help="start from the curve in OUT/results.json (earlier stages) and add the --curve points to it",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from ..data.samplers import ConversationStream

    mixture = [{"world": "shapes", "task": task} for task in ("detection", "referring", "pointing", "visual_prompting")]
    held_out = ConversationStream(mixture=mixture, seed=HELDOUT_SEED)
    conversations = [held_out[i] for i in range(32)]
    earlier = args.out / "results.json"
    points = json.loads(earlier.read_text())["curve"] if args.keep_curve and earlier.is_file() else []
    for item in args.curve:
        stage, step, directory = item.split(":", 2)
        points.append({"stage": stage, "step": int(step), **coordinate_error(RexOmni.from_pretrained(directory), conversations)})
        print(json.dumps(points[-1]), flush=True)
    if points:
        learning_curve(points, args.out / "learning_curve.png")
    test_set = make_test_set(args.test_root, "normal", args.count)
    model = RexOmni.from_pretrained(args.model)
    results = {"model": args.model, "test_set": f"shapes normal, seed {HELDOUT_SEED}, {args.count} images",
               "curve": points}
    for task in TASKS:
        # resume=False: a re-saved checkpoint keeps its folder name, so old answers would be reused.
        results[task] = evaluate_model(
            model, test_set, task, args.test_root / f"eval-{Path(args.model).name}-{task}", resume=False
        )
        print(task, json.dumps(results[task]), flush=True)
    easy_set = make_test_set(args.test_root, args.easy_split, args.count)
    for task in ("detection", "pointing"):
        results[f"{args.easy_split}_{task}"] = evaluate_model(
            model, easy_set, task, args.test_root / f"eval-{Path(args.model).name}-{args.easy_split}-{task}",
            resume=False,
        )
        print(args.easy_split, task, json.dumps(results[f"{args.easy_split}_{task}"]), flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    sample_predictions(model, [easy_set, test_set], args.out / "samples.png")


if __name__ == "__main__":
    main()
