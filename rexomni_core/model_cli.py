"""`rexomni predict IMAGE... --task T --categories "a, b" [--model M] [--json] [--out DIR]`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .tasks import TASKS, split_categories


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="run a Rex-Omni model on images",
        description="Detect, point or ground with a Rex-Omni model. Without --model the embedded "
        "nano model runs offline (it knows the shapes world: '<colour> <shape>').",
    )
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--task", default="detection", choices=list(TASKS))
    parser.add_argument("--categories", help='phrases separated by commas, e.g. "red circle, blue star"')
    parser.add_argument("--keypoint-type", help="keypoint schema for --task keypoint (person, animal)")
    parser.add_argument(
        "--visual-prompt", type=json.loads,
        help="reference boxes in pixels for --task visual_prompting, JSON: [[x0,y0,x1,y1], ...]",
    )
    parser.add_argument("--model", help="checkpoint directory or hub id (default: embedded nano)")
    parser.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, help="cap on generated tokens (default: the checkpoint's, else 2048)")
    parser.add_argument("--json", action="store_true", help="print one JSON record per image")
    parser.add_argument("--out", type=Path, help="write <image>.json and <image>.png (annotated) here")
    parser.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    from .model import RexOmni, load_image
    from .viz import annotate

    categories = split_categories(args.categories) if args.categories else None
    model = RexOmni.from_pretrained(args.model, device=args.device)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(args.images), args.batch_size):
        paths = args.images[start : start + args.batch_size]
        predictions = model.predict_batch(
            paths,
            task=args.task,
            categories=categories,
            keypoint_type=args.keypoint_type,
            visual_prompt_boxes=None if args.visual_prompt is None else [args.visual_prompt] * len(paths),
            **({"max_new_tokens": args.max_new_tokens} if args.max_new_tokens else {}),
        )
        for path, prediction in zip(paths, predictions):
            record = {"image": str(path), **prediction.to_dict()}
            if args.json:
                print(json.dumps(record))
            else:
                print(_summary(record))
            if args.out:
                stem = args.out / Path(path).stem
                stem.with_suffix(".json").write_text(json.dumps(record, indent=1))
                annotate(load_image(path), prediction).save(stem.with_suffix(".png"))
    return 0


def _summary(record: dict) -> str:
    width, height = record["image_size"]
    lines = [f"{record['image']} ({width}x{height}, {record['seconds']:.2f} s)"]
    for region in record["regions"]:
        coords = ", ".join(f"{v:.1f}" for v in region["coords"]) if region["kind"] != "keypoints" else "…"
        lines.append(f"  {region['phrase']}: {region['kind']} [{coords}]")
    lines += [f"  {phrase}: none" for phrase in record["absent"]]
    lines += [f"  (problem: {problem})" for problem in record["problems"]]
    return "\n".join(lines)
