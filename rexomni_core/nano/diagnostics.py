"""Where does a Rex-Omni-nano checkpoint fail to localise? Four measurements on held-out
one-object scenes (the shapes world's "few" split, squashed to a square so one image-token grid
serves all; bins are normalised, so answers do not change):

1. teacher-forced coordinate error (`metrics.coordinate_error`): is anything localised at all?
2. linear probes on the image tokens' hidden states, per language-model layer: do they know their
   own row and column (absolute position, which M-RoPE only gives relatively), and whether they
   cover the object (content)?
3. attention of the first coordinate query on the object's cells, per layer and head, against
   the share of cells the object covers: does the answer look at the object?
4. the vision tower's output on a white-on-black test card: feature norms, and the cosine between
   an object cell and a background cell (content contrast at the language model's input).

    python -m rexomni_core.nano.diagnostics --model DIR [--side 112] [--task pointing|detection]

The model card's "Why v1 does not localise" section was measured with this module; the card's
command, `python scripts/nano_diagnostics.py`, launches it.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from PIL import Image

from ..coords import quantize_xy
from ..data.samplers import Conversation, annotation_point
from ..data.worlds.shapes import generate_shapes
from ..grammar import serialize
from ..model import RexOmni
from ..regions import Box, Point
from ..tasks import build_prompt
from ..train.sft import SFTCollator, region_cells
from .heldout import HELDOUT_SEED
from .metrics import coordinate_error


def single_object_conversations(count: int, side: int, task: str, seed: int = HELDOUT_SEED) -> list[Conversation]:
    """`count` one-object scenes of the "few" split, asked for their one (present) category."""
    conversations, scene_seed = [], seed * 100_000
    while len(conversations) < count:
        scene = generate_shapes(scene_seed, "few")
        scene_seed += 1
        if len(scene.annotations) != 1:
            continue
        annotation = scene.annotations[0]
        box = [float(v) for v in annotation.box]
        # The point the pointing sampler trains on (inside the mask), not the box centre.
        region = Box(annotation.category, box) if task == "detection" else Point(
            annotation.category, annotation_point(annotation)
        )
        answer = serialize([region], scene.width, scene.height, task=task, phrases=[annotation.category])
        image = scene.image.convert("RGB").resize((side, side))
        conversations.append(Conversation(
            image, scene.width, scene.height, task, build_prompt(task, [annotation.category]), answer,
            [Box(annotation.category, box)], [annotation.category],
        ))
    return conversations


def object_cells(conversation: Conversation, rows: int, cols: int) -> np.ndarray:
    """(rows*cols,) bool: image-token cells that the object's box overlaps, the cells attention
    grounding pulls the model onto."""
    return box_cells(conversation.regions[0].coords, conversation.width, conversation.height, rows, cols)


def box_cells(box, width: int, height: int, rows: int, cols: int) -> np.ndarray:
    """(rows*cols,) bool: the image-token cells a pixel box overlaps, as attention grounding counts them."""
    cells = np.zeros(rows * cols, dtype=bool)
    cells[region_cells(quantize_xy(list(box), width, height), rows, cols)] = True
    return cells


def image_grid(model: RexOmni, batch: dict, row: int) -> tuple[torch.Tensor, int, int]:
    """Positions of row `row`'s image tokens in the sequence, and their grid (rows, columns)."""
    merge = model.model.config.vision_config.spatial_merge_size
    _, grid_h, grid_w = (int(v) for v in batch["image_grid_thw"][row])
    where = (batch["input_ids"][row] == model.model.config.image_token_id).nonzero()[:, 0]
    return where, grid_h // merge, grid_w // merge


def ridge(train_x, train_y, test_x, strength: float = 1.0):
    add_bias = lambda x: np.hstack([x, np.ones((len(x), 1))])  # noqa: E731
    a = add_bias(train_x)
    weights = np.linalg.solve(a.T @ a + strength * np.eye(a.shape[1]), a.T @ train_y)
    return add_bias(test_x) @ weights


def image_token_probes(model: RexOmni, conversations: list[Conversation]) -> list[dict]:
    """Per layer: ridge probes (trained on 3/4 of the images, tested on the rest) for each image
    token's row, column and 'covers the object', with the chance levels."""
    per_layer, rows_cols, covers = {}, [], []
    for start in range(0, len(conversations), 16):
        chunk = conversations[start:start + 16]
        batch = SFTCollator(model)(chunk)
        batch.pop("labels")
        with torch.no_grad():
            states = model.model(**batch, output_hidden_states=True).hidden_states
        for row, conversation in enumerate(chunk):
            where, grid_h, grid_w = image_grid(model, batch, row)
            for layer, state in enumerate(states):
                per_layer.setdefault(layer, []).append(state[row, where].float().numpy())
            r, c = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")
            rows_cols.append(np.stack([r.reshape(-1), c.reshape(-1)], 1))
            covers.append(object_cells(conversation, grid_h, grid_w))
    positions, covers = np.concatenate(rows_cols).astype(float), np.concatenate(covers).astype(float)
    split = sum(len(x) for x in per_layer[0][: 3 * len(conversations) // 4])
    results = []
    for layer, chunks in per_layer.items():
        x = np.concatenate(chunks)
        position = ridge(x[:split], positions[:split], x[split:])
        cover = ridge(x[:split], covers[:split], x[split:])
        truth = positions[split:]
        results.append({
            "layer": layer,
            "row_mae": float(np.abs(position[:, 0] - truth[:, 0]).mean()),
            "col_mae": float(np.abs(position[:, 1] - truth[:, 1]).mean()),
            "position_chance_mae": float(np.abs(truth - positions[:split].mean(0)).mean()),
            "object_cell_accuracy": float(((cover > 0.5) == (covers[split:] > 0.5)).mean()),
            "object_cell_majority": float(max(covers[split:].mean(), 1 - covers[split:].mean())),
        })
    return results


def object_attention(model: RexOmni, conversations: list[Conversation]) -> dict:
    """Share of the first coordinate query's attention over image tokens that falls on the
    object's cells, per layer and head, and the share of cells the object covers."""
    coordinate_ids = torch.tensor(model.coordinate_ids)
    batch = SFTCollator(model)(conversations)
    labels = batch.pop("labels")[:, 1:]
    used = model.model.config._attn_implementation
    model.model.set_attn_implementation("eager")  # sdpa returns no attention weights
    try:
        with torch.no_grad():
            attentions = model.model(**batch, output_attentions=True).attentions
    finally:
        model.model.set_attn_implementation(used)
    on_object, area = [], []
    for row, conversation in enumerate(conversations):
        query = int(torch.isin(labels[row], coordinate_ids).nonzero()[0, 0])
        where, grid_h, grid_w = image_grid(model, batch, row)
        cells = torch.from_numpy(object_cells(conversation, grid_h, grid_w))
        weights = torch.stack([a[row, :, query, where] for a in attentions])  # layers × heads × cells
        on_object.append((weights[..., cells].sum(-1) / weights.sum(-1).clamp(min=1e-9)).numpy())
        area.append(float(cells.float().mean()))
    return {"object_area_share": float(np.mean(area)),
            "attention_on_object": np.mean(on_object, 0).round(3).tolist()}


def vision_contrast(model: RexOmni, side: int) -> dict:
    """White cells on black: feature norms and object/background cosine at the vision output."""
    vision = model.model.config.vision_config
    cell = vision.patch_size * vision.spatial_merge_size  # the pixels of one image token
    card = Image.new("RGB", (side, side))
    card.paste((255, 255, 255), (0, 0, cell, cell))
    batch = model.encode([card], ["<|vision_start|><|image_pad|><|vision_end|>"])
    with torch.no_grad():
        output = model.model.model.get_image_features(batch["pixel_values"], batch["image_grid_thw"])
    features = output.pooler_output[0].float()
    return {"object_norm": float(features[0].norm()), "background_norm": float(features[1:].norm(dim=-1).mean()),
            "object_background_cosine": float(torch.cosine_similarity(features[0], features[-1], dim=0))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--side", type=int, default=112, help="square input side (multiple of 28)")
    parser.add_argument("--task", choices=("pointing", "detection"), default="pointing")
    parser.add_argument("--count", type=int, default=64, help="held-out one-object scenes")
    args = parser.parse_args()
    model = RexOmni.from_pretrained(args.model, device="cpu")
    conversations = single_object_conversations(args.count, args.side, args.task)
    report = {
        "model": args.model, "side": args.side, "task": args.task,
        "coordinate_error": coordinate_error(model, conversations),
        "image_token_probes": image_token_probes(model, conversations),
        "object_attention": object_attention(model, conversations[:16]),
        "vision_contrast": vision_contrast(model, args.side),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
