"""Nano-world generators: `generate(world, seed, split)` → `Scene` (image + annotations)."""

from __future__ import annotations

from .common import Annotation, Mask, Scene
from .gui import generate_gui
from .keypoints import generate_keypoints
from .ocr import generate_ocr
from .shapes import generate_shapes

GENERATORS = {
    "shapes": generate_shapes,
    "ocr": generate_ocr,
    "gui": generate_gui,
    "keypoints": generate_keypoints,
}
WORLDS = tuple(GENERATORS)


def generate(world: str, seed: int, split: str = "normal") -> Scene:
    """One scene of `world`; the same (world, seed, split) always gives the same scene."""
    try:
        generator = GENERATORS[world]
    except KeyError:
        raise ValueError(f"unknown world {world!r}; known worlds: {', '.join(WORLDS)}") from None
    return generator(seed, split)


__all__ = ["Annotation", "Mask", "Scene", "GENERATORS", "WORLDS", "generate"]
