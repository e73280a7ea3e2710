"""The paper's SFT vs SFT+GRPO study at nano scale: detection on held-out shapes test sets, with
the degenerate-output rates GRPO is meant to remove, and the reward over GRPO training.

    python -m rexomni_core.nano.grpo_study --model sft=rexomni_core/assets/nano \
        --model grpo=runs/nano/grpo/final --grpo-run grpo=runs/nano/grpo --out runs/nano/grpo-study

For each model and each split (default normal, dense, few; 200 images each, seed 90210, the
held-out seed of `heldout`) it runs `evaluate_model` (sound protocol, phrases = the
categories present) and tabulates F1@0.5, F1@0.95, F1@mIoU, the duplicate rate (IoU ≥ 0.95 with an
earlier box of the same phrase), the paper's degenerate-answer rate (a coordinate repeated 10
times in a row and more than twice as many boxes as the ground truth), the large-box rate
(> 95 % of the image) and the mean number of output tokens. Writes study.json, study.md and,
from the GRPO run's log, reward.png. The model card's command, `python scripts/nano_grpo_study.py`,
launches this module.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..eval.run import evaluate_model
from ..model import RexOmni
from .heldout import HELDOUT_SEED, make_test_set

COLUMNS = {
    "f1@0.5": "F1@0.5",
    "f1@0.95": "F1@0.95",
    "f1@miou": "F1@mIoU",
    "duplicate_rate": "duplicates (IoU≥0.95)",
    "degenerate_answer_rate": "degenerate answers (paper)",
    "large_box_rate": "large boxes",
    "mean_output_tokens": "output tokens",
    "well_formed": "well-formed",
}


def markdown_table(rows: list[dict]) -> str:
    header = "| split | model | " + " | ".join(COLUMNS.values()) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    for row in rows:
        cells = [f"{row['metrics'][key]:.1f}" if key == "mean_output_tokens" else f"{row['metrics'][key]:.3f}"
                 for key in COLUMNS]
        lines.append(f"| {row['split']} | {row['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def reward_plot(logs: dict[str, list[dict]], out: Path, window: int = 20) -> None:
    """Per GRPO run: the mean geometric reward of the sampled completions (running mean over
    `window` logged steps) and, on a second panel, the KL to the starting model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (reward_ax, kl_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, log_history in logs.items():
        logged = [entry for entry in log_history if "rewards/geometry/mean" in entry]
        steps = np.array([entry["step"] for entry in logged])
        reward = np.array([entry["rewards/geometry/mean"] for entry in logged])
        width = min(window, len(reward))
        smooth = np.convolve(reward, np.ones(width) / width, mode="valid")
        line, = reward_ax.plot(steps[width - 1:], smooth, label=label)
        reward_ax.plot(steps, reward, color=line.get_color(), alpha=0.15)
        kl_ax.plot(steps, [entry.get("kl", 0.0) for entry in logged], color=line.get_color(), label=label)
    reward_ax.set_xlabel("GRPO step")
    reward_ax.set_ylabel("box / point reward of sampled answers")
    reward_ax.set_title(f"reward (faint: logged means; line: running mean of {window})", fontsize=9)
    kl_ax.set_xlabel("GRPO step")
    kl_ax.set_ylabel("KL to the SFT model")
    kl_ax.set_title("KL", fontsize=9)
    reward_ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def grpo_log(run: Path) -> list[dict]:
    """The log of a finished GRPO run (`final/log_history.json`) or of its newest checkpoint."""
    from ..train.common import latest_checkpoint

    if (run / "final" / "log_history.json").is_file():
        return json.loads((run / "final" / "log_history.json").read_text())
    checkpoint = latest_checkpoint(run)
    if checkpoint is None:
        raise SystemExit(f"{run}: no final/log_history.json and no checkpoint-N/trainer_state.json to plot")
    return json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]


def _labelled(item: str) -> tuple[str, str]:
    label, sep, directory = item.partition("=")
    if not sep or not label:
        raise SystemExit(f"expected LABEL=DIR, got {item!r}")
    return label, directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, metavar="LABEL=DIR",
                        help="a model to compare (repeat); DIR a checkpoint directory")
    parser.add_argument("--splits", nargs="+", default=["normal", "dense", "few"])
    parser.add_argument("--count", type=int, default=200, help="test images per split")
    parser.add_argument("--test-root", type=Path, default=Path("runs/nano"),
                        help="where the held-out test sets live (heldout-SPLIT-COUNT, made when missing)")
    parser.add_argument("--grpo-run", action="append", default=[], metavar="LABEL=DIR",
                        help="a GRPO output_dir whose reward to plot (repeat)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, directory in (_labelled(item) for item in args.model):
        model = RexOmni.from_pretrained(directory)
        for split in args.splits:
            test_set = make_test_set(args.test_root, split, args.count)
            metrics = evaluate_model(model, test_set, "detection", args.out / f"{label}-{split}", resume=False)
            rows.append({"model": label, "directory": directory, "split": split, "metrics": metrics})
            print(label, split, json.dumps({k: metrics[k] for k in COLUMNS}), flush=True)
    rows.sort(key=lambda row: args.splits.index(row["split"]))
    (args.out / "study.json").write_text(json.dumps(
        {"test_sets": f"shapes, seed {HELDOUT_SEED}, {args.count} images per split", "rows": rows}, indent=1))
    table = markdown_table(rows)
    (args.out / "study.md").write_text(table + "\n")
    print(table)
    if args.grpo_run:
        runs = dict(_labelled(item) for item in args.grpo_run)
        reward_plot({label: grpo_log(Path(run)) for label, run in runs.items()}, args.out / "reward.png")


if __name__ == "__main__":
    main()
