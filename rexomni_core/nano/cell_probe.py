"""The cell probe: how much of what an image token shows can a linear map read off it?

On frozen visual tokens (the merger's output, what the language model reads), ridge regressions
onto one-hot targets are fit on the object cells of `train_images` shapes scenes (their own seed)
and tested on the object cells of the held-out normal-split scenes (`HELDOUT_SEED`, the images of
the held-out test set): the share of test object cells whose colour, shape and full category
(colour + shape, of the 30) the argmax names, and the shape's share on objects' centre cells
alone (`shape_centre`: the token that can see the whole object). Object cells are those `data/cell_targets.py`
gives to an object. `row` and `column`: the share of all test cells whose own row and column a
ridge over the same tokens names: where a cell is, in the content the tower gives it (the tower
has rotary positions only; the decoder's first layer adds the rest from the prompt around the
image, which `nano/diagnostics.py`'s per-layer probes show). The model's own square view is used
unless another side is asked for.

    python -m rexomni_core.nano.cell_probe --model DIR [--side 224]   # None: the shipped nano

A freshly initialised tower already gives most colours (the colour of a cell is its pixels);
shape needs context from other cells, which is what vision pre-training is for.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from ..data.cell_targets import CELL_CATEGORIES, CELL_COLOURS, CELL_SHAPES, CellTargetStream, SceneEntry, grid_side
from ..model import RexOmni
from ..train.vision import visual_tokens
from .diagnostics import ridge
from .heldout import HELDOUT_SEED

PROBE_SEED = 31337  # the probe's training scenes: a seed no training stream uses
PROBED = {"colour": len(CELL_COLOURS), "shape": len(CELL_SHAPES), "category": len(CELL_CATEGORIES)}


class CellProbe:
    """Scenes and targets generated once; `measure(model)` probes a model's tokens on them."""

    def __init__(self, square_side: int, train_images: int = 200, test_images: int = 100, batch_size: int = 32):
        self.square_side, self.batch_size = square_side, batch_size
        shapes = (SceneEntry("shapes", "normal"),)
        self.train = [CellTargetStream(shapes, PROBE_SEED, square_side)[i] for i in range(train_images)]
        self.test = [CellTargetStream(shapes, HELDOUT_SEED, square_side)[i] for i in range(test_images)]

    def _features(self, rexomni: RexOmni, items) -> np.ndarray:
        chunks = []
        with torch.no_grad():
            for start in range(0, len(items), self.batch_size):
                images = [image for image, _ in items[start:start + self.batch_size]]
                chunks.append(visual_tokens(rexomni, images).float().cpu().numpy())
        return np.concatenate(chunks)

    def measure(self, rexomni: RexOmni) -> dict:
        """{colour, shape, category, shape_centre}: held-out object-cell accuracy; {row, column}:
        held-out accuracy over all cells; the cell counts."""
        if rexomni.square_side != self.square_side:
            raise ValueError(f"the probe was built for a {self.square_side}² view, the model reads "
                             f"{rexomni.square_side}²")
        results = {}
        sets = {}
        for name, items in (("train", self.train), ("test", self.test)):
            targets = [t for _, t in items]
            owned = np.concatenate([t.owned for t in targets])
            centre = np.concatenate([t.centre_cell for t in targets])[owned]
            sets[name] = (self._features(rexomni, items), owned,
                          {key: np.concatenate([getattr(t, key) for t in targets])[owned] for key in PROBED}, centre)
        (all_train_x, train_owned, train_y, _), (all_test_x, test_owned, test_y, test_centre) = sets["train"], sets["test"]
        # Ridge strength comparable across models whose norms differ (the object cells' spread).
        scale = all_train_x[train_owned].std() + 1e-9
        train_x, test_x = all_train_x[train_owned] / scale, all_test_x[test_owned] / scale
        for key, classes in PROBED.items():
            scores = ridge(train_x, np.eye(classes)[train_y[key]], test_x)
            right = scores.argmax(1) == test_y[key]
            results[key] = round(float(right.mean()), 3)
            if key == "shape":  # the centre cell: the token that can see the whole object
                results["shape_centre"] = round(float(right[test_centre].mean()), 3)
        side = grid_side(self.square_side)
        for key, of_cell in (("row", lambda cell: cell // side), ("column", lambda cell: cell % side)):
            train_y_pos, test_y_pos = (of_cell(np.arange(len(x)) % side**2) for x in (all_train_x, all_test_x))
            scores = ridge(all_train_x / scale, np.eye(side)[train_y_pos], all_test_x / scale)
            results[key] = round(float((scores.argmax(1) == test_y_pos).mean()), 3)
        results |= {"train_cells": len(train_x), "test_cells": len(test_x), "side": self.square_side}
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a checkpoint directory (default: the shipped nano)")
    parser.add_argument("--side", type=int, default=None, help="square view side (default: the model's own)")
    parser.add_argument("--train-images", type=int, default=200)
    parser.add_argument("--test-images", type=int, default=200)
    args = parser.parse_args()
    rexomni = RexOmni.from_pretrained(args.model, device="cpu", dtype=torch.float32)
    if args.side:
        rexomni.square_side, rexomni.max_pixels = args.side, args.side**2
    probe = CellProbe(rexomni.square_side, args.train_images, args.test_images)
    print(json.dumps({"model": args.model or "shipped nano"} | probe.measure(rexomni)))


if __name__ == "__main__":
    main()
