"""Which part of localisation does a from-scratch Rex-Omni-nano fail to learn? Short SFT runs on
one-object pointing (held-out teacher-forced coordinate error every `--eval-every` steps), where
the vision tower can be replaced by hand-made features that already contain part of the answer:

    --features real      the nano vision tower (what training really sees)
    --features colour    a fixed linear map of each patch's mean colour (clean, unlearned content)
    --position-code S    add a fixed random code of each cell's index (absolute position)
    --object-marker S    add a fixed direction on the cell holding the target point ("look here")
    --answer-code S      add the sinusoidal code of the true (x, y) bins on every cell ("global")
                         or, with --answer-code-local, on the target cell only
    --grounding W        the SFT attention-grounding loss (train/sft.py) with weight W

    python -m rexomni_core.nano.ablations --features colour --answer-code 16 --steps 300

The model card's "What unblocked localisation" table was measured with this module (112 × 112
images: a 4 × 4 grid of image tokens, ~0.3 s per step on 2 cores); the card's command,
`python scripts/nano_ablations.py`, launches it.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ..coords import NUM_BINS
from ..tokenizer import sinusoidal_codes
from ..train.sft import (
    SFTCollator,
    attention_grounding_loss,
    coordinate_bin_table,
    coordinate_loss,
    grounding_targets,
)
from .architecture import build_nano
from .diagnostics import single_object_conversations
from .metrics import coordinate_error


def target_cells(labels: torch.Tensor, bin_of: torch.Tensor, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: the (x, y) bins of the answer's point, and the index of the cell holding it."""
    bins = torch.stack([bin_of[row[(row >= 0) & (bin_of[row.clamp(min=0)] >= 0)]][:2] for row in labels])
    cells = (bins[:, 1] * side // NUM_BINS).clamp(max=side - 1) * side + (bins[:, 0] * side // NUM_BINS).clamp(max=side - 1)
    return bins, cells


def replace_features(model, args, state: dict) -> None:
    """Swap the vision tower's output for hand-made features (see the module docstring)."""
    hidden = model.config.text_config.hidden_size
    generator = torch.Generator().manual_seed(0)
    colour_map = torch.randn(12, hidden, generator=generator) / 12**0.5
    position_codes = torch.randn(1024, hidden, generator=generator)
    marker = torch.randn(hidden, generator=generator)
    codes = sinusoidal_codes(NUM_BINS, hidden // 2)

    def features(pixel_values, image_grid_thw=None, **_):
        images = image_grid_thw.shape[0]
        merged = pixel_values.view(pixel_values.shape[0], 3, -1).mean(-1).view(-1, 12)  # 2x2 patches' colours
        x = (merged @ colour_map).view(images, -1, hidden)
        cells = x.shape[1]
        x = x + args.position_code * position_codes[:cells]
        at_target = torch.nn.functional.one_hot(state["cells"], cells).float()[..., None]
        x = x + args.object_marker * at_target * marker
        answer = torch.cat([codes[state["bins"][:, 0]], codes[state["bins"][:, 1]]], dim=-1)[:, None, :] * 16
        x = x + args.answer_code * (at_target if args.answer_code_local else 1.0) * answer
        flat = x.reshape(-1, hidden)
        return BaseModelOutputWithPooling(last_hidden_state=flat, pooler_output=torch.split(flat, [cells] * images))

    model.model.get_image_features = features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", choices=["real", "colour"], default="real")
    parser.add_argument("--position-code", type=float, default=0.0)
    parser.add_argument("--object-marker", type=float, default=0.0)
    parser.add_argument("--answer-code", type=float, default=0.0)
    parser.add_argument("--answer-code-local", action="store_true")
    parser.add_argument("--grounding", type=float, default=0.0)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--side", type=int, default=112)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rexomni = build_nano(seed=args.seed)
    model = rexomni.model
    state: dict = {}
    if args.features == "colour":
        replace_features(model, args, state)
    if args.grounding:
        model.set_attn_implementation("eager")
    collate = SFTCollator(rexomni)
    ids = torch.tensor(rexomni.coordinate_ids)
    bin_of = coordinate_bin_table(ids, len(rexomni.tokenizer))
    side = args.side // 28
    training = single_object_conversations(args.steps * args.batch_size, args.side, "pointing", seed=11)
    heldout = single_object_conversations(48, args.side, "pointing")
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 20))
    start, losses = time.time(), []
    for step in range(1, args.steps + 1):
        batch = collate(training[(step - 1) * args.batch_size : step * args.batch_size])
        labels = batch.pop("labels")
        state["bins"], state["cells"] = target_cells(labels, bin_of, side)
        outputs = model.train()(**batch, output_attentions=bool(args.grounding))
        loss = coordinate_loss(outputs.logits, labels, ids)
        if args.grounding:
            targets = grounding_targets(batch["input_ids"], labels, batch["image_grid_thw"],
                                        model.config.image_token_id, bin_of, set(), 2)
            layers = range(1, model.config.text_config.num_hidden_layers)
            loss = loss + args.grounding * attention_grounding_loss(outputs.attentions, targets, layers)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        warmup.step()
        losses.append(loss.item())
        if step % args.eval_every == 0:
            held = collate(heldout)
            state["bins"], state["cells"] = target_cells(held["labels"], bin_of, side)
            error = coordinate_error(rexomni, heldout)
            print(json.dumps({"step": step, "loss": round(float(np.mean(losses[-50:])), 3),
                              "seconds": round(time.time() - start), **{k: round(v, 2) for k, v in error.items()}}),
                  flush=True)


if __name__ == "__main__":
    main()
