"""`rexomni finetune DATA --out DIR [...]`: fine-tune on your own dataset, with a before/after
report (`rexomni_core.finetune.finetune` does the work)."""

from __future__ import annotations

import argparse

from .errors import add_lenient_option
from .tasks import split_categories


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune on your own dataset (COCO, synth folder, JSONL, TSV) with a before/after report",
        description="Check DATA, hold out a validation share, evaluate the starting model, train, evaluate "
        "DIR/final and write DIR/report.md. Rerun the same command to resume an interrupted run.",
    )
    parser.add_argument("data", help="a COCO .json file, a folder from `rexomni data synth`, a .jsonl file or a TSV folder")
    parser.add_argument("--out", required=True, help="the run's folder (a new or empty one; an earlier run's to resume)")
    parser.add_argument("--images", help="COCO: the folder its file_name paths are relative to (default: beside the file)")
    parser.add_argument("--val", help="a validation dataset (default: hold out --held-out of DATA)")
    parser.add_argument("--val-images", help="COCO --val: its image folder")
    parser.add_argument("--model", help="checkpoint folder or hub id to start from (default: the shipped nano); "
                        "IDEA-Research/Rex-Omni --lora (or --qlora) is the GPU path")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--lora", dest="lora", action="store_true", default=False,
                      help="LoRA on the language model, merged into DIR/final")
    kind.add_argument("--full", dest="lora", action="store_false", help="train every weight (the default)")
    kind.add_argument("--qlora", action="store_true",
                      help="LoRA over the model held in 4 bits (needs a CUDA GPU and bitsandbytes: pip install "
                      "'rexomni-core[gpu]'), merged into DIR/final in full precision")
    parser.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction,
                        help="recompute activations in the backward pass: less memory, slower steps "
                        "(default: on for models above 100 M parameters, such as the released 3B)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="optimizer steps (default 1000)")
    length.add_argument("--minutes", type=float, help="train for this many minutes (the schedule is fitted to them)")
    parser.add_argument("--tasks", type=split_categories,
                        help="comma-separated tasks (default: every task the annotations allow: detection, pointing, "
                        "visual_prompting; ocr_box, ocr_polygon with text; keypoint with keypoints)")
    parser.add_argument("--held-out", type=float, default=0.1, help="share of DATA held out for validation (seeded)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learning-rate", type=float,
                        help="peak learning rate (default: 3e-4 full, 1e-3 LoRA on the nano; 1e-5, 2e-4 on a large model)")
    parser.add_argument("--batch-size", type=int,
                        help="conversations per step (default: 16 on a CPU, 4 x 4 accumulated on a GPU)")
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--rehearsal", type=float, default=0.0,
                        help="shipped nano only: this share of the conversations from its own training data, so it "
                        "keeps its own categories")
    parser.add_argument("--keep-adapter", action="store_true",
                        help="with --lora or --qlora: keep the adapter too, in DIR/adapter")
    parser.add_argument("--samples", type=int, default=6, help="validation images drawn before and after in the report")
    add_lenient_option(parser)
    parser.set_defaults(func=run_finetune)


def run_finetune(args: argparse.Namespace) -> int:
    from .finetune import finetune

    result = finetune(
        args.data, args.out, images=args.images, val=args.val, val_images=args.val_images, model=args.model,
        lora=args.lora, qlora=args.qlora, gradient_checkpointing=args.gradient_checkpointing, steps=args.steps,
        minutes=args.minutes, tasks=args.tasks, held_out=args.held_out, seed=args.seed, learning_rate=args.learning_rate,
        batch_size=args.batch_size, lora_rank=args.lora_rank,
        rehearsal=args.rehearsal, keep_adapter=args.keep_adapter, samples=args.samples, lenient=args.lenient,
    )
    print(f"final model: {result.final}\nreport: {result.report}")
    return 0
