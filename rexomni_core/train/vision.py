"""Stage 0 of Rex-Omni-nano: vision pre-training.

The released Rex-Omni starts from Qwen2.5-VL, whose vision encoder learnt to see on a vast corpus
before any grounding; nano starts from random weights, and the next-token loss alone erodes what
its tower sees (the model card's cell probe). This stage trains the nano's own vision tower and
merger densely on the data engines' exact ground truth (`data/cell_targets.py`: per image token
the category, colour, shape and character it shows, the box of the object it belongs to, object
centres and person keypoints) through small linear heads on the merger's output, the tokens the
language model reads. The heads are dropped at the end: `output_dir/final` is an ordinary
Rex-Omni checkpoint (the same `Qwen2_5_VLForConditionalGeneration`, language model untouched)
that SFT starts from (`model: runs/.../final`).

A plain PyTorch loop (no Trainer: the step is a small forward, and its overhead would show).
Checkpoints `checkpoint-N/` hold the model, heads, optimizer and scheduler, and `state.json`,
written last into a staging folder that is renamed into place, so a checkpoint is complete or
absent whenever the run is killed; a rerun resumes from the newest one, its data at the very
next index. Every checkpoint runs the cell probe (`nano/cell_probe.py`) on held-out scenes and
logs it, so a collapse shows at once.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.cell_targets import (
    CELL_CATEGORIES,
    CELL_CHARACTERS,
    CELL_COLOURS,
    CELL_SHAPES,
    IGNORE,
    PERSON_KEYPOINTS,
    CellTargets,
)
from ..data.formats.atomic import staged_folder
from ..model import RexOmni
from .common import latest_checkpoint
from .configs import VisionConfig
from .sft import ConversationDataset

IMAGE_ONLY_TEXT = "<|vision_start|><|image_pad|><|vision_end|>"
CLASS_HEADS = {"category": CELL_CATEGORIES, "colour": CELL_COLOURS, "shape": CELL_SHAPES, "char": CELL_CHARACTERS}
HEAD_SIZES = {**{name: len(classes) for name, classes in CLASS_HEADS.items()},
              "box": 4, "centre": 1, "keypoints": len(PERSON_KEYPOINTS)}


class VisionHeads(nn.Module):
    """One linear map per target over the normalised visual tokens (dropped after stage 0).
    Linear on purpose: what a linear head reads, the language model's first layer can read."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, elementwise_affine=False)
        self.heads = nn.ModuleDict({name: nn.Linear(hidden_size, size) for name, size in HEAD_SIZES.items()})

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        normed = self.norm(tokens)
        return {name: head(normed) for name, head in self.heads.items()}


def stack_targets(targets: Sequence[CellTargets]) -> dict[str, torch.Tensor]:
    """The cell targets of a batch, concatenated in token order (image by image, raster order)."""
    return {name: torch.from_numpy(np.concatenate([getattr(t, name) for t in targets]))
            for name in (*HEAD_SIZES, "centre_cell")}


def _balanced_cross_entropy(logits, target, owned, background_weight: float) -> torch.Tensor:
    """Mean cross-entropy over object cells plus `background_weight` × the mean over background
    cells: objects cover a small share of the cells, and would otherwise be drowned out."""
    losses = F.cross_entropy(logits, target.clamp(min=0), reduction="none") * (target != IGNORE)
    counted = target != IGNORE
    total = logits.new_zeros(())
    for part, weight in ((owned & counted, 1.0), (~owned & counted, background_weight)):
        if part.any():
            total = total + weight * losses[part].mean()
    return total


def vision_losses(outputs, targets, head_weights: dict[str, float], background_weight: float,
                  shape_cells: str = "owned") -> dict[str, torch.Tensor]:
    """Each head's loss (weighted by `head_weights`, 1 when not named) and their sum under
    "loss". With `shape_cells == "centre"` an object's shape is asked of its centre cell only, the
    token that must see the whole object to answer (its edge cells look alike across shapes)."""
    owned = targets["category"] > 0
    class_targets = {name: targets[name] for name in CLASS_HEADS}
    if shape_cells == "centre":
        class_targets["shape"] = targets["shape"].masked_fill(owned & ~targets["centre_cell"], IGNORE)
    losses = {name: _balanced_cross_entropy(outputs[name], target, owned, background_weight)
              for name, target in class_targets.items()}
    box_cells = ~torch.isnan(targets["box"][:, 0])
    losses["box"] = (F.l1_loss(outputs["box"][box_cells].sigmoid(), targets["box"][box_cells])
                     if box_cells.any() else outputs["box"].sum() * 0)
    for name in ("centre", "keypoints"):
        target = targets[name].reshape(outputs[name].shape)
        losses[name] = F.binary_cross_entropy_with_logits(outputs[name], target)
    weighted = {name: loss * head_weights.get(name, 1.0) for name, loss in losses.items()}
    weighted["loss"] = sum(weighted.values())
    return weighted


def visual_tokens(rexomni: RexOmni, images) -> torch.Tensor:
    """(cells of all images, hidden): the merger's output for square-view images, through the
    same processor call as prediction."""
    batch = rexomni.encode(images, [IMAGE_ONLY_TEXT] * len(images))
    visual = rexomni.model.model.visual
    return visual(batch["pixel_values"].to(rexomni.device), grid_thw=batch["image_grid_thw"].to(rexomni.device)).pooler_output


class _Collate:
    def __call__(self, items):
        images, targets = zip(*items)
        return list(images), stack_targets(targets)


class DenseAuxiliary:
    """Stage 0's loss kept beside SFT's next-token loss, so that what the visual tokens show is
    not eroded while the language model learns to read them: each call draws the next batch of
    scenes from `data` (a `CellTargetStream`, at the model's square view), and returns `weight` ×
    the cell-target loss of linear heads on the live tower's tokens. The heads train with the
    model (`heads` go into its optimizer), are saved into every checkpoint
    (`save`/`load`, resumed exactly: the scene stream restarts at the index the step implies) and
    never into the final model."""

    FILE = "dense_heads.pt"

    def __init__(self, rexomni: RexOmni, data, batch_size: int, weight: float, head_weights: dict[str, float],
                 background_weight: float = 0.3, num_workers: int = 0):
        if not rexomni.square_side:
            raise ValueError("the dense auxiliary loss needs a square view (one token grid per image)")
        self.rexomni, self.batch_size, self.weight = rexomni, batch_size, weight
        self.head_weights, self.background_weight, self.num_workers = head_weights, background_weight, num_workers
        self.source = data.build(square_side=rexomni.square_side)
        self.heads = VisionHeads(rexomni.model.config.vision_config.out_hidden_size)
        self._batches = None

    def loss(self, call: int) -> torch.Tensor:
        """The weighted loss of scene batch `call` (0, 1, …: one per loss computed in training)."""
        if self._batches is None:  # first call, or first after a resume
            dataset = ConversationDataset(self.source, 1 << 40, start=call * self.batch_size)
            # A generator of its own: making an iterator draws a seed, which must not move the
            # global RNG the Trainer restores on resume.
            self._batches = iter(torch.utils.data.DataLoader(
                dataset, batch_size=self.batch_size, collate_fn=_Collate(), num_workers=self.num_workers,
                generator=torch.Generator().manual_seed(call)))
        images, targets = next(self._batches)
        self.heads.to(self.rexomni.device)
        outputs = self.heads(visual_tokens(self.rexomni, images))
        return self.weight * vision_losses(outputs, targets, self.head_weights, self.background_weight)["loss"]

    def save(self, checkpoint: Path) -> None:
        torch.save(self.heads.state_dict(), Path(checkpoint) / self.FILE)

    def load(self, checkpoint: Path) -> None:
        self.heads.load_state_dict(torch.load(Path(checkpoint) / self.FILE, weights_only=True))
        self._batches = None


def load_start_model(config: VisionConfig) -> RexOmni:
    from ..nano.architecture import build_nano
    from .configs import NANO_INIT

    if config.model == NANO_INIT:
        rexomni = build_nano(seed=config.seed, **config.nano_architecture)
    else:
        rexomni = RexOmni.from_pretrained(config.model, device="cpu", dtype=torch.float32)
    rexomni.square_side = config.square_side
    rexomni.max_pixels = config.square_side**2
    return rexomni


def _schedule(optimizer, config: VisionConfig):
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    return get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, config.warmup_steps, config.max_steps, min_lr_rate=config.min_learning_rate_ratio
    )


def _save_checkpoint(output_dir: Path, step: int, rexomni, heads, optimizer, scheduler, log, keep: int) -> None:
    with staged_folder(output_dir / f"checkpoint-{step}") as staging:
        rexomni.save_pretrained(staging)
        torch.save({"heads": heads.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict()}, staging / "vision_training.pt")
        (staging / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": log}))
    checkpoints = sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    for old in checkpoints[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def train_vision(config: VisionConfig) -> Path:
    """Run (or resume) stage 0; returns `output_dir/final`, a Rex-Omni checkpoint."""
    from ..nano.cell_probe import CellProbe
    from .common import load_weights

    config.check()
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    config.to_yaml(output_dir / "vision_config.yaml")
    torch.manual_seed(config.seed)
    rexomni = load_start_model(config)
    model = rexomni.model
    model.requires_grad_(False)
    visual = model.model.visual.train().requires_grad_(True)
    heads = VisionHeads(model.config.vision_config.out_hidden_size)
    parameters = list(visual.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = _schedule(optimizer, config)
    step, log = 0, []
    resume = latest_checkpoint(output_dir) if config.resume else None
    if resume is not None:
        load_weights(model, resume)
        saved = torch.load(resume / "vision_training.pt", weights_only=True)
        heads.load_state_dict(saved["heads"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = json.loads((resume / "trainer_state.json").read_text())
        step, log = state["global_step"], state["log_history"]
        print(f"resuming from {resume} (step {step})", flush=True)
    probe = None
    if config.probe_test_images:
        probe = CellProbe(config.square_side, config.probe_train_images, config.probe_test_images)
    if probe is not None and step == 0:
        log.append({"step": 0, "probe": probe.measure(rexomni)})
        print(json.dumps(log[-1]), flush=True)

    source = config.data.build(square_side=config.square_side)
    remaining = (config.max_steps - step) * config.batch_size
    loader = torch.utils.data.DataLoader(
        ConversationDataset(source, max(remaining, 0), start=step * config.batch_size), batch_size=config.batch_size,
        collate_fn=_Collate(), num_workers=config.dataloader_num_workers,
    )
    running: dict[str, list[float]] = {}
    started, first_step = time.time(), step
    for images, targets in loader:
        losses = vision_losses(heads(visual_tokens(rexomni, images)), targets, config.head_weights,
                               config.background_weight, config.shape_cells)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        step += 1
        for name, value in losses.items():
            running.setdefault(name, []).append(float(value.detach()))
        if step % config.logging_steps == 0 or step == config.max_steps:
            rate = (step - first_step) * config.batch_size / (time.time() - started)
            entry = {"step": step, "lr": scheduler.get_last_lr()[0], "images_per_s": round(rate, 2)}
            entry |= {name: round(float(np.mean(values)), 4) for name, values in running.items()}
            eta = (config.max_steps - step) * config.batch_size / max(rate, 1e-9)
            print(json.dumps(entry) + f"  eta {eta / 60:.1f} min", flush=True)
            log.append(entry)
            running = {}
        if step % config.save_steps == 0 or step == config.max_steps:
            if probe is not None:
                visual.eval()
                log.append({"step": step, "probe": probe.measure(rexomni)})
                visual.train()
                print(json.dumps(log[-1]), flush=True)
            _save_checkpoint(output_dir, step, rexomni, heads, optimizer, scheduler, log, config.save_total_limit)
    model.eval()
    with staged_folder(output_dir / "final") as staging:
        rexomni.save_pretrained(staging)
        (staging / "vision_log.json").write_text(json.dumps(log, indent=1))
    return output_dir / "final"
