"""Evaluate a model on a COCO dataset end to end: predict every image, then score.

Works with any object that has `predict(image, task=..., categories=..., visual_prompt_boxes=...)`
returning a `Prediction` (a `RexOmni` model, or a stand-in in tests); this module imports neither
torch nor transformers itself. Answers are appended to `answers.jsonl` in the output folder as
they come, so an interrupted run resumes where it stopped. `run.json` beside them records what
they are answers to (dataset, model, task, phrases, decoding): a run never reuses another run's
answers.

Which phrases a prompt names is a choice the paper's tables depend on: `present` (default) asks,
per image, for the categories that image has; `all` asks for every category of the dataset, so
hallucinated categories count as false positives; `padded` asks for the image's categories and
absent ones drawn at random (seeded by the image id) up to `PADDED_PHRASES`, in the dataset's
order, so a model must tell the asked categories apart as it must when `all` asks a dataset of that
many (the shapes world's `novel` split has ten). OCR asks per image for each granularity present
(`word`, `text line`); GUI grounding asks once per element, named "<label> <role>" as the data
engine names it; keypoints ask per image for `person`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import random
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..coco import bbox_to_xyxy, keypoint_instance, result_record, text_region
from ..errors import (
    BadRecordError,
    InputError,
    MissingInputError,
    UntrainedTaskWarning,
    untrained_task_warnings_said_elsewhere,
)
from ..regions import Box, Region, region_from_dict
from ..tasks import TASKS, Task
from .duplicates import file_degeneracy
from .f1 import counting_mae, evaluate_f1, sound_f1
from .inputs import detections_from_records, field_problems, ground_truth_from_payload, read_json
from .keypoints import keypoint_f1
from .ocr import ocr_scores
from .points import gui_grounding_accuracy, pointing_f1_arrays, pointing_summary

# Task families scored query by query against ground-truth regions rebuilt from the COCO file;
# the answers of the others (boxes, points) are scored together as one COCO results list.
PER_QUERY_FAMILIES = ("ocr", "gui", "keypoints")
CATEGORY_CHOICES = ("present", "all", "padded")
PADDED_PHRASES = 10  # phrases a `padded` prompt names (fewer where the dataset has fewer)
RUN_RECORD = "run.json"  # beside answers.jsonl: what its answers are answers to


@dataclass(frozen=True)
class Query:
    """One prompt to send: an image and what to ask about it."""

    key: str
    image_id: int
    image_path: Path
    categories: list[str] | None = None
    visual_prompt_boxes: list[list[float]] | None = None
    category_id: int | None = None  # visual prompting answers are for this category
    keypoint_type: str | None = None
    truth: list[Region] = field(default_factory=list)  # PER_QUERY_FAMILIES: what the answer should say


def find_dataset(data_dir: Path) -> tuple[Path, Path]:
    """The COCO file of a dataset folder, and the folder itself."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise MissingInputError(f"{data_dir}: no such dataset folder")
    candidates = [data_dir / "annotations.json"] if (data_dir / "annotations.json").exists() else sorted(data_dir.glob("*.json"))
    if len(candidates) != 1:
        raise InputError(f"{data_dir}: expected one COCO JSON file (annotations.json), found {[c.name for c in candidates]}")
    return candidates[0], data_dir


def _image_path(data_dir: Path, image: dict) -> Path:
    """`file_name` relative to the dataset folder (as `rexomni data synth` writes "images/…"),
    or to its `images/` subfolder (as COCO downloads are laid out)."""
    for path in (data_dir / image["file_name"], data_dir / "images" / image["file_name"]):
        if path.is_file():
            return path
    raise MissingInputError(f"image {image['id']}: {image['file_name']} is in neither {data_dir} nor {data_dir / 'images'}")


def build_queries(
    payload: dict, data_dir: Path, task: str, categories: str = "present", file: str = "<ground truth>"
) -> list[Query]:
    """The prompts of a run; a malformed COCO `payload` (read from `file`) is a BadRecordError."""
    if task not in TASKS:
        raise InputError(f"eval run supports tasks {', '.join(TASKS)}; got {task!r}")
    spec = TASKS[task]
    if categories not in CATEGORY_CHOICES:
        raise InputError(f"categories must be one of {CATEGORY_CHOICES}, got {categories!r}")
    ground_truth_from_payload(payload, file)  # the lists, ids, references and boxes
    _check_query_fields(payload, spec, file)
    names = {c["id"]: c["name"] for c in payload["categories"]}
    by_image: dict[int, list[dict]] = {image["id"]: [] for image in payload["images"]}
    for annotation in payload["annotations"]:
        if not annotation.get("iscrowd", 0):
            by_image[annotation["image_id"]].append(annotation)
    queries = []
    for image in payload["images"]:
        path = _image_path(data_dir, image)
        if spec.family in PER_QUERY_FAMILIES:
            queries.extend(_region_queries(spec, image["id"], path, by_image[image["id"]], payload["categories"]))
            continue
        present = list(dict.fromkeys(names[a["category_id"]] for a in by_image[image["id"]]))
        if spec.needs_visual_prompt:
            # One query per category present: its first instance is the reference box.
            for category_id in dict.fromkeys(a["category_id"] for a in by_image[image["id"]]):
                bbox = next(a["bbox"] for a in by_image[image["id"]] if a["category_id"] == category_id)
                queries.append(Query(f"{image['id']}/{category_id}", image["id"], path,
                                     visual_prompt_boxes=[bbox_to_xyxy(bbox)], category_id=category_id))
            continue
        if categories == "padded":
            asked = _padded(present, names, image["id"])
        else:
            asked = present if categories == "present" else list(names.values())
        if asked:
            queries.append(Query(str(image["id"]), image["id"], path, categories=asked))
    return queries


def _padded(present: list[str], names: dict[int, str], image_id: int) -> list[str]:
    """`present` and absent categories drawn for `image_id` up to PADDED_PHRASES, in dataset order."""
    absent = [name for name in names.values() if name not in present]
    drawn = random.Random(image_id).sample(absent, min(len(absent), max(0, PADDED_PHRASES - len(present))))
    return [name for name in names.values() if name in present or name in drawn]


def _check_query_fields(payload: dict, task: Task, file: str) -> None:
    """The fields queries are made of, beyond those the ground truth is checked for."""
    needed = [("images", "file_name", str), ("categories", "name", str)]
    if task.family == "gui":
        needed += [("annotations", "id", int), ("annotations", "text", str)]  # one query per element
    elif task.family == "keypoints":
        needed.append(("categories", "keypoints", list))  # the keypoint names, in triplet order
    problems = [problem for part, name, kind in needed for problem in field_problems(f"{file} {part}", payload[part], name, kind)]
    if problems:
        raise BadRecordError(problems)


def _region_queries(task: Task, image_id: int, path: Path, annotations: list[dict], categories: list[dict]) -> list[Query]:
    category = {c["id"]: c for c in categories}
    if task.family == "ocr":
        queries = []
        for granularity in dict.fromkeys(category[a["category_id"]]["name"] for a in annotations):
            truth = [text_region(a, as_polygon=task.region_kind == "polygon")
                     for a in annotations if category[a["category_id"]]["name"] == granularity]
            queries.append(Query(f"{image_id}/{granularity}", image_id, path, categories=[granularity], truth=truth))
        return queries
    if task.family == "gui":
        return [
            Query(f"{image_id}/{a['id']}", image_id, path, categories=[f"{a['text']} {category[a['category_id']]['name']}"],
                  truth=[Box(category[a["category_id"]]["name"], bbox_to_xyxy(a["bbox"]))])
            for a in annotations
        ]
    truth = [keypoint_instance(a, category[a["category_id"]]) for a in annotations if a.get("keypoints")]
    return [Query(str(image_id), image_id, path, categories=["person"], keypoint_type="person", truth=truth)]


def score_region_task(task: str, queries: list[Query], answers: list[dict]) -> dict[str, Any]:
    """Metrics of an OCR, GUI or keypoint run: each answer against its query's ground truth."""
    family = TASKS[task].family
    pairs = [([region_from_dict(r) for r in a["prediction"]["regions"]], q.truth) for q, a in zip(queries, answers)]
    if family == "ocr":
        report = ocr_scores(pairs)
        metrics = {f"e2e_{k}": v for k, v in report.end_to_end.to_dict().items() if "@" in k}
        metrics.update({f"det_{k}": v for k, v in report.detection.to_dict().items() if "@" in k})
        metrics.update(mean_edit_distance=report.mean_edit_distance, matched_pairs=report.matched_pairs)
        return metrics
    if family == "gui":
        return {"accuracy": gui_grounding_accuracy((predicted[0] if predicted else None, truth[0]) for predicted, truth in pairs)}
    report = keypoint_f1(pairs)
    return {"f1@oks0.5": report.at_50.f1, "f1@oks_mean": report.at_miou.f1,
            "precision@oks0.5": report.at_50.precision, "recall@oks0.5": report.at_50.recall}


# Arguments of `predict` that each query sets (not part of how the run decodes), and those that
# change how fast an answer comes but not the answer (`RexOmni.predict(fast_decode=...)`).
QUERY_ARGUMENTS = frozenset({"image", "task", "categories", "keypoint_type", "visual_prompt_boxes"})
SPEED_ARGUMENTS = frozenset({"fast_decode"})
# Model attributes that change its answers beyond the weights (RexOmni's checkpoint settings).
DECODING_SWITCHES = ("coordinate_mass_decoding", "square_side")


def decoding_settings(model, generation: dict[str, Any]) -> dict[str, Any]:
    """How a run's answers are decoded: every argument of `model.predict` but the query's own, at
    the value the run passes (`generation`) or else at its default (constrained or not, score
    threshold, region caps, confidence, ... and what goes on to `generate`), and the model's
    decoding switches (coordinate-mass decoding, square view) where it has them."""
    settings = {
        name: parameter.default
        for name, parameter in inspect.signature(model.predict).parameters.items()
        if parameter.default is not inspect.Parameter.empty and name not in QUERY_ARGUMENTS | SPEED_ARGUMENTS
    }
    settings.update((name, value) for name, value in generation.items() if name not in SPEED_ARGUMENTS)
    settings.update((switch, getattr(model, switch)) for switch in DECODING_SWITCHES if hasattr(model, switch))
    return settings


def run_fingerprint(
    gt_file: Path, model, task: str, categories: str, generation: dict[str, Any], model_fingerprint: str | None = None
) -> dict[str, Any]:
    """What a run's answers depend on. The dataset is the COCO file's content hash; the model is
    `model_fingerprint`, else the model's `fingerprint` attribute, else its class (which cannot
    tell two checkpoints apart: callers that load checkpoints should pass one); the decoding is
    `decoding_settings` of the `generation` arguments the run passes to `predict`."""
    model_class = f"{type(model).__module__}.{type(model).__qualname__}"
    fingerprint = {
        "dataset": "sha256:" + hashlib.sha256(Path(gt_file).read_bytes()).hexdigest(),
        "model": model_fingerprint or getattr(model, "fingerprint", None) or model_class,
        "task": task,
        "categories": categories,
        "decoding": decoding_settings(model, generation),
    }
    # As run.json will read back (tuples become lists, other objects their repr), to compare equal.
    return json.loads(json.dumps(fingerprint, sort_keys=True, default=repr))


def _answers_to_reuse(answers_file: Path, fingerprint: dict[str, Any]) -> dict[str, dict]:
    data = answers_file.read_bytes() if answers_file.is_file() else b""
    if not data.strip():
        return {}
    _check_same_run(answers_file, fingerprint)
    return _read_answers(answers_file, data)


def _check_same_run(answers_file: Path, fingerprint: dict[str, Any]) -> None:
    """Answers of another dataset, model or setting would be scored as this run's: refuse them
    (and keep them; deleting is the user's call)."""
    record_file = answers_file.with_name(RUN_RECORD)
    advice = "pass --restart (resume=False) to replace them with new answers, or choose a new --out folder"
    if not record_file.is_file():
        raise InputError(f"{answers_file}: there is no {RUN_RECORD} beside these answers to tell what they "
                         f"answer (an older version wrote them); {advice}")
    saved = read_json(record_file)
    saved = saved if isinstance(saved, dict) else {}
    differing = [part for part, value in fingerprint.items() if saved.get(part) != value]
    if differing:
        raise InputError(f"{answers_file}: these answers are of another run (other {', other '.join(differing)}; "
                         f"see {record_file}); {advice}")


def _read_answers(answers_file: Path, data: bytes) -> dict[str, dict]:
    """The answers in `data` (the bytes of `answers_file`) by query key. The file is left ending
    at a whole record, so that the next answer starts a line of its own: a torn last line (a run
    stopped while writing it) is cut off, with a note, and its query asked again."""
    lines = data.splitlines(keepends=True)
    done, torn_at = {}, None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        record = _answer_record(line)
        if record is not None:
            done[record["key"]] = record
        elif number < len(lines):
            raise InputError(f"{answers_file}: line {number} is not an answer record: the file is damaged "
                             "(remove that line to keep the other answers, or pass --restart to ask again)")
        else:
            torn_at = len(data) - len(line)
            print(f"warning: {answers_file}: line {number} is cut short (a run stopped while writing it); "
                  "dropped, its query is asked again", file=sys.stderr)
    if torn_at is not None:
        os.truncate(answers_file, torn_at)
    elif not data.endswith(b"\n"):
        with answers_file.open("ab") as sink:
            sink.write(b"\n")
    return done


def _answer_record(line: bytes) -> dict | None:
    try:
        record = json.loads(line)
    except ValueError:  # not JSON, or not UTF-8
        return None
    return record if isinstance(record, dict) and isinstance(record.get("key"), str) else None


def _start_run(answers_file: Path, fingerprint: dict[str, Any]) -> None:
    answers_file.parent.mkdir(parents=True, exist_ok=True)
    answers_file.write_text("")  # first: old answers must never sit beside this run's record
    answers_file.with_name(RUN_RECORD).write_text(json.dumps(fingerprint, indent=1))


def predict_queries(
    model, queries: list[Query], task: str, answers_file: Path, resume: bool = True, *,
    fingerprint: dict[str, Any], **generation,
) -> Iterator[dict]:
    """Answers for every query, reusing those already in `answers_file` and appending new ones.
    Answers are reused only when they are of the same run (`fingerprint`, see `run_fingerprint`);
    else this raises InputError. `resume=False` discards them first."""
    done = _answers_to_reuse(answers_file, fingerprint) if resume else {}
    if not done:
        _start_run(answers_file, fingerprint)
    untrained = getattr(model, "untrained_warning", lambda _: None)(task)
    if untrained:  # once for the run, not once a prompt
        warnings.warn(untrained, UntrainedTaskWarning, stacklevel=2)
    with answers_file.open("a") as sink:
        for query in tqdm(queries, desc=f"eval {task}", unit="prompt", initial=0):
            if query.key in done:
                yield done[query.key]
                continue
            extra = {"keypoint_type": query.keypoint_type} if query.keypoint_type else {}
            with untrained_task_warnings_said_elsewhere():  # said once above
                prediction = model.predict(
                    str(query.image_path), task=task, categories=query.categories,
                    visual_prompt_boxes=query.visual_prompt_boxes, **extra, **generation,
                )
            record = {"key": query.key, "image_id": query.image_id, "category_id": query.category_id,
                      "prediction": prediction.to_dict()}
            sink.write(json.dumps(record) + "\n")
            sink.flush()
            yield record


def coco_results(answer: dict, category_ids: dict[str, int]) -> list[dict[str, Any]]:
    """COCO result records of one answer. Visual prompting answers belong to their query's
    category whatever phrase the model wrote; other phrases map by name (unknown ones dropped)."""
    records = []
    for region in map(region_from_dict, answer["prediction"]["regions"]):
        if region.kind not in ("box", "point"):
            continue
        if answer["category_id"] is not None:
            category_id = answer["category_id"]
        elif region.phrase in category_ids:
            category_id = category_ids[region.phrase]
        else:
            continue
        records.append(result_record(region, answer["image_id"], category_id, unscored=None))
    return records


def evaluate_model(
    model, data_dir: Path, task: str, out_dir: Path, categories: str = "present", protocol: str = "sound",
    resume: bool = True, model_fingerprint: str | None = None, **generation,
) -> dict[str, Any]:
    """Predict then score; writes answers.jsonl, run.json, predictions.json and metrics.json in
    `out_dir`. Answers already in `out_dir` are reused (an interrupted run resumes) unless
    `resume=False`; answers of another run (dataset, model, task or settings) are refused.
    `model_fingerprint` tells checkpoints apart (see `run_fingerprint`)."""
    gt_file, data_dir = find_dataset(Path(data_dir))
    payload = read_json(gt_file)
    queries = build_queries(payload, data_dir, task, categories, str(gt_file))  # checks `payload` too
    spec = TASKS[task]
    # Points are judged against masks where every annotation has polygons (METRICS.md), else boxes.
    use_masks = spec.family == "points" and all(
        isinstance(a.get("segmentation"), list) and a["segmentation"] for a in payload["annotations"]
    )
    gt = ground_truth_from_payload(payload, str(gt_file), with_polygons=use_masks)
    fingerprint = run_fingerprint(gt_file, model, task, categories, generation, model_fingerprint)
    out_dir = Path(out_dir)
    answers = list(predict_queries(model, queries, task, out_dir / "answers.jsonl", resume,
                                   fingerprint=fingerprint, **generation))
    if spec.family in PER_QUERY_FAMILIES:
        return _finish(score_region_task(task, queries, answers), answers, out_dir)
    category_ids = {c["name"]: c["id"] for c in payload["categories"]}
    results = [record for answer in answers for record in coco_results(answer, category_ids)]
    (out_dir / "predictions.json").write_text(json.dumps(results))
    # These records are the model's answers, not the user's data: a malformed one (a box with
    # negative size) is the model's error, left out and counted in the metrics' `num_left_out`.
    dets = detections_from_records(results, gt, str(out_dir / "predictions.json"), lenient=True)
    if spec.family == "points":
        metrics = pointing_summary(pointing_f1_arrays(gt, dets))
        metrics["point_targets"] = "masks" if use_masks else "boxes"
    elif spec.needs_visual_prompt:
        metrics = sound_f1(gt, dets, pool_categories=True).to_dict()
        metrics["counting_mae"] = counting_mae(gt, dets)
    else:
        metrics = evaluate_f1(gt, dets, protocol).to_dict()
    if spec.family != "points":
        # The degenerate outputs GRPO is meant to remove (both duplicate definitions, large boxes).
        degeneracy = file_degeneracy(gt, dets)
        metrics.update({k: v for k, v in degeneracy.items() if k.endswith("_rate")})
    return _finish(metrics, answers, out_dir)


def _finish(metrics: dict[str, Any], answers: list[dict], out_dir: Path) -> dict[str, Any]:
    """Add what every task reports (well-formed share, answer count, length) and save."""
    problems = [len(a["prediction"]["problems"]) for a in answers]
    metrics["well_formed"] = float(np.mean([p == 0 for p in problems])) if problems else 1.0
    metrics["answers"] = len(answers)
    output_tokens = [a["prediction"]["num_output_tokens"] or 0 for a in answers]
    metrics["mean_output_tokens"] = float(np.mean(output_tokens)) if answers else 0.0
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics
