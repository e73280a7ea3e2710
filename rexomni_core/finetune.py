"""`rexomni finetune`: a user's dataset in, a better model and a before/after report out.

One function, `finetune(data, out, ...)`, which the command calls. It sits above `train/` and
`eval/` (the trainers never import the evaluators), and runs in stages, each resumable:

1. check the dataset before anything trains (`data/checks.py`: missing images, boxes outside their
   image or without area, boxes in the other convention, unused categories; an empty split; the
   categories against the model's tokenizer), and hold out a seeded validation share;
2. write the validation split as a COCO folder (`DIR/val/`) and evaluate the starting model on it;
3. train (`train/finetune.py` → `train_sft`) as `training_plan` decides from the model's size and
   the machine (bf16, gradient checkpointing, LoRA or QLoRA or every weight), measuring validation
   F1 on a few images at a few steps along the way, and bounded by steps or by minutes of training;
4. evaluate `DIR/final` (a plain checkpoint, LoRA merged) the same way, and write
   `DIR/report.md`, `DIR/metrics.json` and `DIR/plots/`.

`DIR/finetune.json` records what the run is (options, dataset hash, split, steps): a rerun with
the same options resumes where the last one stopped (evaluations keep their answers, training its
newest checkpoint); other options, or another dataset, are refused rather than mixed in.
Nothing under DATA is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from .data.checks import check_dataset
from .data.formats import Record, write_coco
from .data.formats.atomic import staged_files
from .errors import InputError, SkipReport
from .eval.coco_ap import coco_ap
from .eval.f1 import per_category_f1
from .eval.inputs import load_detections, load_ground_truth
from .eval.run import evaluate_model
from .model import RexOmni
from .tasks import TASKS
from .train.common import latest_checkpoint
from .train.finetune import (
    DataSource,
    DeviceFacts,
    TrainingClock,
    TrainingPlan,
    check_vocabulary,
    finetune_config,
    nano_rehearsal_stream,
    poses,
    require_4bit,
    resolve_source,
    split_records,
    steps_for_minutes,
    trainable_tasks,
    training_plan,
)
from .train.finetune_report import curve_points, write_report
from .train.sft import train_sft

RUN_RECORD = "finetune.json"
# The metrics of each task family that the before/after table shows.
HEADLINE_METRICS = {
    "boxes": ("f1@0.5", "f1@miou"),
    "points": ("f1@point",),
    "ocr": ("e2e_f1@0.5", "e2e_f1@miou"),
    "keypoints": ("f1@oks0.5", "f1@oks_mean"),
}


@dataclass
class FinetuneOptions:
    """What a fine-tuning run is, beyond DATA and DIR (the command's options, one for one)."""

    images: str | None = None  # COCO: the folder of its images (default: beside the file)
    val: str | None = None  # a validation dataset; None: hold out `held_out` of DATA
    val_images: str | None = None
    model: str | None = None  # a checkpoint folder or hub id; None: the shipped nano
    lora: bool = False  # LoRA on the language model (merged into final/); False: every weight
    qlora: bool = False  # LoRA over the model held in 4 bits (bitsandbytes, CUDA GPU); implies lora
    gradient_checkpointing: bool | None = None  # None: on for a large model (training_plan)
    steps: int | None = None  # None with minutes None: DEFAULT_STEPS
    minutes: float | None = None  # train for this long (the schedule is fitted to it)
    tasks: list[str] | None = None  # None: every task the annotations allow
    held_out: float = 0.1
    seed: int = 0
    learning_rate: float | None = None  # None: the default of LoRA or full training
    batch_size: int | None = None
    lora_rank: int = 16
    rehearsal: float = 0.0  # shipped nano only: this share of conversations from its own training data
    keep_adapter: bool = False  # also keep the LoRA adapter, in DIR/adapter
    lenient: bool = False  # skip bad records (counted) instead of stopping at them
    curve_points: int = 4  # validation F1 measured this many times during training
    curve_images: int = 32  # on this many validation images
    samples: int = 6  # validation images drawn before and after in the report

    DEFAULT_STEPS = 1000

    def __post_init__(self) -> None:
        self.lora = self.lora or self.qlora

    def check(self) -> None:
        if self.steps is not None and self.minutes is not None:
            raise InputError("give --steps or --minutes, not both")
        for name in ("steps", "minutes", "lora_rank", "batch_size", "learning_rate", "curve_images"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise InputError(f"--{name.replace('_', '-')} must be positive, got {value!r}")
        for name in ("curve_points", "samples"):
            if getattr(self, name) < 0:
                raise InputError(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(self, name)!r}")
        if not 0 <= self.held_out < 1:
            raise InputError(f"--held-out must be in [0, 1), got {self.held_out!r}")
        if not 0 <= self.rehearsal < 1:
            raise InputError(f"--rehearsal must be in [0, 1), got {self.rehearsal!r}")
        if self.rehearsal and self.model is not None:
            raise InputError("--rehearsal replays the shipped nano's own training data; another model's is not known here")
        if self.keep_adapter and not self.lora:
            raise InputError("--keep-adapter needs --lora (full training has no adapter)")


@dataclass
class FinetuneResult:
    final: Path  # the trained checkpoint (RexOmni.from_pretrained loads it)
    report: Path  # report.md
    metrics: dict[str, Any] = field(default_factory=dict)  # what metrics.json holds


@dataclass
class Plan:
    """What a run trains on and how long: derived from the data, saved in finetune.json."""

    data: str
    fmt: str
    data_sha256: str
    categories: list[str]
    tasks: list[str]
    train: dict[str, list[int]]  # task → the training records that pose it
    val_records: int
    max_steps: int | None = None  # fixed once (with --minutes: measured) and kept on resume


def finetune(data: str | Path, out: str | Path, **options: Any) -> FinetuneResult:
    """Fine-tune a Rex-Omni model on DATA into DIR = `out` (see the module docstring); `options`
    are `FinetuneOptions` fields. Returns where the model, the report and the metrics are."""
    settings = FinetuneOptions(**options)
    settings.check()
    device = DeviceFacts.detect()
    if settings.qlora:
        require_4bit(device)  # before minutes go into loading a model
    out = Path(out)
    _check_out(out, settings)
    data = read_data(data, settings)
    tasks = trainable_tasks(data.train, settings.tasks, data.source.path)
    start = RexOmni.from_pretrained(settings.model)
    check_vocabulary(data.categories, start.tokenizer, data.source.path)
    training = training_plan(
        sum(weights.numel() for weights in start.model.parameters()), device, lora=settings.lora, qlora=settings.qlora,
        gradient_checkpointing=settings.gradient_checkpointing, batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
    )
    plan = _start_or_resume(out, settings, Plan(
        data=data.source.path, fmt=data.source.fmt, data_sha256=data.sha256, categories=data.categories, tasks=tasks,
        train={task: [index for index, record in data.train if poses(record, task)] for task in tasks},
        val_records=len(data.val),
    ))
    val_dir, curve_dir = _write_validation(out, data.val, settings.curve_images)
    before = evaluate_tasks(start, tasks, val_dir, out / "eval" / "before", "start")
    del start
    final = _train(out, data.source, settings, plan, training, curve_dir)
    after_model = RexOmni.from_pretrained(final)
    after = evaluate_tasks(after_model, tasks, val_dir, out / "eval" / "after", _sha256(final / "model.safetensors"))
    return _report(out, settings, plan, training, val_dir, before, after)


@dataclass
class UserData:
    """DATA (and --val) read and checked: the records to train on and to validate with."""

    source: DataSource
    train: list[tuple[int, Record]]  # (index in DATA, record)
    val: list[Record]
    categories: list[str]  # DATA's category list, then any that only --val has
    sha256: str  # of the annotations: a resumed run must find the same ones


def read_data(data: str | Path, settings: FinetuneOptions) -> UserData:
    """Every record of DATA (and --val) checked (`data/checks.py`), and split; InputError if a
    split is empty."""
    source = resolve_source(data, settings.images)
    skipped = SkipReport()
    checked = check_dataset(source.open(settings.lenient, skipped), settings.lenient, skipped)
    digest = hashlib.sha256(_sha256(_annotation_file(source)).encode())
    categories = list(checked.categories)
    if settings.val is None:
        train_indices, _ = split_records([index for index, _ in checked.records], settings.held_out, settings.seed)
        training = set(train_indices)
        train = [(index, record) for index, record in checked.records if index in training]
        val, val_source = [record for index, record in checked.records if index not in training], source
    else:
        train, val_source = checked.records, resolve_source(settings.val, settings.val_images)
        val_checked = check_dataset(val_source.open(settings.lenient, skipped), settings.lenient, skipped)
        val = [record for _, record in val_checked.records]
        categories += [name for name in val_checked.categories if name not in categories]
        digest.update(_sha256(_annotation_file(val_source)).encode())
    if skipped.total:
        print(f"finetune: {skipped.summary()}; first: {skipped.examples[0]}")
    if not train:
        raise InputError(f"{source.path}: no record is left to train on ({len(val)} held out for validation); "
                         "add records, or lower --held-out")
    if not val:
        hint = "add records" if settings.val else "raise --held-out above 0, or pass --val"
        raise InputError(f"{val_source.path}: the validation split is empty; {hint}")
    return UserData(source, train, val, categories, digest.hexdigest())


# --------------------------------------------------------------------------- the run folder


def _identity(settings: FinetuneOptions) -> dict[str, Any]:
    """The options that make a run what it is (how it is shown, and how memory is spent, do not)."""
    incidental = {"curve_points", "curve_images", "samples", "keep_adapter", "lenient", "gradient_checkpointing"}
    return {key: value for key, value in dataclasses.asdict(settings).items() if key not in incidental}


def _check_out(out: Path, settings: FinetuneOptions) -> None:
    """DIR must be new, empty, or a run of these same options (resumed)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: is a file; --out is a folder for the run")
    if (out / RUN_RECORD).is_file():
        saved = _read_record(out)["options"]
        differing = sorted(key for key, value in _identity(settings).items() if saved.get(key) != value)
        if differing:
            was = ", ".join(f"{key} {saved.get(key)!r} (now {getattr(settings, key)!r})" for key in differing)
            raise InputError(f"{out}: holds a fine-tuning run with other options: {was}; rerun with that run's options "
                             "to resume it, or choose another --out")
    elif out.is_dir() and any(out.iterdir()):
        raise InputError(f"{out}: already holds files but no {RUN_RECORD}: not a fine-tuning run to resume; "
                         "choose a new or empty --out folder")


def _start_or_resume(out: Path, settings: FinetuneOptions, plan: Plan) -> Plan:
    """Write the run record, or check the dataset is still the one the run began with and take
    its saved plan (which holds the number of steps it settled on)."""
    if (out / RUN_RECORD).is_file():
        saved = Plan(**_read_record(out)["plan"])
        if dataclasses.replace(saved, max_steps=None) != plan:
            raise InputError(f"{out}: the run began on another version of {plan.data} (its annotations, images "
                             f"or their split differ, see {out / RUN_RECORD}); restore that dataset, or choose another --out")
        return saved
    _save_record(out, settings, plan)
    return plan


def _read_record(out: Path) -> dict[str, Any]:
    try:
        record = json.loads((out / RUN_RECORD).read_text())
    except json.JSONDecodeError as error:
        raise InputError(f"{out / RUN_RECORD}: not valid JSON ({error.msg}); it is not a run this version wrote") from None
    if not (isinstance(record, dict) and {"options", "plan"} <= set(record)):
        raise InputError(f"{out / RUN_RECORD}: holds no fine-tuning run (options and plan)")
    return record


def _save_record(out: Path, settings: FinetuneOptions, plan: Plan) -> None:
    with staged_files() as staged:
        staged.path(out / RUN_RECORD).write_text(json.dumps(
            {"options": dataclasses.asdict(settings), "plan": dataclasses.asdict(plan)}, indent=1))


def _annotation_file(source) -> Path:
    return Path(source.path) / "annotations.tsv" if source.fmt == "tsv" else Path(source.path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_validation(out: Path, records: list, curve_images: int) -> tuple[Path, Path]:
    """The validation records as COCO folders (their images copied in, the user's left alone):
    all of them, and the first `curve_images` for the measurements during training."""
    folders = (out / "val", out / "val_curve")
    for folder, subset in zip(folders, (records, records[:curve_images])):
        if not (folder / "annotations.json").is_file():
            write_coco(subset, folder / "annotations.json")
    return folders


# --------------------------------------------------------------------------- evaluation


def evaluate_tasks(model, tasks: Sequence[str], val_dir: Path, out_dir: Path, fingerprint: str,
                   resume: bool = True) -> dict[str, dict[str, Any]]:
    """`eval run` of each task on the validation folder; box tasks also per category (and AP
    when the model's answers carry scores)."""
    results = {}
    for task in tasks:
        task_dir = out_dir / task
        metrics = evaluate_model(model, val_dir, task, task_dir, resume=resume, model_fingerprint=fingerprint)
        if task == "detection":
            metrics.update(box_details(val_dir / "annotations.json", task_dir / "predictions.json"))
        results[task] = metrics
    return results


def box_details(gt_file: Path, predictions_file: Path) -> dict[str, Any]:
    """Counts, P/R/F1@0.5 and F1@mIoU per category (`eval.f1.per_category_f1`), and COCO AP once
    predictions carry scores (`AP` is None, with a note in the report, while the model writes none)."""
    gt = load_ground_truth(gt_file)
    dets = load_detections(predictions_file, gt, lenient=True)
    per_category = {name: scores.to_dict() for name, scores in per_category_f1(gt, dets, 0.5).items()}
    details: dict[str, Any] = {"per_category": per_category}
    if dets.scores is not None and len(dets):
        stats = coco_ap(gt, dets).stats
        details.update(AP=stats["AP"], AP50=stats["AP50"])
    else:
        details["AP"] = None  # the hook: filled once the model's regions carry scores
    return details


# --------------------------------------------------------------------------- training


def _train(out: Path, source: DataSource, settings: FinetuneOptions, plan: Plan, training: TrainingPlan,
           curve_dir: Path) -> Path:
    """Train (or resume, or find done) into DIR; returns `DIR/final`."""
    final = out / "final"
    if (final / "log_history.json").is_file():  # written last: training is done
        return final
    data = {"path": source.path, "fmt": source.fmt, "records": plan.train, "vocabulary": plan.categories,
            "image_root": source.image_root, "seed": settings.seed}
    if settings.rehearsal:
        data.update(rehearsal=settings.rehearsal, rehearsal_stream=nano_rehearsal_stream())

    def config(max_steps: int):
        return finetune_config(out, settings.model, data, training, max_steps=max_steps, lora_rank=settings.lora_rank,
                               seed=settings.seed)

    if plan.max_steps is None:
        plan.max_steps = settings.steps or FinetuneOptions.DEFAULT_STEPS
        if settings.minutes is not None:
            print(f"finetune: timing a few steps to fit the schedule into {settings.minutes:g} minutes")
            plan.max_steps = steps_for_minutes(config(1), settings.minutes)
        _save_record(out, settings, plan)
    clock = TrainingClock(None if settings.minutes is None else settings.minutes * 60)
    callbacks = [clock]
    if settings.curve_points and "detection" in plan.tasks:
        every = max(1, plan.max_steps // (settings.curve_points + 1))
        callbacks.append(ValidationCurve(every, curve_dir, out / "eval" / "curve", clock))
    final = train_sft(config(plan.max_steps), callbacks=callbacks)
    if settings.keep_adapter:
        _keep_adapter(out)
    return final


def _keep_adapter(out: Path) -> None:
    """Copy the LoRA adapter of the last checkpoint (peft's own files) to DIR/adapter."""
    checkpoint = latest_checkpoint(out)
    adapter = out / "adapter"
    adapter.mkdir(exist_ok=True)
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        shutil.copy2(checkpoint / name, adapter / name)


class ValidationCurve(TrainerCallback):
    """Validation detection F1 of the model being trained, every `every` steps, on the small
    curve folder; the training clock is paused meanwhile (it counts training only)."""

    def __init__(self, every: int, data_dir: Path, out_dir: Path, clock: TrainingClock):
        self.every, self.data_dir, self.out_dir, self.clock = every, data_dir, out_dir, clock

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if state.global_step % self.every or state.global_step >= state.max_steps:
            return  # the final model is measured on the whole split afterwards
        self.clock.pause()
        live = model.get_base_model() if hasattr(model, "get_base_model") else model  # LoRA: adapters stay in
        try:
            step_dir = self.out_dir / f"step-{state.global_step:06d}"
            evaluate_tasks(RexOmni(live, processing_class), ["detection"], self.data_dir, step_dir,
                           f"step-{state.global_step}", resume=False)
        finally:
            model.train()
            self.clock.resume()


# --------------------------------------------------------------------------- report


def _report(out: Path, settings: FinetuneOptions, plan: Plan, training: TrainingPlan, val_dir: Path, before: dict,
            after: dict) -> FinetuneResult:
    final = out / "final"
    log_history = json.loads((final / "log_history.json").read_text())
    trained_steps = max((entry.get("step", 0) for entry in log_history), default=0)
    curve = []
    if "detection" in plan.tasks:
        curve = [{"step": 0, **_headline(before["detection"])}, *curve_points(out / "eval" / "curve"),
                 {"step": trained_steps, **_headline(after["detection"])}]
    metrics = {
        "model": settings.model or "shipped nano", "final": str(final), "lora": settings.lora,
        "training": training.describe(),
        "rehearsal": settings.rehearsal, "data": plan.data, "format": plan.fmt, "tasks": plan.tasks,
        "categories": plan.categories, "train_records": len({i for indices in plan.train.values() for i in indices}),
        "val_records": plan.val_records, "steps": trained_steps, "max_steps": plan.max_steps,
        "training_minutes": _training_minutes(out),
        "headline_metrics": {task: HEADLINE_METRICS[TASKS[task].family] for task in plan.tasks},
        "before": before, "after": after, "curve": curve,
    }
    report = write_report(out, metrics, log_history, val_dir, out / "eval", settings.samples)
    return FinetuneResult(final, report, metrics)


def _headline(metrics: dict[str, Any]) -> dict[str, float]:
    return {name: metrics[name] for name in HEADLINE_METRICS["boxes"]}


def _training_minutes(out: Path) -> float | None:
    """Minutes of training, as the clock in the last checkpoint counted them (validation during
    training left out)."""
    checkpoint = latest_checkpoint(out)
    if checkpoint is None:
        return None
    saved = json.loads((checkpoint / "trainer_state.json").read_text()).get("stateful_callbacks", {})
    elapsed = saved.get(TrainingClock.__name__, {}).get("attributes", {}).get("elapsed")
    return None if elapsed is None else round(elapsed / 60, 2)
