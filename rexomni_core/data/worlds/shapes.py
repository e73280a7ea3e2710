"""The shapes world: coloured circles, squares, triangles, stars and hexagons (NANO_WORLD.md).

Objects never touch (their drawn pixels stay at least one pixel apart), so the mask of each is
exactly the pixels drawn for it and its tight box is exact; boxes may still overlap up to IoU 0.3
(a circle in the empty corner of a triangle's box).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ...annotations import Annotation, Mask, Scene
from ...errors import InputError
from ...geometry import box_iou_matrix
from ...nano.vocabulary import NOVEL_COLOURS, NOVEL_SHAPE_CATEGORIES, OBJECT_COLOURS, SHAPE_CATEGORIES
from .common import (
    MIN_BACKGROUND_DISTANCE,
    alpha_to_mask,
    background,
    dilate,
    image_size,
    jitter_colour,
    maybe_blur,
    supersampled_alpha,
)

MAX_BOX_IOU = 0.3
# Every colour a split may draw, by name.
PALETTE: dict[str, tuple[int, int, int]] = OBJECT_COLOURS | NOVEL_COLOURS


@dataclass(frozen=True)
class ShapesConfig:
    """Ranges of one split. Sizes are the tight box's longer side over the image's shorter side."""

    min_count: int
    max_count: int
    min_size: float
    max_size: float
    # Probability that a new object repeats a category already in the scene, so that detection
    # and visual prompting see several instances of one category.
    repeat_category: float = 0.35
    # The categories drawn, "<colour> <shape>"; drawn by index, so their number fixes the stream.
    categories: tuple[str, ...] = SHAPE_CATEGORIES

    @property
    def colours(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(category.split(" ")[0] for category in self.categories))


# The order fixes each split's random stream: append new splits, never reorder.
SPLITS: dict[str, ShapesConfig] = {
    "normal": ShapesConfig(min_count=1, max_count=8, min_size=0.12, max_size=0.45),
    "dense": ShapesConfig(min_count=10, max_count=40, min_size=0.06, max_size=0.15),
    # One or two larger objects: the first stage of the nano curriculum (localisation first).
    "few": ShapesConfig(min_count=1, max_count=2, min_size=0.15, max_size=0.45),
    # Exactly one: where a from-scratch nano first learns to localise (its model card).
    "single": ShapesConfig(min_count=1, max_count=1, min_size=0.15, max_size=0.45),
    # The normal split in two colours the shipped nano never saw (fine-tuning demonstrations);
    # never in its training stream.
    "novel": ShapesConfig(min_count=1, max_count=8, min_size=0.12, max_size=0.45, categories=NOVEL_SHAPE_CATEGORIES),
}


def split_config(split: str) -> ShapesConfig:
    try:
        return SPLITS[split]
    except KeyError:
        raise InputError(f"unknown shapes split {split!r}; known: {', '.join(SPLITS)}") from None


def _outline(shape: str, rng: np.random.Generator) -> np.ndarray | None:
    """Unit outline vertices (k, 2) centred on 0, rotated; None for a circle."""
    if shape == "circle":
        return None
    if shape == "square":
        angles = np.deg2rad(45 + 90 * np.arange(4) + rng.uniform(0, 45))
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    rotation = rng.uniform(0, 2 * np.pi)
    if shape == "star":
        inner = rng.uniform(0.4, 0.5)
        radii = np.where(np.arange(10) % 2 == 0, 1.0, inner)
        angles = rotation + np.pi * np.arange(10) / 5
    else:
        corners = 3 if shape == "triangle" else 6
        radii = np.ones(corners)
        angles = rotation + 2 * np.pi * np.arange(corners) / corners
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def rasterise_shape(shape: str, longer_side: float, rng: np.random.Generator, supersample: int) -> np.ndarray:
    """A shape whose outline's bounding box has `longer_side` pixels → uint8 alpha crop."""
    outline = _outline(shape, rng)
    if outline is None:
        span = np.array([2.0, 2.0])
        outline_min = np.array([-1.0, -1.0])
    else:
        outline_min = outline.min(axis=0)
        span = outline.max(axis=0) - outline_min
    scale = longer_side / span.max()
    margin = 2  # room for anti-aliased edges
    width, height = (int(math.ceil(v)) + 2 * margin for v in span * scale)

    def draw(canvas, factor):
        if outline is None:
            low, high = margin * factor, (margin + longer_side) * factor
            canvas.ellipse([low, low, high, high], fill=255)
        else:
            points = ((outline - outline_min) * scale + margin) * factor
            canvas.polygon([tuple(p) for p in points], fill=255)

    return supersampled_alpha(draw, width, height, supersample)


@dataclass
class _Placed:
    category: str
    colour: tuple[int, int, int]
    alpha: np.ndarray
    x: int
    y: int
    box: list[float]


def _sized_shape(shape, config, short_side, rng, supersample):
    """Rasterise until the drawn tight box's longer side is inside the split's range."""
    low, high = config.min_size * short_side, config.max_size * short_side
    while True:
        target = rng.uniform(low + 1.0, high - 1.0)
        alpha = rasterise_shape(shape, target, rng, supersample)
        bits = alpha_to_mask(alpha)
        box = Mask(0, 0, bits).tight_box()
        longer = max(box[2] - box[0], box[3] - box[1])
        if low <= longer <= high:
            return alpha, bits, box


def _place(bits, box, occupied, boxes, rng, tries=40):
    """A top-left corner where the crop neither touches drawn pixels nor overlaps a box > 0.3 IoU."""
    height, width = occupied.shape
    footprint = dilate(bits)
    h, w = bits.shape
    for _ in range(tries):
        x = int(rng.integers(-int(box[0]), width - int(box[2]) + 1))
        y = int(rng.integers(-int(box[1]), height - int(box[3]) + 1))
        # The footprint is one pixel larger on every side; clip it to the image.
        fx0, fy0 = x - 1, y - 1
        cx0, cy0 = max(fx0, 0), max(fy0, 0)
        cx1, cy1 = min(fx0 + w + 2, width), min(fy0 + h + 2, height)
        window = footprint[cy0 - fy0 : cy1 - fy0, cx0 - fx0 : cx1 - fx0]
        if (occupied[cy0:cy1, cx0:cx1] & window).any():
            continue
        placed_box = [box[0] + x, box[1] + y, box[2] + x, box[3] + y]
        if boxes and box_iou_matrix(np.array([placed_box]), np.array(boxes)).max() > MAX_BOX_IOU:
            continue
        return x, y, placed_box
    return None


def _clip_to_image(alpha, x, y, width, height):
    """Cut the crop's margin where it hangs over the image border (only faint edge pixels)."""
    left, top = max(0, -x), max(0, -y)
    h, w = alpha.shape
    right, bottom = min(w, width - x), min(h, height - y)
    return alpha[top:bottom, left:right], x + left, y + top


def _layout(rng, config, width, height, supersample):
    """Place `count` objects, or None when the image is too crowded (the caller redraws)."""
    count = int(rng.integers(config.min_count, config.max_count + 1))
    occupied = np.zeros((height, width), dtype=bool)
    placed: list[_Placed] = []
    for _ in range(count):
        used = [p.category for p in placed]
        if used and rng.random() < config.repeat_category:
            category = used[int(rng.integers(len(used)))]
        else:
            category = config.categories[int(rng.integers(len(config.categories)))]
        colour_name, shape = category.split(" ")
        for _attempt in range(6):  # a smaller draw of the size often fits where a large one did not
            alpha, bits, box = _sized_shape(shape, config, min(width, height), rng, supersample)
            spot = _place(bits, box, occupied, [p.box for p in placed], rng)
            if spot is not None:
                break
        else:
            return None
        x, y, placed_box = spot
        alpha, x, y = _clip_to_image(alpha, x, y, width, height)
        h, w = alpha.shape
        occupied[y : y + h, x : x + w] |= alpha_to_mask(alpha)
        colour = jitter_colour(rng, PALETTE[colour_name])
        placed.append(_Placed(category, colour, alpha, x, y, placed_box))
    return placed


def _background(rng, config, width, height) -> Image.Image:
    """A background far from every colour the split draws. `background` keeps away from the
    original colours; a split with colours of its own is redrawn until no pixel is near them."""
    own = np.array([PALETTE[c] for c in config.colours if c not in OBJECT_COLOURS], dtype=np.float64)
    while True:
        canvas = background(rng, width, height)
        if not len(own):
            return canvas
        pixels = np.asarray(canvas, dtype=np.float64).reshape(-1, 1, 3)
        if np.linalg.norm(pixels - own[None], axis=2).min() >= MIN_BACKGROUND_DISTANCE:
            return canvas


def generate_shapes(seed: int, split: str = "normal") -> Scene:
    """One shapes image and its annotations; the same (seed, split) always gives the same scene."""
    config = split_config(split)
    rng = np.random.default_rng([seed, list(SPLITS).index(split)])
    width, height = image_size(rng)
    supersample = int(rng.choice([1, 2, 4]))
    while True:
        placed = _layout(rng, config, width, height, supersample)
        if placed is not None:
            break
    canvas = _background(rng, config, width, height)
    annotations = []
    for item in placed:
        canvas.paste(item.colour, (item.x, item.y), Image.fromarray(item.alpha, "L"))
        colour_name, shape = item.category.split(" ")
        annotations.append(
            Annotation(
                category=item.category,
                box=item.box,
                mask=Mask(item.x, item.y, alpha_to_mask(item.alpha)),
                attributes={"colour": colour_name, "shape": shape},
            )
        )
    return Scene(maybe_blur(rng, canvas), "shapes", split, seed, annotations)
