"""Region confidences on held-out nano detection: AP with the scores against AP with constant
scores (the answer's own order), calibration (reliability diagram, ECE), how often a right box
outscores a wrong one (AUROC), for every definition in `model.confidence.CONFIDENCES`; and F1
with and without grammar-constrained decoding.

    python -m rexomni_core.nano.confidence_study --count 100 --out docs/confidence

The test sets are `rexomni data synth --world shapes --split few|normal --seed 90210`
(`nano.heldout`, made in --test-root when missing). Each (split, decoding, definition) is one
`eval.run.evaluate_model` run in --test-root (resumed when interrupted), whose predictions.json is
what `rexomni eval ap` reads; a box is right when COCO's greedy matching at IoU 0.5 pairs it with
a box of its category. Writes results.json and reliability-SPLIT.png / pr-SPLIT.png to --out.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..eval.calibration import auroc, correct_detections, reliability, save_reliability_diagram
from ..eval.coco_ap import coco_ap
from ..eval.inputs import detections_from_records, ground_truth_from_payload, read_json
from ..eval.run import evaluate_model, find_dataset
from ..model import NANO_DIR, RexOmni
from ..model.confidence import CONFIDENCES, DEFAULT_CONFIDENCE
from .heldout import make_test_set

SPLITS = ("few", "normal")


def score_run(test_set: Path, run_dir: Path) -> dict:
    """AP with the run's scores and with constant ones, calibration and ranking of its boxes."""
    gt_file, _ = find_dataset(test_set)
    gt = ground_truth_from_payload(read_json(gt_file), str(gt_file))
    dets = detections_from_records(read_json(run_dir / "predictions.json"), gt, lenient=True)
    scored = coco_ap(gt, dets)
    constant = coco_ap(gt, replace(dets, scores=np.ones(len(dets))))
    right, counted = correct_detections(gt, dets)
    scores = dets.scores[counted]
    curve = reliability(scores, right[counted])
    return {
        "AP": scored.stats["AP"], "AP50": scored.stats["AP50"],
        "AP_constant": constant.stats["AP"], "AP50_constant": constant.stats["AP50"],
        "ECE": curve.ece, "AUROC": auroc(scores, right[counted]),
        "mean_score_right": float(scores[right[counted]].mean()) if right[counted].any() else float("nan"),
        "mean_score_wrong": float(scores[~right[counted]].mean()) if (~right[counted]).any() else float("nan"),
        "boxes": int(counted.sum()), "right": int(right[counted].sum()),
        "_reliability": curve, "_curves": (scored.curves["0.50"], constant.curves["0.50"], scored.recall_steps),
    }


def save_pr_curves(runs: dict[str, dict], path: Path, title: str) -> None:
    """Precision-recall at IoU 0.5: each definition's scores, and constant scores."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(4.6, 4), dpi=100)
    for name, run in runs.items():
        precision, _, recall = run["_curves"]
        axes.plot(recall, precision, label=f"{name} (AP50 {run['AP50']:.3f})")
    first = next(iter(runs.values()))
    _, constant, recall = first["_curves"]
    axes.plot(recall, constant, color="black", linestyle="--", label=f"constant (AP50 {first['AP50_constant']:.3f})")
    axes.set(xlabel="recall", ylabel="precision (interpolated)", xlim=(0, 1), ylim=(0, 1.02), title=title)
    axes.legend(loc="upper right", fontsize=7)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint directory (default: the embedded nano)")
    parser.add_argument("--count", type=int, default=100, help="test images per split")
    parser.add_argument("--test-root", type=Path, default=Path("runs/nano"))
    parser.add_argument("--out", type=Path, required=True, help="folder for results.json and the plots")
    args = parser.parse_args(argv)
    model = RexOmni.from_pretrained(args.model)
    # The weights' hash tells checkpoints apart, so a re-run resumes only its own answers.
    weights = (Path(args.model) if args.model else NANO_DIR) / "model.safetensors"
    fingerprint = "sha256:" + hashlib.sha256(weights.read_bytes()).hexdigest()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"model": args.model or "embedded nano", "count": args.count, "default": DEFAULT_CONFIDENCE}
    for split in SPLITS:
        test_set = make_test_set(args.test_root, split, args.count)
        runs = {}
        for constrained, definitions in ((True, tuple(CONFIDENCES)), (False, (DEFAULT_CONFIDENCE,))):
            for definition in definitions:
                name = f"{'constrained' if constrained else 'free'}-{definition}"
                run_dir = args.test_root / f"confidence-{split}-{args.count}" / name
                metrics = evaluate_model(model, test_set, "detection", run_dir, model_fingerprint=fingerprint,
                                         constrained=constrained, confidence=definition)
                runs[name] = score_run(test_set, run_dir) | {
                    "f1@0.5": metrics["f1@0.5"], "well_formed": metrics["well_formed"],
                    "mean_output_tokens": metrics["mean_output_tokens"],
                }
                print(split, name, json.dumps({k: v for k, v in runs[name].items() if not k.startswith("_")}), flush=True)
        constrained_runs = {n.removeprefix("constrained-"): run for n, run in runs.items() if n.startswith("constrained-")}
        title = f"nano, held-out shapes {split} ({args.count} images)"
        save_reliability_diagram({n: run["_reliability"] for n, run in constrained_runs.items()},
                                 args.out / f"reliability-{split}.png", title=title)
        save_pr_curves(constrained_runs, args.out / f"pr-{split}.png", title=f"nano, held-out shapes {split}, IoU 0.5")
        results[split] = {name: {k: v for k, v in run.items() if not k.startswith("_")} for name, run in runs.items()}
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(markdown_table(results))
    return 0


def markdown_table(results: dict) -> str:
    lines = ["| split | decoding | confidence | AP | AP (constant) | AP50 | AP50 (constant) | ECE | AUROC | F1@0.5 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for split in SPLITS:
        for name, run in results[split].items():
            decoding, definition = name.split("-", 1)
            lines.append(f"| {split} | {decoding} | {definition} | {run['AP']:.3f} | {run['AP_constant']:.3f} | "
                         f"{run['AP50']:.3f} | {run['AP50_constant']:.3f} | {run['ECE']:.3f} | {run['AUROC']:.3f} | "
                         f"{run['f1@0.5']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
