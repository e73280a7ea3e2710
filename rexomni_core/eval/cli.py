"""`rexomni eval ...`: score prediction files against ground truth.

Only numpy-based modules are imported at start-up; pycocotools and matplotlib are imported by
the `ap` handler alone, so `rexomni eval f1` starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rexomni_core.errors import SkipReport, add_lenient_option
from rexomni_core.eval.f1 import PROTOCOLS
from rexomni_core.eval.run import CATEGORY_CHOICES
from rexomni_core.tasks import TASKS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="score predictions (F1@IoU, AP, points, OCR, ...)")
    commands = parser.add_subparsers(dest="eval_command", metavar="METRIC")
    commands.required = True
    for add in (_add_f1, _add_ap, _add_visual_prompt, _add_points, _add_duplicates, _add_run):
        add(commands)


def _add_inputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt", required=True, help="ground truth, COCO JSON")
    parser.add_argument("--pred", required=True, help="predictions, COCO results list JSON")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    add_lenient_option(parser)


def _add_f1(commands) -> None:
    parser = commands.add_parser("f1", help="F1 at IoU 0.50:0.05:0.95 (no scores needed)")
    _add_inputs(parser)
    parser.add_argument(
        "--protocol", choices=PROTOCOLS, default="sound", help="sound (default) or paper (the released evaluator's numbers)"
    )
    parser.add_argument("--iou-type", choices=("bbox", "segm"), default="bbox", help="boxes, or polygons from `segmentation`")
    parser.add_argument("--per-category", action="store_true",
                        help="also each category's counts, P/R/F1 at IoU 0.5 and F1@mIoU (sound matching)")
    parser.set_defaults(func=_run_f1)


def _run_f1(args: argparse.Namespace) -> int:
    from rexomni_core.eval.f1 import evaluate_f1, per_category_f1

    gt, dets = _load_boxes(args, with_polygons=args.iou_type == "segm")
    result = evaluate_f1(gt, dets, args.protocol).to_dict()
    if args.per_category:
        result["per_category"] = {name: scores.to_dict() for name, scores in per_category_f1(gt, dets).items()}
    _emit(args, result, _f1_table)
    return 0


def _add_ap(commands) -> None:
    parser = commands.add_parser("ap", help="COCO AP/AR via pycocotools (predictions need scores)")
    _add_inputs(parser)
    parser.add_argument("--plot", metavar="PNG", help="also save the precision-recall curves here")
    parser.set_defaults(func=_run_ap)


def _run_ap(args: argparse.Namespace) -> int:
    from rexomni_core.eval.coco_ap import coco_ap, save_pr_curve

    report = coco_ap(*_load_boxes(args))
    result: dict[str, Any] = dict(report.stats)
    if args.plot:
        result["plot"] = str(save_pr_curve(report, args.plot))
    _emit(args, result, _plain_table)
    return 0


def _add_visual_prompt(commands) -> None:
    parser = commands.add_parser("vp", help="visual prompting: F1 with categories pooled, counting MAE")
    _add_inputs(parser)
    parser.set_defaults(func=_run_visual_prompt)


def _run_visual_prompt(args: argparse.Namespace) -> int:
    from rexomni_core.eval.f1 import counting_mae, sound_f1

    gt, dets = _load_boxes(args)
    result = sound_f1(gt, dets, pool_categories=True).to_dict()
    result["counting_mae"] = counting_mae(gt, dets)
    _emit(args, result, lambda r: _f1_table(r) + f"\ncounting MAE  {r['counting_mae']:.4f}")
    return 0


def _add_points(commands) -> None:
    parser = commands.add_parser("points", help="F1@Point: results with `point` [x, y] against GT masks/boxes")
    _add_inputs(parser)
    parser.add_argument("--masks", action="store_true", help="use the GT `segmentation` polygons (else the GT boxes)")
    parser.set_defaults(func=_run_points)


def _run_points(args: argparse.Namespace) -> int:
    from rexomni_core.eval.inputs import detections_from_records, load_ground_truth, read_json
    from rexomni_core.eval.points import pointing_f1_arrays, pointing_summary

    gt = load_ground_truth(args.gt, with_polygons=args.masks)
    records = read_json(args.pred)
    # A point is checked and stored as a zero-size box, so the same record checks apply.
    as_boxes = [_point_as_box(record) for record in records] if isinstance(records, list) else records
    dets = detections_from_records(as_boxes, gt, args.pred, lenient=args.lenient)
    _warn_skipped(dets.skipped)
    _emit(args, pointing_summary(pointing_f1_arrays(gt, dets)), _plain_table)
    return 0


def _point_as_box(record: Any) -> Any:
    if isinstance(record, dict) and "point" in record and "bbox" not in record:
        point = record["point"]
        bbox = [*point, 0, 0] if isinstance(point, list) and len(point) == 2 else point
        return {**record, "bbox": bbox}
    return record


def _add_duplicates(commands) -> None:
    parser = commands.add_parser("duplicates", help="duplicate-box rates (both definitions) and large-box rate")
    _add_inputs(parser)
    parser.set_defaults(func=_run_duplicates)


def _run_duplicates(args: argparse.Namespace) -> int:
    from rexomni_core.eval.duplicates import file_degeneracy

    gt, dets = _load_boxes(args)
    _emit(args, file_degeneracy(gt, dets), _plain_table)
    return 0


def _add_run(commands) -> None:
    parser = commands.add_parser("run", help="predict a COCO dataset with a model, then score it")
    parser.add_argument("--model", help="checkpoint directory or hub id (default: the embedded Rex-Omni-nano)")
    parser.add_argument("--data", required=True, help="dataset folder: one COCO JSON and its images")
    parser.add_argument("--task", required=True, choices=list(TASKS))
    parser.add_argument("--out", help="folder for answers.jsonl, predictions.json, metrics.json (default: runs/eval-TASK); "
                        "a rerun resumes, and refuses answers of another dataset, model or setting")
    parser.add_argument("--categories", choices=CATEGORY_CHOICES, default="present", help="phrases each prompt names")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="sound")
    parser.add_argument("--restart", action="store_true", help="replace the answers already in --out instead of resuming")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.set_defaults(func=_run_model)


def _run_model(args: argparse.Namespace) -> int:
    from rexomni_core.eval.run import evaluate_model
    from rexomni_core.model import NANO_DIR, RexOmni

    model = RexOmni.from_pretrained(args.model)
    out = Path(args.out or f"runs/eval-{args.task}")
    metrics = evaluate_model(
        model, Path(args.data), args.task, out, args.categories, args.protocol, resume=not args.restart,
        model_fingerprint=_checkpoint_fingerprint(args.model or NANO_DIR),
    )
    _emit(args, metrics, lambda result: _run_table(result, out))
    return 0


def _run_table(result: dict[str, Any], out: Path) -> str:
    """`eval run`'s summary: the F1 table where the task has one, then every other number; the
    per-threshold and per-category detail stays in metrics.json."""
    shown = _f1_table(result).splitlines() if "f1@0.5" in result and "num_predictions" in result else []
    covered = {key for key in result if "@" in key or key in ("protocol", "num_predictions", "num_ground_truth",
                                                               "num_left_out")} if shown else set()
    rest = {key: value for key, value in result.items() if key not in covered and not isinstance(value, (dict, list))}
    lines = shown + ([""] if shown and rest else []) + _plain_table(rest).splitlines()
    return "\n".join([*lines, "", f"answers, predictions and every metric: {out}/ (metrics.json)"])


def _checkpoint_fingerprint(source) -> str:
    """A local checkpoint: its path, and the size and modification time of each weights file
    (a checkpoint saved again under the same name changes them; hashing gigabytes would not
    be worth the wait). A hub id: the id itself."""
    folder = Path(source)
    if not folder.is_dir():
        return str(source)
    weights_files = sorted(folder.glob("*.safetensors"))
    stamps = [f"{weights.name}:{weights.stat().st_size}:{weights.stat().st_mtime_ns}" for weights in weights_files]
    return " ".join([str(folder.resolve()), *stamps])


def _load_boxes(args: argparse.Namespace, with_polygons: bool = False):
    """Checked GT and predictions; bad prediction records stop the command, or (--lenient) are
    left out and reported on stderr."""
    from rexomni_core.eval.inputs import load_detections, load_ground_truth

    gt = load_ground_truth(args.gt, with_polygons=with_polygons)
    dets = load_detections(args.pred, gt, lenient=args.lenient, with_polygons=with_polygons)
    _warn_skipped(dets.skipped)
    return gt, dets


def _plain_table(result: dict[str, Any]) -> str:
    return "\n".join(f"{key:24}{value:.4f}" if isinstance(value, float) else f"{key:24}{value}" for key, value in result.items())


def _warn_skipped(report: SkipReport) -> None:
    """Bad records are never dropped silently: say how many were left out and show the first ones."""
    if not report.total:
        return
    print(f"warning: prediction records left out (--lenient), {report.summary()}:", file=sys.stderr)
    for example in report.examples:
        print(f"  skipped: {example}", file=sys.stderr)


def _emit(args: argparse.Namespace, result: dict[str, Any], table: Callable[[dict[str, Any]], str]) -> None:
    print(json.dumps(result) if args.json else table(result))


def _format_counts(result: dict[str, Any]) -> str:
    left_out = ", ".join(f"{why}: {n}" for why, n in result.get("num_left_out", {}).items() if n) or "none"
    return f"predictions scored: {result['num_predictions']}   ground truth: {result['num_ground_truth']}   left out: {left_out}"


def _f1_table(result: dict[str, Any]) -> str:
    rows = [f"protocol: {result['protocol']}", _format_counts(result), ""]
    rows.append(f"{'':14}{'precision':>10}{'recall':>10}{'F1':>10}")
    for prefix, title in (("", "macro"), ("micro_", "micro")):
        if f"{prefix}f1@0.5" not in result:
            continue
        for point, label in (("0.5", "IoU 0.50"), ("0.95", "IoU 0.95"), ("miou", "mIoU")):
            values = [result[f"{prefix}{name}@{point}"] for name in ("precision", "recall", "f1")]
            rows.append(f"{title + ' ' + label:14}" + "".join(f"{v:10.4f}" for v in values))
    if "per_category" in result:
        rows += ["", f"{'category':24}{'objects':>8}{'TP':>6}{'FP':>6}{'P@0.5':>8}{'R@0.5':>8}{'F1@0.5':>8}{'F1@mIoU':>9}"]
        for name, row in result["per_category"].items():
            rows.append(f"{name[:23]:24}{row['objects']:8}{row['true_positives']:6}{row['false_positives']:6}"
                        + "".join(f"{row[key]:8.3f}" for key in ("precision@0.5", "recall@0.5", "f1@0.5"))
                        + f"{row['f1@miou']:9.3f}")
    return "\n".join(rows)
