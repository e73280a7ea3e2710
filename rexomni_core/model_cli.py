"""`rexomni predict IMAGE... --task T --categories "a, b" [--model M] [--json] [--out DIR]`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import InputError, untrained_task_warnings_said_elsewhere
from .tasks import TASKS, build_prompt, get_task, split_categories


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
    parser.add_argument("--batch-size", type=positive_int, default=4)
    parser.add_argument(
        "--max-new-tokens", type=positive_int, help="cap on generated tokens (default: the checkpoint's, else 2048)"
    )
    parser.add_argument("--min-score", type=unit_fraction, help="drop regions whose confidence is below this (0 to 1)")
    parser.add_argument("--max-regions", type=positive_int, help="at most this many regions per image")
    parser.add_argument(
        "--unconstrained", action="store_true",
        help="decode freely, as the released wrapper does (default: only answers the task's grammar allows)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON record per image")
    parser.add_argument("--out", type=Path, help="write <image>.json and <image>.png (annotated) here")
    parser.add_argument("--overwrite", action="store_true", help="replace result files already in --out")
    parser.set_defaults(func=run_predict)


def positive_int(text: str) -> int:
    """argparse type: a whole number ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def unit_fraction(text: str) -> float:
    """argparse type: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {text}")
    return value


def check_requests(args: argparse.Namespace, categories: list[str] | None) -> None:
    """Every image readable to its last pixel and every prompt buildable, before the model
    loads (a truncated file is found only by decoding it)."""
    from .images import load_image

    for path in args.images:
        width, height = load_image(path).size
        build_prompt(args.task, categories, keypoint_type=args.keypoint_type,
                     visual_prompt_boxes=args.visual_prompt, width=width, height=height)


def output_files(images: list[str], out: Path, overwrite: bool) -> list[tuple[Path, Path]]:
    """(JSON, PNG) result paths of each image: `out/<stem>.json`, with `<stem>-2`, … for images
    of the same name, so none overwrites another's; results already in `out` are kept unless
    `overwrite`."""
    files, taken = [], set()
    for path in images:
        stem, n = Path(path).stem, 1
        while stem in taken:
            n += 1
            stem = f"{Path(path).stem}-{n}"
        taken.add(stem)
        files.append((out / f"{stem}.json", out / f"{stem}.png"))
    existing = [str(file) for pair in files for file in pair if file.exists()]
    if existing and not overwrite:
        raise InputError(f"--out already holds results ({', '.join(existing[:3])}, …); pass --overwrite or another --out")
    return files


def run_predict(args: argparse.Namespace) -> int:
    from .images import load_image
    from .model import RexOmni
    from .viz import annotate

    categories = split_categories(args.categories) if args.categories else None
    check_requests(args, categories)
    results = output_files(args.images, args.out, args.overwrite) if args.out else []
    model = RexOmni.from_pretrained(args.model, device=args.device)
    untrained = model.untrained_warning(args.task)
    if untrained:
        print(f"warning: {untrained}", file=sys.stderr)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(args.images), args.batch_size):
        paths = args.images[start : start + args.batch_size]
        with untrained_task_warnings_said_elsewhere():  # said once above, in a line of its own
            predictions = model.predict_batch(
                paths,
                task=args.task,
                categories=categories,
                keypoint_type=args.keypoint_type,
                visual_prompt_boxes=None if args.visual_prompt is None else [args.visual_prompt] * len(paths),
                constrained=not args.unconstrained,
                score_threshold=args.min_score,
                max_regions=args.max_regions,
                **({"max_new_tokens": args.max_new_tokens} if args.max_new_tokens else {}),
            )
        for offset, (path, prediction) in enumerate(zip(paths, predictions)):
            record = {"image": str(path), **prediction.to_dict()}
            if args.json:
                print(json.dumps(record))
            else:
                print(_summary(record, prediction, categories))
            if args.out:
                json_file, png_file = results[start + offset]
                json_file.write_text(json.dumps(record, indent=1))
                annotate(load_image(path), prediction).save(png_file)
    return 0


def _summary(record: dict, prediction, asked: list[str] | None) -> str:
    """Each region (marked when its phrase was not asked), then each asked phrase not found."""
    width, height = record["image_size"]
    lines = [f"{record['image']} ({width}x{height}, {record['seconds']:.2f} s)"]
    scored = get_task(prediction.task).family != "ocr" and asked
    outcome = prediction.outcomes(asked) if scored else None
    for region in record["regions"]:
        coords = ", ".join(f"{v:.1f}" for v in region["coords"]) if region["kind"] != "keypoints" else "…"
        score = f" score {region['score']:.2f}" if region.get("score") is not None else ""
        unasked = " (not asked)" if outcome and region["phrase"] in outcome.unasked else ""
        lines.append(f"  {region['phrase']}: {region['kind']} [{coords}]{score}{unasked}")
    missing = outcome.not_found if outcome else record["absent"]
    lines += [f"  {phrase}: not found" for phrase in missing]
    lines += [f"  (problem: {problem})" for problem in record["problems"]]
    return "\n".join(lines)
