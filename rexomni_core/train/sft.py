"""Supervised fine-tuning of Rex-Omni (nano or released) on conversations.

The transformers `Trainer` with two Rex-Omni pieces:
- `SFTCollator`: chat template + answer + `<|im_end|>`, through the same processor call as
  prediction (`RexOmni.encode`); labels mask everything but the answer and its `<|im_end|>`.
- `coordinate_loss`: cross-entropy where a coordinate target is a Gaussian over neighbouring bins.
- `attention_grounding_loss` (optional, for training from scratch): asks one head per layer to
  attend, from each position that writes a coordinate, to the image tokens of that region.
- `BindingReadout` (optional): a linear readout over the image's cells at each region's opening
  position, trained to pick the region's cells, so that position's state must say where the
  named object is (the retrieval probe's loss, `nano/oracle.py`); training-only.
Checkpoints are ordinary `save_pretrained` directories (plus optimizer state), so any checkpoint
loads with `RexOmni.from_pretrained(path)`; a rerun with the same config resumes from the newest.
`gradient_checkpointing` and `quantization: nf4` (QLoRA, `train/qlora.py`) trade speed for memory.
Multi-GPU: launch the same command with `accelerate launch --config_file "$(rexomni train
accelerate-config zero2)" -m rexomni_core.cli train sft --config ...` (`fsdp` for FSDP; the
packaged files are `train/accelerate/*.yaml`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler
from transformers import Trainer, TrainerCallback, TrainingArguments

from ..coords import NUM_BINS
from ..data.cell_targets import grid_side
from ..errors import InputError
from ..grammar import IM_END
from ..images import load_image
from ..model import RexOmni
from ..model.configuration import add_trained_tasks
from ..nano.architecture import build_nano
from .common import ResumeWithWeights, apply_lora, latest_checkpoint, save_final, training_arguments
from .configs import NANO_INIT, SFTConfig
from .qlora import load_4bit, prepare_4bit, with_full_precision_base

IGNORE_INDEX = -100
# transformers 5 renamed the Trainer's gradient checkpointing to activation checkpointing (the old name warns).
CHECKPOINTING = ("activation_checkpointing" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__
                 else "gradient_checkpointing")


class SFTCollator:
    """Conversations → model inputs with labels on the answer tokens only."""

    def __init__(self, rexomni: RexOmni):
        self.rexomni = rexomni
        self.tokenizer = rexomni.tokenizer

    def __call__(self, conversations: Sequence[Any]) -> dict[str, torch.Tensor]:
        targets = [c.answer + IM_END for c in conversations]
        texts = [self.rexomni.chat_text(c.prompt) + t for c, t in zip(conversations, targets)]
        batch = self.rexomni.encode([load_image(c.image) for c in conversations], texts)
        labels = torch.full_like(batch["input_ids"], IGNORE_INDEX)
        for i, target in enumerate(targets):
            # Prompts are padded on the left, so each answer ends its row. The answer starts with
            # a special token or after the template's newline, so it tokenizes the same alone.
            n = len(self.tokenizer(target, add_special_tokens=False)["input_ids"])
            labels[i, -n:] = batch["input_ids"][i, -n:]
        batch["labels"] = labels
        return dict(batch)


def coordinate_bin_table(coordinate_ids: torch.Tensor, size: int, device=None) -> torch.Tensor:
    """(size,) long: the bin of each coordinate token id, -1 for every other id."""
    table = torch.full((size,), -1, dtype=torch.long, device=device)
    table[coordinate_ids.to(table.device)] = torch.arange(NUM_BINS, device=table.device)
    return table


def coordinate_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    coordinate_ids: torch.Tensor,
    sigma: float = 1.0,
    radius: int = 3,
) -> torch.Tensor:
    """Next-token cross-entropy; coordinate targets are soft over bins within `radius`.

    For a target bin b the target distribution is ∝ exp(-(k - b)² / 2σ²) over the coordinate
    tokens k in [b - radius, b + radius] ∩ [0, 999]. σ = 0 gives plain cross-entropy.
    """
    logits, labels = logits[:, :-1], labels[:, 1:]
    keep = labels != IGNORE_INDEX
    log_probs = F.log_softmax(logits[keep].float(), dim=-1)
    targets = labels[keep]
    loss = -log_probs.gather(1, targets[:, None])[:, 0]
    if sigma > 0:
        bin_of = coordinate_bin_table(coordinate_ids, log_probs.shape[1], targets.device)
        bins = bin_of[targets]
        is_coordinate = bins >= 0
        offsets = torch.arange(-radius, radius + 1, device=targets.device)
        neighbours = bins[is_coordinate, None] + offsets[None, :]
        valid = (neighbours >= 0) & (neighbours < NUM_BINS)
        weights = torch.exp(-(offsets.float() ** 2) / (2 * sigma**2))[None, :] * valid
        weights = weights / weights.sum(dim=1, keepdim=True)
        ids = coordinate_ids[neighbours.clamp(0, NUM_BINS - 1)]
        soft = -(weights * log_probs[is_coordinate].gather(1, ids)).sum(dim=1)
        loss = loss.clone()
        loss[is_coordinate] = soft
    return loss.mean()


def region_cells(bins: Sequence[int], rows: int, cols: int) -> list[int] | None:
    """Row-major indices of the image-token cells a run of coordinate bins covers: the cell of a
    point, the cells a box (or a polygon's bounding box) overlaps; None for an odd run."""
    if len(bins) < 2 or len(bins) % 2:
        return None
    xs, ys = bins[0::2], bins[1::2]
    col0, col1 = (min(b * cols // NUM_BINS, cols - 1) for b in (min(xs), max(xs)))
    row0, row1 = (min(b * rows // NUM_BINS, rows - 1) for b in (min(ys), max(ys)))
    return [r * cols + c for r in range(row0, row1 + 1) for c in range(col0, col1 + 1)]


def coordinate_runs(tokens: Sequence[int], labels: Sequence[int], is_coordinate, spacer_ids=frozenset()) -> list[list[int]]:
    """Positions of the answer's coordinate tokens (labels not `IGNORE_INDEX`), one list per
    region: a run ends at any answer token that is neither a coordinate nor in `spacer_ids`."""
    runs, run = [], []
    for position, (token, label) in enumerate(zip(tokens, labels)):
        if label == IGNORE_INDEX:
            continue
        if is_coordinate(token):
            run.append(position)
        elif token not in spacer_ids and run:
            runs.append(run)
            run = []
    return runs + ([run] if run else [])


def grounding_targets(
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    image_grid_thw: torch.Tensor,
    image_token_id: int,
    bin_of: torch.Tensor,
    spacer_ids: set[int],
    merge_size: int,
    first_only: bool = False,
) -> torch.Tensor:
    """(batch, seq, seq) bool: row q of example b marks the image tokens that the position q,
    which predicts a coordinate of the answer, should look at. `first_only`: only the position
    that predicts each region's first coordinate, the one that must find the region from the
    phrase alone (later ones can read where it is from the coordinates already written).

    The answer's coordinate tokens are grouped into regions by runs (tokens in `spacer_ids`, the
    whitespace of the keypoint JSON, do not break a run; anything else does), so this needs no
    parser and covers boxes, points, polygons and keypoint boxes alike. `bin_of` maps a token id
    to its bin (-1 for other tokens). One image per row, its tokens in raster order of the merged
    grid; a row whose image-token count does not match its grid gets no targets.
    """
    batch, length = input_ids.shape
    targets = torch.zeros(batch, length, length, dtype=torch.bool, device=input_ids.device)
    for row in range(batch):
        _, grid_h, grid_w = (int(v) for v in image_grid_thw[row])
        rows, cols = grid_h // merge_size, grid_w // merge_size
        image_positions = (input_ids[row] == image_token_id).nonzero()[:, 0]
        if len(image_positions) != rows * cols:
            continue
        # Token ids as Python ints: `bin_of` stays on the CPU whatever device the batch is on.
        tokens = input_ids[row].tolist()
        for run in coordinate_runs(tokens, labels[row].tolist(), lambda token: bin_of[token] >= 0, spacer_ids):
            cells = region_cells([int(bin_of[tokens[p]]) for p in run], rows, cols)
            if cells is None:
                continue
            queries = torch.tensor(run[:1] if first_only else run, device=input_ids.device) - 1  # the position before predicts
            targets[row, queries[:, None], image_positions[cells][None, :]] = True
    return targets


def attention_grounding_loss(
    attentions: Sequence[torch.Tensor], targets: torch.Tensor, layers: Sequence[int], head: int = 0
) -> torch.Tensor:
    """Mean over the listed layers and every coordinate-writing position of -log(attention mass
    that `head` puts on its region's image tokens). Zero when the batch has no targets."""
    queries = targets.any(dim=-1)
    if not queries.any():
        return attentions[0].sum() * 0.0
    losses = []
    for layer in layers:
        mass = (attentions[layer][:, head].float() * targets).sum(dim=-1)[queries]
        losses.append(-torch.log(mass + 1e-6))
    return torch.cat(losses).mean()


class BindingReadout(torch.nn.Module):
    """`weight` × −log(probability a linear readout of the last hidden state puts on the region's
    cells), at every position that predicts a region's first coordinate (the one that has only
    the phrase to find its region by). The retrieval probe learns binding from this loss far
    sooner than SFT's next-token loss does (model card, thirteenth session). One image of `cells`
    tokens per row (a square view); checkpoints keep the readout for resume, `final/` does not."""

    FILE = "binding_readout.pt"

    def __init__(self, hidden: int, cells: int, weight: float):
        super().__init__()
        self.cells, self.weight = cells, weight
        self.readout = torch.nn.Linear(hidden, cells)

    def loss(self, hidden_states: torch.Tensor, targets: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
        """`targets` as `grounding_targets(first_only=True)` gives them; `image_tokens` (batch,
        seq) marks each row's image tokens."""
        rows, positions = targets.any(dim=-1).nonzero(as_tuple=True)
        if len(rows) == 0:
            return hidden_states.sum() * 0.0
        counts = image_tokens.sum(dim=1)
        if bool((counts[rows] != self.cells).any()):
            raise ValueError(f"the binding readout reads {self.cells} cells, a row has {counts[rows].tolist()}")
        cells = torch.stack([targets[r, p][image_tokens[r]] for r, p in zip(rows.tolist(), positions.tolist())])
        log_p = self.readout(hidden_states[rows, positions].float()).log_softmax(dim=-1)
        return -self.weight * log_p.masked_fill(~cells, float("-inf")).logsumexp(dim=-1).mean()

    def save(self, checkpoint: Path) -> None:
        torch.save(self.state_dict(), checkpoint / self.FILE)

    def load(self, checkpoint: Path) -> None:
        self.load_state_dict(torch.load(checkpoint / self.FILE, weights_only=True))


class RexOmniTrainer(ResumeWithWeights, Trainer):
    def __init__(
        self,
        *args,
        coordinate_ids: torch.Tensor,
        sigma: float,
        radius: int,
        grounding_weight: float = 0.0,
        grounding_layers: Sequence[int] = (),
        spacer_ids: set[int] = frozenset(),
        grounding_first_only: bool = False,
        batch_by_task: bool = False,
        dense=None,
        binding: BindingReadout | None = None,
        **kwargs,
    ):
        self.batch_by_task = batch_by_task  # read while the Trainer builds its data loader
        self.dense, self._dense_calls = dense, None  # a DenseAuxiliary (train/vision.py), or None
        self.binding = binding
        super().__init__(*args, **kwargs)
        self.coordinate_ids, self.sigma, self.radius = coordinate_ids, sigma, radius
        self.grounding_weight, self.grounding_layers, self.spacer_ids = grounding_weight, grounding_layers, spacer_ids
        self.grounding_first_only = grounding_first_only
        self._grounding_log: list[float] = []
        self._dense_log: list[float] = []
        self._binding_log: list[float] = []
        # Built once: the grounding and binding terms look every answer token up in it at each step.
        vocab_size = self.model.config.text_config.vocab_size
        targeted = grounding_weight > 0 or binding is not None
        self._bin_of = coordinate_bin_table(coordinate_ids, vocab_size) if targeted else None

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.batch_by_task and hasattr(getattr(dataset, "source", None), "entry_index"):
            # Per device batch: each one pads on its own, accumulated or not.
            return TaskGroupedSampler(dataset, self._train_batch_size, self.args.seed)
        return super()._get_train_sampler(train_dataset)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        # Answers end every row (prompts are left-padded): the vocabulary projection is only
        # needed over the last positions, which saves most of its cost.
        keep = int((labels != IGNORE_INDEX).sum(dim=1).max()) + 1
        grounding, binding = self.grounding_weight > 0, self.binding is not None and model.training
        outputs = model(**inputs, logits_to_keep=keep, output_attentions=grounding, output_hidden_states=binding)
        ids = self.coordinate_ids.to(labels.device)
        loss = coordinate_loss(outputs.logits, labels[:, -keep:], ids, self.sigma, self.radius)
        if grounding:
            loss = loss + self.grounding_weight * self._grounding_loss(model, inputs, labels, outputs.attentions)
        if binding:
            loss = loss + self._binding_loss(model, inputs, labels, outputs.hidden_states[-1])
        if self.dense is not None and model.training:
            if self._dense_calls is None:  # one scene batch per loss computed, counted from the step resumed at
                self._dense_calls = self.state.global_step * self.args.gradient_accumulation_steps
            dense = self.dense.loss(self._dense_calls)
            self._dense_calls += 1
            self._dense_log.append(float(dense.detach()))
            loss = loss + dense
        return (loss, outputs) if return_outputs else loss

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        if self.dense is not None:  # before trainer_state.json, which marks a checkpoint complete
            self.dense.save(Path(output_dir))
        if self.binding is not None:
            self.binding.save(Path(output_dir))

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if self.dense is not None and checkpoint is not None:
            self.dense.load(Path(checkpoint))
            self._dense_calls = None
        if self.binding is not None and checkpoint is not None:
            self.binding.load(Path(checkpoint))

    def _targets(self, model, inputs, labels, first_only: bool) -> torch.Tensor:
        config = self.accelerator.unwrap_model(model).config
        return grounding_targets(
            inputs["input_ids"], labels, inputs["image_grid_thw"], config.image_token_id,
            self._bin_of, self.spacer_ids, config.vision_config.spatial_merge_size, first_only,
        )

    def _binding_loss(self, model, inputs, labels, hidden_states) -> torch.Tensor:
        image_tokens = inputs["input_ids"] == self.accelerator.unwrap_model(model).config.image_token_id
        loss = self.binding.loss(hidden_states, self._targets(model, inputs, labels, True), image_tokens)
        self._binding_log.append(float(loss.detach()))
        return loss

    def _grounding_loss(self, model, inputs, labels, attentions) -> torch.Tensor:
        targets = self._targets(model, inputs, labels, self.grounding_first_only)
        loss = attention_grounding_loss(attentions, targets, self.grounding_layers)
        self._grounding_log.append(float(loss.detach()))
        return loss

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        # The grounding term beside the total loss, averaged since the last log.
        if self._grounding_log:
            logs["grounding_loss"] = round(sum(self._grounding_log) / len(self._grounding_log), 4)
        self._grounding_log = []
        if self._dense_log:
            logs["dense_loss"] = round(sum(self._dense_log) / len(self._dense_log), 4)
        self._dense_log = []
        if self._binding_log:
            logs["binding_loss"] = round(sum(self._binding_log) / len(self._binding_log), 4)
        self._binding_log = []
        super().log(logs, *args, **kwargs)


def optimizer_with_vision_ratio(model, visual, config: SFTConfig, extra=None) -> torch.optim.Optimizer:
    """AdamW with the vision tower's parameters at `vision_learning_rate_ratio` × the peak rate
    (the schedule scales both groups alike), and the modules of `extra` (the dense auxiliary's
    heads) at the peak rate; weight decay spares biases and norms, as the Trainer's own
    optimizer does."""
    visual = {id(p) for p in visual.parameters()}
    groups: dict[tuple[bool, bool], list] = {}
    named = list(model.named_parameters()) + (list(extra.named_parameters()) if extra is not None else [])
    for name, parameter in named:
        if parameter.requires_grad:
            decays = parameter.ndim > 1 and "norm" not in name
            groups.setdefault((id(parameter) in visual, decays), []).append(parameter)
    return torch.optim.AdamW([
        {"params": params, "weight_decay": config.weight_decay if decays else 0.0,
         "lr": config.learning_rate * (config.vision_learning_rate_ratio if is_visual else 1.0)}
        for (is_visual, decays), params in groups.items()
    ], lr=config.learning_rate)


class CellProbeCallback(TrainerCallback):
    """Runs the cell probe at every checkpoint and logs it beside the loss (`probe_*` keys)."""

    def __init__(self, rexomni: RexOmni, test_images: int):
        from ..nano.cell_probe import CellProbe

        self.rexomni, self.probe = rexomni, CellProbe(rexomni.square_side, test_images=test_images)

    def on_save(self, args, state, control, **kwargs):
        visual = self.rexomni.model.model.visual
        was_training = visual.training
        visual.eval()
        found = self.probe.measure(self.rexomni)
        visual.train(was_training)
        entry = {"step": state.global_step} | {f"probe_{k}": v for k, v in found.items() if k in ("colour", "shape", "category")}
        state.log_history.append(entry)
        print(entry, flush=True)


class TaskGroupedSampler(Sampler[int]):
    """The indices of a `ConversationDataset` over a mixture stream, ordered so that each batch
    holds conversations of one mixture entry where it can: a batch pads to its longest answer,
    and a keypoint answer is several times a pointing one. Windows of `window_batches` batches
    are sorted by entry (stably), cut into batches, and the batches shuffled within the window:
    pure in (seed, length), so a resumed run that skips the batches it has done sees the same order."""

    def __init__(self, dataset: ConversationDataset, batch_size: int, seed: int, window_batches: int = 32):
        self.dataset, self.batch_size, self.seed, self.window = dataset, batch_size, seed, batch_size * window_batches

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self):
        entry_of = self.dataset.source.entry_index
        for start in range(0, len(self.dataset), self.window):
            window = range(start, min(start + self.window, len(self.dataset)))
            ordered = sorted(window, key=lambda i: entry_of(self.dataset.start + i))
            batches = [ordered[i:i + self.batch_size] for i in range(0, len(ordered), self.batch_size)]
            for b in np.random.default_rng([self.seed, start]).permutation(len(batches)):
                yield from batches[b]


class ConversationDataset(Dataset):
    """`length` items of an endless indexable source from `start` on, as a map-style dataset:
    the Trainer shuffles indices, shards them across processes and skips them on resume; stage 0
    starts at the index where a resumed run stopped."""

    def __init__(self, source, length: int, start: int = 0):
        self.source, self.length, self.start = source, length, start

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        return self.source[self.start + index]


def spacer_token_ids(tokenizer) -> set[int]:
    """Tokens that decode to whitespace only (they separate the keypoint JSON's coordinates)."""
    return {i for i in range(len(tokenizer)) if not tokenizer.decode([i]).strip()} - set(tokenizer.all_special_ids)


def load_for_training(config: SFTConfig) -> RexOmni:
    if config.model == NANO_INIT:
        rexomni = build_nano(seed=config.seed, **config.nano_architecture)
    elif config.quantization:
        rexomni = load_4bit(config.model)
    else:
        rexomni = RexOmni.from_pretrained(config.model, device="cpu", dtype=torch.float32)
    if config.min_pixels is not None:
        rexomni.min_pixels = config.min_pixels
    if config.max_pixels is not None:
        rexomni.max_pixels = config.max_pixels
    if config.square_side is not None:
        rexomni.square_side = config.square_side
    if config.prompt_first is not None:
        rexomni.prompt_first = config.prompt_first
    if config.untie_embeddings:
        untie_output_embeddings(rexomni.model)
    return rexomni


def untie_output_embeddings(model) -> None:
    """Give the output projection its own copy of the input embeddings (config
    `tie_word_embeddings: false`, saved so), so a coordinate bin's output row can learn to be
    written from the retrieved state without moving the bin's input embedding. A no-op when
    they are already apart."""
    embeddings = model.get_input_embeddings()
    if model.lm_head.weight is not embeddings.weight:
        return
    model.lm_head.weight = torch.nn.Parameter(embeddings.weight.detach().clone())
    model.config.tie_word_embeddings = False


def fold_readout_into_coordinates(model, readout: BindingReadout, coordinate_ids: Sequence[int], strength: float) -> None:
    """Add to each coordinate bin's output row `strength` × the binding readout's direction for
    the grid column that bin's x falls in (the readout's rows of that column's cells averaged,
    less the mean over columns): at a box's first coordinate, where the readout finds the named
    region more often than the model's own x0 does (model card, fourteenth session), the bins of
    the readout's column then gain its score. The same bins written as y, x1 or y1 gain a term
    the readout was not trained for. Needs untied output embeddings (the input ones stay).
    A probe (`nano/oracle.py fold`): x0 then lands in the readout's column, but not at the
    object's edge, and the answers are no better (model card, fifteenth session)."""
    if model.lm_head.weight is model.get_input_embeddings().weight:
        raise ValueError("folding the readout needs untied output embeddings (SFT's untie_embeddings)")
    side = math.isqrt(readout.cells)
    columns = readout.readout.weight.detach().view(side, side, -1).mean(dim=0)  # (column, hidden)
    columns = columns - columns.mean(dim=0, keepdim=True)
    ids = torch.as_tensor(list(coordinate_ids))
    column_of_bin = torch.arange(len(ids)) * side // len(ids)
    with torch.no_grad():
        model.lm_head.weight[ids] += strength * columns[column_of_bin].to(model.lm_head.weight.dtype)


def train_sft(config: SFTConfig, callbacks: Sequence[TrainerCallback] = (), trainer_factory=RexOmniTrainer,
              collator_factory=SFTCollator) -> Path:
    """Run (or resume) SFT; returns the directory of the final model (`output_dir/final`).
    A probe that changes what the model sees (`nano/oracle.py`) passes its own trainer and
    collator (subclasses of these, or callables building them)."""
    config.check()  # before anything is written
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    config.to_yaml(output_dir / "sft_config.yaml")
    rexomni = load_for_training(config)
    model = rexomni.model.train()
    grounding_layers = config.attention_grounding_layers
    if grounding_layers is None:
        grounding_layers = list(range(1, model.config.text_config.num_hidden_layers))
    if config.attention_grounding > 0:
        # The loss reads attention weights, which only eager attention returns.
        model.set_attn_implementation("eager")
    if config.freeze_vision:
        model.model.visual.requires_grad_(False)
    if config.quantization:
        model = prepare_4bit(model)
    model = apply_lora(model, config.lora)
    resume = latest_checkpoint(output_dir) if config.resume else None
    samples = config.max_steps * config.batch_size * config.gradient_accumulation_steps
    stream = config.data.build()
    dataset = ConversationDataset(stream, length=samples)
    args = TrainingArguments(
        **training_arguments(config),
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": config.min_learning_rate_ratio},
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        dataloader_num_workers=config.dataloader_num_workers,
        remove_unused_columns=False,  # the collator's columns are the model's inputs
        # Non-reentrant: gradients reach the LoRA adapters though the embeddings before them are frozen.
        **{CHECKPOINTING: config.gradient_checkpointing, f"{CHECKPOINTING}_kwargs": {"use_reentrant": False}},
    )
    # A probe needs a square view (one token grid for every image); it reads the live tower.
    probes = [CellProbeCallback(rexomni, config.probe_test_images)] if config.probe_test_images else []
    dense = None
    if config.dense_weight > 0:
        from .vision import DenseAuxiliary  # vision.py reads this module's dataset

        dense = DenseAuxiliary(rexomni, config.dense_data, config.dense_batch_size, config.dense_weight,
                               config.dense_head_weights, num_workers=config.dataloader_num_workers)
    binding = None
    if config.binding_readout > 0:
        if not rexomni.square_side:
            raise InputError("SFTConfig.binding_readout reads a fixed grid of cells: it needs a square view "
                             "(square_side, or a model that has one)")
        cells = grid_side(rexomni.square_side) ** 2  # the cell targets' grid; a mismatch raises in the loss
        binding = BindingReadout(model.config.text_config.hidden_size, cells, config.binding_readout)
    extra = torch.nn.ModuleList([m for m in (dense.heads if dense is not None else None, binding) if m is not None])
    optimizer = None  # the Trainer's own
    if config.vision_learning_rate_ratio != 1 or len(extra):
        optimizer = optimizer_with_vision_ratio(model, rexomni.model.model.visual, config, extra if len(extra) else None)
        # The Trainer zeroes the model's gradients only (`model.zero_grad()`): the auxiliary
        # modules' would pile up over steps, so each optimizer step clears them.
        optimizer.register_step_post_hook(lambda *_: extra.zero_grad(set_to_none=True))
    trainer = trainer_factory(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collator_factory(rexomni),
        processing_class=rexomni.processor,  # saved into every checkpoint (train/common.py)
        coordinate_ids=torch.tensor(rexomni.coordinate_ids),
        sigma=config.coordinate_sigma,
        radius=config.coordinate_radius,
        grounding_weight=config.attention_grounding,
        grounding_layers=grounding_layers,
        spacer_ids=spacer_token_ids(rexomni.tokenizer) if config.attention_grounding > 0 or binding is not None
        else frozenset(),
        grounding_first_only=config.attention_grounding_queries == "first",
        callbacks=list(callbacks) + probes,
        optimizers=(optimizer, None),
        batch_by_task=config.batch_by_task,
        dense=dense,
        binding=binding,
    )
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if config.quantization:  # merged into the full-precision weights, not the 4-bit ones
        model = with_full_precision_base(model, config.model)
    # What the data posed joins what the checkpoint already knew (a source that does not say which
    # tasks it poses leaves the checkpoint saying nothing).
    add_trained_tasks(model.config, getattr(stream, "tasks", None))
    return save_final(model, rexomni.processor, output_dir, trainer.state.log_history, config.lora)
