"""`rexomni predict IMAGE... --task T --categories "a, b" [--model M] [--json] [--out DIR]`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .grammar_cli import prediction_record
from .tasks import TASKS


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
    parser.add_argument("--max-new-tokens", type=int, default=2048)
    parser.add_argument("--json", action="store_true", help="print one JSON record per image")
    parser.add_argument("--out", type=Path, help="write <image>.json and <image>.png (annotated) here")
    parser.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    from .model import RexOmni

    categories = [c.strip() for c in args.categories.split(",") if c.strip()] if args.categories else None
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
            max_new_tokens=args.max_new_tokens,
        )
        for path, prediction in zip(paths, predictions):
            record = {
                "image": str(path),
                "width": prediction.width,
                "height": prediction.height,
                "task": prediction.task,
                "prompt": prediction.prompt,
                "raw_text": prediction.raw_text,
                "seconds": round(prediction.seconds, 4),
                "num_prompt_tokens": prediction.num_prompt_tokens,
                "num_output_tokens": prediction.num_output_tokens,
                **prediction_record(prediction),
            }
            if args.json:
                print(json.dumps(record))
            else:
                print(_summary(record))
            if args.out:
                stem = args.out / Path(path).stem
                stem.with_suffix(".json").write_text(json.dumps(record, indent=1))
                annotate(path, prediction).save(stem.with_suffix(".png"))
    return 0


def _summary(record: dict) -> str:
    lines = [f"{record['image']} ({record['width']}x{record['height']}, {record['seconds']:.2f} s)"]
    for region in record["regions"]:
        coords = ", ".join(f"{v:.1f}" for v in region["coords"]) if region["kind"] != "keypoints" else "…"
        lines.append(f"  {region['phrase']}: {region['kind']} [{coords}]")
    lines += [f"  {phrase}: none" for phrase in record["absent"]]
    lines += [f"  (problem: {problem})" for problem in record["problems"]]
    return "\n".join(lines)


def annotate(image, prediction):
    """The image with boxes, points and polygons drawn (PIL only, no extra dependency)."""
    from PIL import ImageDraw

    from .model import load_image

    canvas = load_image(image)
    draw = ImageDraw.Draw(canvas)
    palette = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6"]
    colours = {}
    for region in prediction.regions:
        colour = colours.setdefault(region.phrase, palette[len(colours) % len(palette)])
        x0, y0, x1, y1 = region.bounds()
        if region.kind == "point":
            draw.ellipse([x0 - 4, y0 - 4, x0 + 4, y0 + 4], outline=colour, width=2)
        elif region.kind == "polygon":
            draw.polygon([tuple(v) for v in region.vertices], outline=colour)
        else:
            draw.rectangle([x0, y0, x1, y1], outline=colour, width=2)
        draw.text((x0 + 2, max(y0 - 12, 0)), region.phrase, fill=colour)
    return canvas
