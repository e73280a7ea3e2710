"""Nano-world generators: `generate(world, seed, split)` → `Scene` (image + annotations)."""

from __future__ import annotations

from ...annotations import Scene
from ...errors import InputError
from ...nano.vocabulary import GUI_ROLES, SHAPE_CATEGORIES
from .gui import generate_gui
from .keypoints import generate_keypoints
from .ocr import generate_ocr
from .shapes import generate_shapes, split_config

GENERATORS = {
    "shapes": generate_shapes,
    "ocr": generate_ocr,
    "gui": generate_gui,
    "keypoints": generate_keypoints,
}
WORLDS = tuple(GENERATORS)
# COCO categories of each world, in a fixed order so category ids are stable across runs.
WORLD_CATEGORIES: dict[str, tuple[str, ...]] = {
    "shapes": SHAPE_CATEGORIES,
    "ocr": ("word", "text line"),
    "gui": GUI_ROLES,
    "keypoints": ("person",),
}


def world_categories(world: str, split: str = "normal") -> tuple[str, ...]:
    """The COCO categories of a world's split: a shapes split may draw colours of its own (`novel`)."""
    return split_config(split).categories if world == "shapes" else WORLD_CATEGORIES[world]


def generate(world: str, seed: int, split: str = "normal") -> Scene:
    """One scene of `world`; the same (world, seed, split) always gives the same scene."""
    try:
        generator = GENERATORS[world]
    except KeyError:
        raise InputError(f"unknown world {world!r}; known worlds: {', '.join(WORLDS)}") from None
    return generator(seed, split)


__all__ = ["GENERATORS", "WORLDS", "WORLD_CATEGORIES", "generate", "world_categories"]
