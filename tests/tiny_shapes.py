"""A small shapes world for model and trainer tests, and the bootstrap stage of nano training
(the project's data engines live in rexomni_core.data; this stays a test helper).

Shapes of the nano world's colours and kinds on a dark background, unrotated; each item is a
conversation with the attributes the trainer reads (image, width, height, task, prompt, answer,
regions, phrases). Detection asks for the present categories plus absent ones (answered None).
Item `i` depends only on (seed, i).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

from PIL import Image, ImageDraw

from rexomni_core.grammar import serialize
from rexomni_core.nano.vocabulary import OBJECT_COLOURS, SHAPE_CATEGORIES
from rexomni_core.regions import Box, Point
from rexomni_core.tasks import build_prompt


@dataclass
class TinyConversation:
    image: Image.Image
    width: int
    height: int
    task: str
    prompt: str
    answer: str
    regions: list
    phrases: list


def _outline(shape: str, box: list[int]) -> list[tuple[float, float]] | None:
    """Polygon vertices of a shape inscribed in `box` (None: draw an ellipse)."""
    if shape == "circle":
        return None
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    corners = {"square": (4, 45), "triangle": (3, -90), "hexagon": (6, 0), "star": (10, -90)}
    n, start = corners[shape]
    radius = [r if shape != "star" or i % 2 == 0 else r * 0.45 for i in range(n)]
    angles = [math.radians(start + 360 * i / n) for i in range(n)]
    if shape == "square":
        radius = [r * math.sqrt(2)] * n
    return [(cx + q * math.cos(a), cy + q * math.sin(a)) for q, a in zip(radius, angles)]


class TinyShapes:
    """Indexable, endless: `TinyShapes(seed)[i]` is one conversation."""

    def __init__(
        self,
        seed: int = 0,
        tasks=("detection", "pointing"),
        max_objects: int = 2,
        sizes: tuple[int, int] = (112, 112),
        categories: list[str] | None = None,
        max_absent: int = 2,
        delay: float = 0.0,
    ):
        """`delay`: seconds each item takes, so a resume test can kill a run between two
        checkpoints before it ends."""
        self.seed, self.tasks, self.max_objects = seed, tuple(tasks), max_objects
        self.sizes, self.categories = tuple(sizes), categories or list(SHAPE_CATEGORIES)
        self.max_absent, self.delay = max_absent, delay

    def __getitem__(self, index: int) -> TinyConversation:
        time.sleep(self.delay)
        rng = random.Random(self.seed * 1_000_003 + index)
        width, height = rng.randint(*self.sizes), rng.randint(*self.sizes)
        image = Image.new("RGB", (width, height), (20, 20, 20))
        objects = []  # (tight box, category)
        for _ in range(rng.randint(1, self.max_objects)):
            side = rng.randint(int(0.2 * min(width, height)), int(0.4 * min(width, height)))
            x0, y0 = rng.randint(0, width - side - 1), rng.randint(0, height - side - 1)
            box = [x0, y0, x0 + side, y0 + side]
            if any(not (box[2] < b[0] or b[2] < box[0] or box[3] < b[1] or b[3] < box[1]) for b, _ in objects):
                continue
            category = rng.choice(self.categories)
            colour, shape = category.split()
            mask = Image.new("L", (width, height))
            outline = _outline(shape, box)
            draw = ImageDraw.Draw(mask)
            draw.ellipse(box, fill=255) if outline is None else draw.polygon(outline, fill=255)
            image.paste(OBJECT_COLOURS[colour], mask=mask)
            objects.append((list(mask.getbbox()), category))
        task = self.tasks[index % len(self.tasks)]
        present = sorted({c for _, c in objects})
        if task == "visual_prompting":
            category = rng.choice(present)
            same = [b for b, c in objects if c == category]
            prompt = build_prompt(task, visual_prompt_boxes=same[:1], width=width, height=height)
            regions, phrases = [Box("object_1", b) for b in same], ["object_1"]
        else:
            absent = [c for c in self.categories if c not in present]
            phrases = present + rng.sample(absent, min(len(absent), rng.randint(0, self.max_absent)))
            rng.shuffle(phrases)
            prompt = build_prompt(task, phrases)
            if task == "pointing":
                regions = [Point(c, [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2]) for b, c in objects]
            else:
                regions = [Box(c, b) for b, c in objects]
        answer = serialize(regions, width, height, task, phrases)
        return TinyConversation(image, width, height, task, prompt, answer, regions, phrases)
