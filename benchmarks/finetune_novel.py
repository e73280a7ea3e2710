"""Does `rexomni finetune` teach the shipped nano two new colours, quickly, without losing its own?

The issue's target: on 500 `novel` images (orange and purple shapes, never in nano's training
stream), at most 15 minutes of fine-tuning on 2 CPU cores should lift novel-category detection
F1@0.5 from ≈ 0 to at least 80 % of what the shipped nano scores on its own categories, while F1
on those original categories drops by at most 0.05. Both fine-tunings (every weight, LoRA) run
against the baseline, the shipped nano, in the same run:

1. `rexomni data synth --world shapes --split novel --n N` (seed 0): the training data;
2. two held-out test sets from the held-out seed (`nano/heldout.py`): `novel` and `normal`
   (the nano model card's normal test set);
3. the shipped nano on both; then `finetune(..., minutes=M)` per mode and its `final/` on both.

Each prompt asks for the categories its image holds (`present`, the project's protocol, as in the
model card), so on novel images a model that boxes shapes whatever their colour already scores;
novel images are also scored with every novel category asked in each prompt (`all`: ten), where
naming the colour right is what counts, and the original categories alike with ten asked in each
prompt (`padded`: the image's own and absent ones drawn to ten), the like-for-like bar for it.

    python benchmarks/finetune_novel.py --out runs/bench-finetune              # the target (≈ 1 h)
    python benchmarks/finetune_novel.py --out /tmp/b --n 60 --steps 10 --test 8  # a smoke run
    python benchmarks/finetune_novel.py --out DIR --model CHECKPOINT           # from another start

Writes `OUT/benchmark.json` and prints the table; every stage resumes (rerun the same command).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

TASK = "detection"


def evaluate(model_dir: Path | None, test_sets: dict[str, tuple[Path, str]], out: Path) -> dict[str, dict]:
    """Detection metrics of a model (None: the shipped nano) on each test set (folder, categories asked)."""
    from rexomni_core.eval.run import evaluate_model
    from rexomni_core.model import RexOmni

    model = RexOmni.from_pretrained(model_dir)
    fingerprint = str(model_dir or "shipped nano")
    return {name: evaluate_model(model, folder, TASK, out / name, categories=asked, model_fingerprint=fingerprint)
            for name, (folder, asked) in test_sets.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=500, help="novel training images (a share is held out for the report)")
    parser.add_argument("--test", type=int, default=200, help="images of each held-out test set")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, default=15.0, help="training time of each fine-tuning")
    length.add_argument("--steps", type=int, help="train this many steps instead of --minutes")
    parser.add_argument("--modes", default="full,lora", help="comma-separated: full, lora")
    parser.add_argument("--rehearsal", type=float, default=None, help="rehearsal share (default: finetune's)")
    parser.add_argument("--model", default=None, help="the model to fine-tune (default: the shipped nano)")
    args = parser.parse_args(argv)

    from rexomni_core.data.synth import write_synthetic_dataset
    from rexomni_core.finetune import FinetuneOptions, finetune
    from rexomni_core.nano.heldout import HELDOUT_SEED

    out = args.out
    data = out / f"novel-{args.n}"
    write_synthetic_dataset(data, "shapes", args.n, seed=0, split="novel", progress=True)
    folders = {}
    for split in ("novel", "normal"):
        folders[split] = out / f"heldout-{split}-{args.test}"
        write_synthetic_dataset(folders[split], "shapes", args.test, seed=HELDOUT_SEED, split=split, progress=True)
    test_sets = {"novel": (folders["novel"], "present"), "novel-all": (folders["novel"], "all"),
                 "normal": (folders["normal"], "present"), "normal-padded": (folders["normal"], "padded")}
    start_name = "shipped nano" if args.model is None else f"start: {args.model}"
    rows = {start_name: {"metrics": evaluate(args.model, test_sets, out / "eval" / "start")}}
    length = {"minutes": args.minutes} if args.steps is None else {"steps": args.steps}
    extra = {} if args.rehearsal is None else {"rehearsal": args.rehearsal}
    for mode in args.modes.split(","):
        run = out / f"ft-{mode}"
        start = time.perf_counter()
        result = finetune(data, run, lora=mode == "lora", model=args.model, **length, **extra)
        wall = time.perf_counter() - start
        rows[f"fine-tuned, {mode}"] = {
            "metrics": evaluate(result.final, test_sets, out / "eval" / mode),
            "training_minutes": result.metrics["training_minutes"], "steps": result.metrics["steps"],
            "wall_minutes_finetune_command": round(wall / 60, 1),
        }
    start = rows[start_name]["metrics"]
    baseline, baseline_ten = start["normal"]["f1@0.5"], start["normal-padded"]["f1@0.5"]
    settings = FinetuneOptions(**length, **extra)
    summary = {"n": args.n, "test_images": args.test, "options": {**length, **extra, "rehearsal": settings.rehearsal},
               "target_novel_f1": round(0.8 * baseline, 4), "target_novel_all_f1": round(0.8 * baseline_ten, 4),
               "rows": rows}
    (out / "benchmark.json").write_text(json.dumps(summary, indent=1))
    print(table(rows, baseline, baseline_ten))


def table(rows: dict[str, dict], baseline: float, baseline_ten: float) -> str:
    """The before/after table; the last two columns are the target's ratios, each against the shipped
    nano's own categories asked alike (present / ten asked)."""
    lines = [
        "| model | training | novel F1@0.5 (present / all ten asked) | novel F1@mIoU (present) "
        "| original F1@0.5 (present / ten asked) | original change (present / ten asked) "
        "| novel / shipped original (present) | novel / shipped original (ten asked) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        novel, every, normal, ten = (row["metrics"][key] for key in ("novel", "novel-all", "normal", "normal-padded"))
        training = "—" if "steps" not in row else f"{row['steps']} steps, {row['training_minutes']} min"
        lines.append(
            f"| {name} | {training} | {novel['f1@0.5']:.3f} / {every['f1@0.5']:.3f} | {novel['f1@miou']:.3f} | "
            f"{normal['f1@0.5']:.3f} / {ten['f1@0.5']:.3f} | {normal['f1@0.5'] - baseline:+.3f} / "
            f"{ten['f1@0.5'] - baseline_ten:+.3f} | {novel['f1@0.5'] / baseline:.0%} | "
            f"{every['f1@0.5'] / max(baseline_ten, 1e-9):.0%} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
