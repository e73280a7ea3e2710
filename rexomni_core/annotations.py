"""The data model every dataset speaks: an image's annotations, whatever made them.

`Annotation` (one object: category, tight pixel box, optional mask, polygon, text, keypoints and
attributes), its `Mask`, and `Scene` (an image with its annotations, as a nano-world generator
makes it). The real-data formats (`data/formats/`) read and write these, the samplers turn them
into conversations; nothing here knows any world or format. Boxes are `[x0, y0, x1, y1]`
pixel-edge boxes (COCO convention: a shape covering pixel columns 3..7 has x0 = 3, x1 = 8).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image


@dataclass
class Mask:
    """The drawn pixels of one object: a boolean crop and where its top-left corner lies."""

    x: int
    y: int
    bits: np.ndarray  # bool, shape (h, w)

    @classmethod
    def from_full(cls, bits: np.ndarray) -> Mask:
        """A whole-image mask cropped to its tight box (an empty mask keeps a 0×0 crop)."""
        rows = np.flatnonzero(bits.any(axis=1))
        cols = np.flatnonzero(bits.any(axis=0))
        if rows.size == 0:
            return cls(0, 0, np.zeros((0, 0), dtype=bool))
        return cls(int(cols[0]), int(rows[0]), bits[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].copy())

    def full(self, width: int, height: int) -> np.ndarray:
        """The mask as a (height, width) bool array of the whole image."""
        canvas = np.zeros((height, width), dtype=bool)
        h, w = self.bits.shape
        canvas[self.y : self.y + h, self.x : self.x + w] = self.bits
        return canvas

    def tight_box(self) -> list[float]:
        rows = np.flatnonzero(self.bits.any(axis=1))
        cols = np.flatnonzero(self.bits.any(axis=0))
        if rows.size == 0:
            raise ValueError("empty mask has no box")
        return [
            float(self.x + cols[0]),
            float(self.y + rows[0]),
            float(self.x + cols[-1] + 1),
            float(self.y + rows[-1] + 1),
        ]


@dataclass
class Annotation:
    """One object of a scene, whatever the world.

    `category` is the COCO category name (`red circle`, `word`, `button`, `person`);
    `text` the OCR text or GUI label; `polygon` a flat [x0, y0, x1, y1, …] outline (OCR
    quadrilaterals); `keypoints` name → [x, y] or None when not visible; `attributes` the
    world-specific facts samplers use (colour, shape, role).
    """

    category: str
    box: list[float]
    mask: Mask | None = None
    polygon: list[float] | None = None
    text: str | None = None
    keypoints: dict[str, list[float] | None] | None = None
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass
class Scene:
    image: Image.Image
    world: str
    split: str
    seed: int
    annotations: list[Annotation]

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height
