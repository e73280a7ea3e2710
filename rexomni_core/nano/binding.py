"""Does a nano answer look at the object its phrase names before it writes the first coordinate?

The error anatomy (`nano/error_anatomy.py`) says most of nano's boxes that land on an object name
another object's phrase: a binding error. This measures it inside the model. On held-out normal
scenes asked for the phrases they hold (teacher forced), the position that predicts a box's first
coordinate has only the phrase to find the box by (later ones read it off the coordinates already
written). For that position, per language-model layer and head: the share of its attention over
image tokens on the cells of the box's own object (target) and on the cells of objects of other
phrases not shared with the target (distractors), the share of cells each covers, and how often
the target's cells get more attention per cell than the distractors' ("target denser": 0.5 is a
head that does not tell them apart).

    python -m rexomni_core.nano.binding --model DIR [--count 96]
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch

from ..annotations import Scene
from ..coords import quantize_xy
from ..data.samplers import Conversation, sample_detection
from ..data.worlds.shapes import generate_shapes
from ..model import RexOmni
from ..train.sft import SFTCollator, coordinate_runs
from .diagnostics import box_cells, image_grid
from .heldout import HELDOUT_SEED

MEASURES = ("target share", "distractor share", "target area", "distractor area", "target denser")


def binding_scenes(count: int, side: int, seed: int = HELDOUT_SEED) -> list[tuple[Scene, Conversation]]:
    """`count` held-out normal-split scenes, each with a detection conversation asking only
    present phrases, the image resized to the model's view."""
    pairs = []
    for index in range(count):
        scene = generate_shapes(seed * 100_000 + index, "normal")
        conversation = sample_detection(scene, random.Random(index), absent_phrases=False)
        conversation.image = scene.image.convert("RGB").resize((side, side))
        pairs.append((scene, conversation))
    return pairs


def binding_conversations(count: int, side: int, seed: int = HELDOUT_SEED) -> list[tuple[Conversation, list]]:
    """`binding_scenes` as (conversation, its scene's annotations, distractors included)."""
    return [(conversation, scene.annotations) for scene, conversation in binding_scenes(count, side, seed)]


def box_attention(weights: torch.Tensor, target: np.ndarray, distractors: np.ndarray) -> np.ndarray:
    """(layers, heads, 5) `MEASURES` for one query's attention `weights` (layers, heads, cells)
    over the image cells, given boolean masks of the target's and the distractors' cells."""
    weights = weights / weights.sum(-1, keepdim=True).clamp(min=1e-9)
    on_target = weights[..., torch.from_numpy(target)].sum(-1)
    on_distractors = weights[..., torch.from_numpy(distractors)].sum(-1)
    denser = (on_target / target.sum()) > (on_distractors / distractors.sum())
    areas = [torch.full_like(on_target, float(mask.mean())) for mask in (target, distractors)]
    return torch.stack([on_target, on_distractors, *areas, denser.float()], -1).numpy()


def binding_attention(model: RexOmni, pairs: list[tuple[Conversation, list]], batch_size: int = 8,
                      context: Callable[[], AbstractContextManager] | None = None) -> dict:
    """`MEASURES` per layer and head, averaged over every box with distractors in `pairs`.
    `context()`, when given, is entered around each batch's forward (`nano/oracle.py` changes the
    visual tokens in it)."""
    coordinate_ids = set(model.coordinate_ids)
    bin_of = {token: index for index, token in enumerate(model.coordinate_ids)}
    used = model.model.config._attn_implementation
    model.model.set_attn_implementation("eager")  # sdpa returns no attention weights
    per_box = []
    try:
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start:start + batch_size]
            batch = SFTCollator(model)([conversation for conversation, _ in chunk])
            labels = batch.pop("labels")
            with torch.no_grad(), (context or nullcontext)():
                attentions = torch.stack(model.model(**batch, output_attentions=True).attentions, 1)
            for row, (conversation, annotations) in enumerate(chunk):
                where, rows, cols = image_grid(model, batch, row)
                ids = batch["input_ids"][row].tolist()
                w, h = conversation.width, conversation.height
                for run in coordinate_runs(ids, labels[row].tolist(), coordinate_ids.__contains__):
                    if len(run) != 4:
                        continue
                    bins = [bin_of[ids[p]] for p in run]
                    named = [a for a in annotations if quantize_xy(list(a.box), w, h) == bins]
                    if not named:
                        continue
                    target = box_cells(named[0].box, w, h, rows, cols)
                    distractors = np.zeros_like(target)
                    for other in annotations:
                        if other.category != named[0].category:
                            distractors |= box_cells(other.box, w, h, rows, cols)
                    distractors &= ~target
                    if distractors.any():
                        weights = attentions[row, :, :, run[0] - 1][:, :, where]  # the position before predicts
                        per_box.append(box_attention(weights, target, distractors))
    finally:
        model.model.set_attn_implementation(used)
    if not per_box:
        return {"boxes": 0}
    mean = np.stack(per_box).mean(0).round(3)
    return {"boxes": len(per_box), **{measure: mean[..., k].tolist() for k, measure in enumerate(MEASURES)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a checkpoint directory (default: the shipped nano)")
    parser.add_argument("--count", type=int, default=96, help="held-out normal-split scenes")
    args = parser.parse_args()
    model = RexOmni.from_pretrained(args.model, device="cpu")
    pairs = binding_conversations(args.count, model.square_side or 112)
    print(json.dumps({"model": args.model, **binding_attention(model, pairs)}))


if __name__ == "__main__":
    main()
