"""Fine-tuning on a user's own dataset, the training half: records → conversations → SFT.

`rexomni finetune` (the pipeline with its before/after evaluation is `rexomni_core.finetune`)
trains through `train_sft` like every recipe; what is particular to a user's data is here:
- `resolve_source`: what DATA is (a COCO file, a `rexomni data synth` folder, a JSONL file, a
  released-format TSV folder);
- `trainable_tasks`: the tasks the annotations allow (detection and pointing always, visual
  prompting from boxes, OCR where annotations carry text, keypoints where they carry keypoints);
- `check_vocabulary`: every category a phrase the model's tokenizer writes back unchanged;
- `split_records`: a seeded validation share held out;
- `RecordConversations`: the `DataConfig` factory, conversation i pure in (seed, i) like the data
  engines' stream (a resumed run continues where it stopped). Detection and pointing ask for
  present categories and for absent ones drawn from the dataset's own list (answered `None`);
  pointing targets come from masks (the mask → point engine) or box centres; a `rehearsal`
  share may come from the shipped nano's own training data instead, so it keeps its categories;
- `steps_for_minutes` and `TrainingClock`: a run bounded by training time (`--minutes`), which a
  resumed run counts on from where its checkpoint stopped;
- `training_plan`: how to train, from the model's size, the machine (`DeviceFacts`) and the
  options: bf16, gradient checkpointing, LoRA or every weight, QLoRA's 4-bit base, batch, learning
  rate (`finetune_config` turns it into the SFT configuration).
"""

from __future__ import annotations

import dataclasses
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from ..annotations import Annotation
from ..data.formats import open_dataset
from ..data.formats.records import Record
from ..data.samplers import SAMPLERS, Conversation, ConversationStream
from ..errors import InputError, MissingInputError
from ..tasks import KEYPOINT_SCHEMAS, OCR_GRANULARITIES, TASKS, normalize_categories
from .configs import DataConfig, LoraSettings, SFTConfig, read_recipe
from .sft import train_sft

# The tasks a user's records can pose, and each one's share of the conversations when trained.
# Detection, which most datasets are for, is asked most; referring and GUI grounding need words
# only the nano worlds' generators know (attributes, labels), so records do not pose them.
TASK_WEIGHTS: dict[str, float] = {
    "detection": 3.0,
    "pointing": 1.0,
    "visual_prompting": 0.5,
    "ocr_box": 1.0,
    "ocr_polygon": 1.0,
    "keypoint": 1.0,
}
FORMAT_SUFFIXES = {".json": "coco", ".jsonl": "jsonl"}
# Rehearsal for the shipped nano: the data its SFT ended on (this recipe's mixture of the shapes
# world), at a seed of its own (the stream derives scenes from (seed, index)).
NANO_STREAM_RECIPE = "nano_ladder6_shapes"
REHEARSAL_SEED = 1919


def nano_rehearsal_stream() -> dict[str, Any]:
    """`ConversationStream` kwargs of the shipped nano's own training data."""
    return {"mixture": read_recipe(NANO_STREAM_RECIPE)["data"]["kwargs"]["mixture"], "seed": REHEARSAL_SEED}


@dataclass(frozen=True)
class DataSource:
    """A user's dataset: where it is, its format, and (COCO) the folder its images lie in."""

    path: str
    fmt: str
    image_root: str | None = None

    def open(self, lenient: bool = False, report=None):
        return open_dataset(self.path, self.fmt, lenient=lenient, report=report, image_root=self.image_root)


def resolve_source(data: str | Path, images: str | Path | None = None) -> DataSource:
    """What DATA is: a COCO file (its images in `images`, else beside it), a folder holding one
    `annotations.json` (as `rexomni data synth` writes) or a released-format TSV, or a JSONL file."""
    path = Path(data)
    if not path.exists():
        raise MissingInputError(f"{path}: no such dataset file or folder")
    if path.is_dir():
        if (path / "annotations.tsv").is_file():
            source = DataSource(str(path), "tsv")
        elif (path / "annotations.json").is_file():
            source = DataSource(str(path / "annotations.json"), "coco", str(images or path))
        else:
            raise InputError(f"{path}: a dataset folder holds annotations.json (COCO, as `rexomni data synth` writes) "
                             "or annotations.tsv and images.tsv (the released TSV layout); this one holds neither")
    elif path.suffix in FORMAT_SUFFIXES:
        fmt = FORMAT_SUFFIXES[path.suffix]
        source = DataSource(str(path), fmt, str(images or path.parent) if fmt == "coco" else None)
    else:
        raise InputError(f"{path}: a dataset is a COCO .json file, a .jsonl file, or a folder (COCO or TSV)")
    if images is not None and source.fmt != "coco":
        raise InputError(f"{path}: --images is for COCO files; a {source.fmt} dataset says where its images are itself")
    return source


def task_annotations(record: Record, task: str) -> list[Annotation]:
    """The annotations of `record` that `task` is posed on (crowd regions never are)."""
    spec = TASKS[task]
    plain = [a for a in record.annotations if a.attributes.get("iscrowd") != "1"]
    if spec.ocr:
        return [a for a in plain if a.text and a.category in OCR_GRANULARITIES
                and (spec.region_kind != "polygon" or a.polygon is not None)]
    if spec.needs_keypoint_type:
        people = [a for a in plain if a.keypoints and tuple(a.keypoints) == KEYPOINT_SCHEMAS.get(a.category)]
        return [a for a in people if a.category == people[0].category]  # one keypoint type per prompt
    return plain


def poses(record: Record, task: str) -> bool:
    """Whether `task` can be asked of `record`: detection and pointing always (an image without
    the categories asked is a negative), the others when it holds what they are about."""
    return TASKS[task].absent_phrases or bool(task_annotations(record, task))


def trainable_tasks(records: Sequence[tuple[int, Record]], asked: Sequence[str] | None, where: str) -> list[str]:
    """The tasks to train: `asked`, each of which some record must pose; by default every task
    the records allow."""
    allowed = [task for task in TASK_WEIGHTS if any(poses(record, task) for _, record in records)]
    if asked is None:
        return allowed
    for task in asked:
        if task not in TASK_WEIGHTS:
            raise InputError(f"--tasks: {task!r} cannot be posed from a dataset's records; choose from {', '.join(TASK_WEIGHTS)}")
        if task not in allowed:
            needs = "text on 'word' or 'text line' annotations" if TASKS[task].ocr else (
                f"keypoints named as in {', '.join(KEYPOINT_SCHEMAS)} schemas" if TASKS[task].needs_keypoint_type
                else "annotations")
            raise InputError(f"{where}: --tasks {task}: no record holds {needs}; this dataset allows {', '.join(allowed)}")
    return list(dict.fromkeys(asked))


def check_vocabulary(categories: Sequence[str], tokenizer, where: str) -> None:
    """Every category must be a phrase the model can read in a prompt and write back in an
    answer: valid as a prompt phrase, and tokenized to text that decodes to itself."""
    problems = []
    for category in categories:
        try:
            normalize_categories([category])
        except InputError as error:
            problems.append(f"{category!r} ({error})")
            continue
        decoded = tokenizer.decode(tokenizer.encode(category, add_special_tokens=False))
        if category != category.strip() or decoded != category:
            problems.append(f"{category!r} (the tokenizer writes it back as {decoded!r})")
    if problems:
        raise InputError(f"{where}: categories this model cannot write: {'; '.join(problems)}; rename them")


def split_records(indices: Sequence[int], held_out: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) record indices: a seeded `held_out` share (at least one record when the
    share is above 0) is held out."""
    if not 0 <= held_out < 1:
        raise InputError(f"the held-out share must be in [0, 1), got {held_out!r}")
    order = np.random.default_rng(seed).permutation(len(indices))
    count = max(1, round(held_out * len(indices))) if held_out > 0 else 0
    held = set(order[:count].tolist())
    return ([index for k, index in enumerate(indices) if k not in held],
            [index for k, index in enumerate(indices) if k in held])


@dataclass
class RecordConversations:
    """Endless conversations from a user's records (`DataConfig` factory; its kwargs are YAML).

    `records` maps each task trained to the dataset indices of the records that pose it.
    Conversation i draws a task by `TASK_WEIGHTS`, then one of that task's records, and poses
    it, all from (seed, i) alone. Absent phrases are drawn from `vocabulary` (the dataset's own
    category list), minus the categories a crowd region of the image holds. A `rehearsal` share
    of the conversations is item i of the `ConversationStream(**rehearsal_stream)` instead: the
    starting model's own training data, so that it keeps what it knew.
    """

    path: str
    fmt: str
    records: dict[str, list[int]]
    vocabulary: list[str]
    image_root: str | None = None
    seed: int = 0
    rehearsal: float = 0.0
    rehearsal_stream: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.tasks = [task for task, indices in self.records.items() if indices]
        if not self.tasks:
            raise InputError("no training records: every task has an empty record list")
        weights = np.array([TASK_WEIGHTS[task] for task in self.tasks], dtype=np.float64)
        self._cumulative = np.cumsum(weights / weights.sum())
        self._dataset = DataSource(self.path, self.fmt, self.image_root).open()
        if self.rehearsal and not self.rehearsal_stream:
            raise InputError("a rehearsal share needs the stream to rehearse (rehearsal_stream)")
        self._rehearsal = ConversationStream(**self.rehearsal_stream) if self.rehearsal else None

    def __getitem__(self, index: int) -> Conversation:
        sampler_seed = int(np.random.SeedSequence([self.seed, index]).generate_state(1)[0])
        rng = random.Random(sampler_seed)
        if self._rehearsal is not None and rng.random() < self.rehearsal:
            return self._rehearsal[index]
        task = self.tasks[min(int(np.searchsorted(self._cumulative, rng.random())), len(self.tasks) - 1)]
        candidates = self.records[task]
        record = self._dataset[candidates[rng.randrange(len(candidates))]]
        return pose(record, task, rng, self.vocabulary)


def pose(record: Record, task: str, rng: random.Random, vocabulary: Sequence[str]) -> Conversation:
    """One conversation posing `task` on `record` (which must pose it)."""
    view = dataclasses.replace(record, annotations=task_annotations(record, task))
    if TASKS[task].absent_phrases:
        crowded = {a.category for a in record.annotations if a.attributes.get("iscrowd") == "1"}
        return SAMPLERS[task](view, rng, vocabulary=[c for c in vocabulary if c not in crowded])
    return SAMPLERS[task](view, rng)


class TrainingClock(TrainerCallback, ExportableState):
    """Training time, saved in every checkpoint (`trainer_state.json`), so a resumed run goes on
    counting from its checkpoint; with a budget, training stops (saving) once it is spent.
    `paused()` leaves out time spent on other work, such as validation during training."""

    def __init__(self, budget_seconds: float | None = None):
        self.budget_seconds = budget_seconds
        self.elapsed = 0.0
        self._since: float | None = None

    def _tick(self) -> None:
        now = time.monotonic()
        if self._since is not None:
            self.elapsed += now - self._since
            self._since = now

    def on_train_begin(self, args, state, control, **kwargs):
        saved = state.stateful_callbacks.get(type(self).__name__)
        if isinstance(saved, dict):  # a resumed run: its checkpoint's count
            self.elapsed = float(saved["attributes"]["elapsed"])
        self._since = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        self._tick()
        if self.budget_seconds is not None and self.elapsed >= self.budget_seconds:
            control.should_training_stop = True
            control.should_save = True

    def on_train_end(self, args, state, control, **kwargs):
        self._tick()
        self._since = None

    def pause(self) -> None:
        self._tick()
        self._since = None

    def resume(self) -> None:
        self._since = time.monotonic()

    def state(self) -> dict:
        self._tick()
        return {"args": {"budget_seconds": self.budget_seconds}, "attributes": {"elapsed": self.elapsed}}


class StepTimer(TrainerCallback):
    """Seconds per optimizer step after the first (which warms up)."""

    def __init__(self):
        self.marks: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.marks.append(time.monotonic())

    @property
    def seconds_per_step(self) -> float:
        return (self.marks[-1] - self.marks[0]) / (len(self.marks) - 1)


def steps_for_minutes(config: SFTConfig, minutes: float, probe_steps: int = 4) -> int:
    """How many optimizer steps of `config` fit in `minutes`, timed on a short run of the same
    configuration into a scratch folder (so the schedule of the real run can end on time)."""
    timer = StepTimer()
    with tempfile.TemporaryDirectory(prefix="rexomni-probe-") as scratch:
        probe = dataclasses.replace(
            config, output_dir=scratch, max_steps=probe_steps + 1, save_steps=probe_steps + 1,
            logging_steps=probe_steps + 1, warmup_steps=0, resume=False,
        )
        train_sft(probe, callbacks=[timer])
    return max(1, int(minutes * 60 / timer.seconds_per_step))


# A model above this size is of the released kind (3 B), not the nano (5 M): memory, not time, is
# what runs out, and it wants the gentler learning rates.
LARGE_MODEL_PARAMETERS = 100_000_000
# Peak learning rates. The nano's: what taught it new colours (README, fine-tuning). A large
# model's: the usual starting points for LoRA and full fine-tuning at 3 B (untested here: no GPU).
LEARNING_RATES = {"nano": {"lora": 1e-3, "full": 3e-4}, "large": {"lora": 2e-4, "full": 1e-5}}


@dataclass(frozen=True)
class DeviceFacts:
    """What the machine offers a training run."""

    cuda: bool  # a CUDA GPU is visible
    bf16: bool  # that GPU computes in bf16 (Ampere or later)
    bitsandbytes: bool  # 4-bit loading is installed

    @classmethod
    def detect(cls) -> DeviceFacts:
        import importlib.util

        import torch

        cuda = torch.cuda.is_available()
        return cls(cuda, cuda and torch.cuda.is_bf16_supported(), importlib.util.find_spec("bitsandbytes") is not None)


@dataclass(frozen=True)
class TrainingPlan:
    """How a fine-tuning run trains, as `training_plan` decided it."""

    lora: bool  # adapters on the language model only (the vision tower and all else frozen), merged into final/
    quantization: str | None  # "nf4": the frozen base held in 4 bits through bitsandbytes (QLoRA)
    bf16: bool  # bf16 compute (autocast; under QLoRA the 4-bit layers' compute dtype too)
    gradient_checkpointing: bool  # activations recomputed in the backward pass: less memory, slower steps
    batch_size: int
    gradient_accumulation_steps: int
    learning_rate: float

    def describe(self) -> str:
        trains = "every weight" if not self.lora else (
            "LoRA on the language model" + (" over its 4-bit (nf4) weights" if self.quantization else "")
            + ", vision tower frozen")
        return "; ".join([
            trains, "bf16" if self.bf16 else "fp32",
            f"gradient checkpointing {'on' if self.gradient_checkpointing else 'off'}",
            f"{self.batch_size} x {self.gradient_accumulation_steps} conversations a step, peak lr {self.learning_rate:g}",
        ])


def require_4bit(device: DeviceFacts) -> None:
    """QLoRA's needs, checked before any model is loaded."""
    if not device.cuda:
        raise InputError("--qlora holds the model in 4 bits through bitsandbytes, which runs on a CUDA GPU, and "
                         "none is visible (torch.cuda.is_available() is False); use --lora")
    if not device.bitsandbytes:
        raise InputError("--qlora needs bitsandbytes, which is not installed: pip install 'rexomni-core[gpu]' "
                         "(or use --lora)")


def training_plan(parameters: int, device: DeviceFacts, *, lora: bool, qlora: bool = False,
                  gradient_checkpointing: bool | None = None, batch_size: int | None = None,
                  learning_rate: float | None = None) -> TrainingPlan:
    """How to fine-tune a model of `parameters` weights on this machine: bf16 where the GPU has it;
    gradient checkpointing (unless said) for a large model; QLoRA (`qlora`, LoRA implied) only
    with bitsandbytes and a CUDA GPU; 16 conversations a step on a CPU, 4 x 4 accumulated on a GPU;
    the learning rate of the model's size and kind of training unless given."""
    if qlora:
        require_4bit(device)
    large, lora = parameters > LARGE_MODEL_PARAMETERS, lora or qlora
    return TrainingPlan(
        lora=lora,
        quantization="nf4" if qlora else None,
        bf16=device.bf16,
        gradient_checkpointing=large if gradient_checkpointing is None else gradient_checkpointing,
        batch_size=batch_size or (4 if device.cuda else 16),
        gradient_accumulation_steps=4 if device.cuda else 1,
        learning_rate=learning_rate or LEARNING_RATES["large" if large else "nano"]["lora" if lora else "full"],
    )


def finetune_config(output_dir: str | Path, model: str | None, data: dict[str, Any], plan: TrainingPlan, *,
                    max_steps: int, lora_rank: int = 16, seed: int = 0) -> SFTConfig:
    """The SFT configuration of a fine-tuning run on `RecordConversations(**data)`, trained as
    `plan` says."""
    return SFTConfig(
        output_dir=str(output_dir),
        model=model,
        data=DataConfig("rexomni_core.train.finetune:RecordConversations", data),
        max_steps=max_steps,
        learning_rate=plan.learning_rate,
        logging_steps=max(1, min(10, max_steps // 20)),
        save_steps=max(1, min(100, max_steps // 10)),  # a checkpoint at least every 100 steps: Ctrl-C loses little
        save_total_limit=2,
        lora=LoraSettings(r=lora_rank, alpha=2 * lora_rank) if plan.lora else LoraSettings(),
        batch_size=plan.batch_size,
        gradient_accumulation_steps=plan.gradient_accumulation_steps,
        warmup_steps=max(1, max_steps // 20),
        seed=seed,
        bf16=plan.bf16,
        gradient_checkpointing=plan.gradient_checkpointing,
        quantization=plan.quantization,
    )
