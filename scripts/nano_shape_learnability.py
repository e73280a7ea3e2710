"""Can a small from-scratch CNN learn stage 0's centre-cell shape target from the same 224² views?
(A diagnostic for the nano v3 model card; the CNN is not a Rex-Omni part and is not saved.)

Scenes are drawn once (shapes normal 3 : few 1 : dense 1, stage 0's seed 51) and reused over
epochs with horizontal flips; the test is the probe's `shape_centre` on 100 held-out normal
scenes (seed 90210): the shape named at each object's centre cell. It bounds how learnable the
target is, apart from the ViT tower.

    python scripts/nano_shape_learnability.py MINUTES TRAIN_SCENES   # the card: 20 3000
"""

import json
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rexomni_core.data.cell_targets import CellTargetStream, SceneEntry
from rexomni_core.nano.heldout import HELDOUT_SEED

MIXTURE = (SceneEntry("shapes", "normal", 3.0), SceneEntry("shapes", "few", 1.0), SceneEntry("shapes", "dense", 1.0))


def drawn(stream: CellTargetStream, count: int):
    """(uint8 images, shape targets, centre-cell masks), the grids as (count, 8, 8)."""
    items = [stream[i] for i in range(count)]
    images = torch.from_numpy(np.stack([np.asarray(image, dtype=np.uint8) for image, _ in items]))
    shapes = torch.from_numpy(np.stack([t.shape for _, t in items])).reshape(count, 8, 8)
    centres = torch.from_numpy(np.stack([t.centre_cell for _, t in items])).reshape(count, 8, 8)
    return images.permute(0, 3, 1, 2).contiguous(), shapes, centres


def block(channels_in: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels_in, channels_out, 3, padding=1), nn.BatchNorm2d(channels_out),
                         nn.ReLU(), nn.MaxPool2d(2))


def main() -> None:
    minutes, count = float(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(1)
    torch.manual_seed(0)
    started = time.time()
    train = drawn(CellTargetStream(MIXTURE, 51, 224), count)
    test = drawn(CellTargetStream((SceneEntry("shapes", "normal"),), HELDOUT_SEED, 224), 100)
    print(json.dumps({"drawn_s": round(time.time() - started), "train": count}), flush=True)
    # 224 -> 112 -> 56 -> 28 px maps, pooled onto the 8 x 8 grid of 28 px cells the tokens have.
    net = nn.Sequential(block(3, 32), block(32, 64), block(64, 96), nn.Conv2d(96, 128, 3, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(8), nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(), nn.Conv2d(128, 6, 1))
    optimizer = torch.optim.AdamW(net.parameters(), 1e-3)

    def accuracy() -> float:
        net.eval()
        with torch.no_grad():
            predicted = net(test[0].float() / 255).argmax(1)
        net.train()
        return round((predicted[test[2]] == test[1][test[2]]).float().mean().item(), 3)

    started, step = time.time(), 0
    while time.time() - started < minutes * 60:
        pick = torch.randint(0, count, (16,))
        images, shapes, centres = train[0][pick].float() / 255, train[1][pick], train[2][pick]
        if torch.rand(()) < 0.5:
            images, shapes, centres = images.flip(3), shapes.flip(2), centres.flip(2)
        loss = F.cross_entropy(net(images), shapes.masked_fill(~centres, -100), ignore_index=-100)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if step % 100 == 0:
            seconds = round(time.time() - started)
            print(json.dumps({"step": step, "s": seconds, "loss": round(loss.item(), 3), "shape_centre": accuracy()}),
                  flush=True)
    print(json.dumps({"final_step": step, "shape_centre": accuracy()}), flush=True)


if __name__ == "__main__":
    main()
