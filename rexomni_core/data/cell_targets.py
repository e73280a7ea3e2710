"""Per-cell ground truth of a scene: what each image token of a square view shows.

Vision pre-training (stage 0 of Rex-Omni-nano, `train/vision.py`) teaches the vision tower from
these targets, and the cell probe (`nano/cell_probe.py`) measures the same facts on frozen
features. A square view of side S is a grid of G × G cells (G = S / 28: one cell per image token
after Qwen2.5-VL's 2 × 2 merge of 14 px patches); cell (r, c) shows the rectangle of the original
image that the resize to S × S maps onto it, whatever the image's aspect ratio.

A cell belongs to the object that covers most of it, when that object covers at least
`MIN_COVERAGE` of the cell; an object's centre cell belongs to it even when it covers less (a
small shape still owns one cell), unless another object covers that cell more. Targets, all
`(G * G,)` arrays in raster order (the merger's token order):

- `category`: index into `CELL_CATEGORIES` (0 = background), every world;
- `colour`, `shape`: the shapes world's two attributes (0 = background; `IGNORE` on the objects
  of other worlds, which have neither);
- `char`: the character of an OCR word or line under the cell's centre (index into
  `CELL_CHARACTERS`, 0 = no text), `IGNORE` in the GUI world, whose labels are text the OCR
  alphabet does not cover;
- `box`: `(G * G, 4)` the owning object's box as fractions of the image (x0, y0, x1, y1), NaN on
  background cells;
- `centre`: a Gaussian bump (σ `CENTRE_SIGMA` cells) at each object's box centre, max over objects;
- `centre_cell`: bool, the cell holding an object's box centre, when that object owns it (where
  an object-centred target, such as the shape seen from the whole object, is asked);
- `keypoints`: `(G * G, K)` a bump per person keypoint (`KEYPOINT_SCHEMAS["person"]`), zero elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ..annotations import Annotation, Scene
from ..errors import InputError
from ..nano.vocabulary import COLOURS, GUI_ROLES, SHAPE_CATEGORIES, SHAPES
from ..tasks import KEYPOINT_SCHEMAS
from .synth import scene_seed
from .worlds import WORLDS, generate
from .worlds.ocr import ALPHABET

CELL_PIXELS = 28  # one image token: a 2 x 2 merge of 14 px patches
IGNORE = -100  # cross-entropy's ignore index: no target for this cell
MIN_COVERAGE = 0.15
CENTRE_SIGMA = 0.6  # cells
CELL_CATEGORIES = ("background",) + SHAPE_CATEGORIES + ("word", "text line") + GUI_ROLES + ("person",)
CELL_COLOURS = ("background",) + COLOURS
CELL_SHAPES = ("background",) + SHAPES
CELL_CHARACTERS = ("none", " ") + tuple(ALPHABET)
PERSON_KEYPOINTS = KEYPOINT_SCHEMAS["person"]
_CATEGORY_INDEX = {name: i for i, name in enumerate(CELL_CATEGORIES)}


@dataclass
class CellTargets:
    category: np.ndarray
    colour: np.ndarray
    shape: np.ndarray
    char: np.ndarray
    box: np.ndarray
    centre: np.ndarray
    keypoints: np.ndarray
    centre_cell: np.ndarray

    @property
    def owned(self) -> np.ndarray:
        """(G * G,) bool: cells that belong to an object."""
        return self.category > 0


def grid_side(square_side: int) -> int:
    if square_side % CELL_PIXELS:
        raise ValueError(f"square side {square_side} is not a multiple of {CELL_PIXELS}")
    return square_side // CELL_PIXELS


def cell_edges(length: int, cells: int) -> np.ndarray:
    """(cells + 1,) pixel edges of the cells along one side of the original image."""
    return np.round(np.linspace(0, length, cells + 1)).astype(int)


def object_pixels(annotation: Annotation, width: int, height: int) -> np.ndarray:
    """(height, width) bool: the pixels of one object (its mask, else polygon, else box)."""
    if annotation.mask is not None:
        return annotation.mask.full(width, height)
    canvas = Image.new("1", (width, height))
    draw = ImageDraw.Draw(canvas)
    if annotation.polygon is not None:
        draw.polygon([float(v) for v in annotation.polygon], fill=1)
    else:
        x0, y0, x1, y1 = annotation.box
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=1)
    return np.asarray(canvas, dtype=bool)


def cell_coverage(pixels: np.ndarray, cells: int) -> np.ndarray:
    """(cells, cells) share of each cell's pixels that `pixels` covers."""
    height, width = pixels.shape
    rows, cols = cell_edges(height, cells), cell_edges(width, cells)
    # An integral image gives every cell's sum in four look-ups.
    integral = np.zeros((height + 1, width + 1))
    integral[1:, 1:] = pixels.cumsum(0).cumsum(1)
    sums = (integral[rows[1:, None], cols[None, 1:]] - integral[rows[:-1, None], cols[None, 1:]]
            - integral[rows[1:, None], cols[None, :-1]] + integral[rows[:-1, None], cols[None, :-1]])
    areas = np.diff(rows)[:, None] * np.diff(cols)[None, :]
    return sums / np.maximum(areas, 1)


def _bumps(points: np.ndarray, cells: int) -> np.ndarray:
    """(cells * cells,) max over `points` (cell units, (n, 2) x, y) of a Gaussian bump."""
    if not len(points):
        return np.zeros(cells * cells)
    centres = (np.arange(cells) + 0.5)
    ys, xs = np.meshgrid(centres, centres, indexing="ij")
    d2 = (xs.reshape(-1, 1) - points[None, :, 0]) ** 2 + (ys.reshape(-1, 1) - points[None, :, 1]) ** 2
    return np.exp(-d2 / (2 * CENTRE_SIGMA**2)).max(axis=1)


def _character_at(annotation: Annotation, x: float, y: float) -> int:
    """The index in CELL_CHARACTERS of the character of a text instance at pixel (x, y): its
    position along the polygon's reading direction (first edge), in equal shares per character."""
    quad = np.asarray(annotation.polygon, dtype=np.float64).reshape(-1, 2)
    start, axis = quad[0], quad[1] - quad[0]
    length = float(axis @ axis)
    text = annotation.text or ""
    if not text or length == 0:
        return 0
    share = float(np.clip((np.array([x, y]) - start) @ axis / length, 0, 1 - 1e-9))
    character = text[int(share * len(text))].upper()
    return CELL_CHARACTERS.index(character) if character in CELL_CHARACTERS else 0


def cell_targets(scene: Scene, square_side: int) -> CellTargets:
    """Every per-cell target of `scene` seen at a `square_side` square view."""
    cells = grid_side(square_side)
    width, height = scene.image.size
    n = cells * cells
    coverage = np.zeros((len(scene.annotations), n))
    for i, annotation in enumerate(scene.annotations):
        coverage[i] = cell_coverage(object_pixels(annotation, width, height), cells).reshape(-1)
    owner = np.where(coverage.max(axis=0, initial=0) >= MIN_COVERAGE, coverage.argmax(axis=0) if len(coverage) else -1, -1)
    centres = np.array([[(a.box[0] + a.box[2]) / 2 * cells / width, (a.box[1] + a.box[3]) / 2 * cells / height]
                        for a in scene.annotations]).reshape(-1, 2)
    centre_cells = [min(int(cy), cells - 1) * cells + min(int(cx), cells - 1) for cx, cy in centres]
    for i, cell in enumerate(centre_cells):
        if owner[cell] < 0 or coverage[owner[cell], cell] < coverage[i, cell]:
            owner[cell] = i
    centre_cell = np.zeros(n, dtype=bool)
    for i, cell in enumerate(centre_cells):
        centre_cell[cell] |= owner[cell] == i

    category = np.zeros(n, dtype=np.int64)
    colour, shape = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    char = np.full(n, IGNORE if scene.world == "gui" else 0, dtype=np.int64)
    box = np.full((n, 4), np.nan, dtype=np.float32)
    for cell in np.flatnonzero(owner >= 0):
        annotation = scene.annotations[owner[cell]]
        category[cell] = _CATEGORY_INDEX.get(annotation.category, 0)
        colour_name, shape_name = annotation.attributes.get("colour"), annotation.attributes.get("shape")
        colour[cell] = CELL_COLOURS.index(colour_name) if colour_name in CELL_COLOURS else IGNORE
        shape[cell] = CELL_SHAPES.index(shape_name) if shape_name in CELL_SHAPES else IGNORE
        if annotation.polygon is not None and annotation.text is not None:
            row, col = divmod(int(cell), cells)
            char[cell] = _character_at(annotation, (col + 0.5) * width / cells, (row + 0.5) * height / cells)
        x0, y0, x1, y1 = annotation.box
        box[cell] = (x0 / width, y0 / height, x1 / width, y1 / height)

    keypoints = np.zeros((n, len(PERSON_KEYPOINTS)), dtype=np.float32)
    for k, name in enumerate(PERSON_KEYPOINTS):
        points = [(a.keypoints[name][0] * cells / width, a.keypoints[name][1] * cells / height)
                  for a in scene.annotations if a.keypoints and a.keypoints.get(name) is not None]
        keypoints[:, k] = _bumps(np.array(points).reshape(-1, 2), cells)
    return CellTargets(category, colour, shape, char, box, _bumps(centres, cells).astype(np.float32), keypoints,
                       centre_cell)


@dataclass(frozen=True)
class SceneEntry:
    """One part of a scene mixture: a world's split, drawn with probability ∝ `weight`."""

    world: str
    split: str = "normal"
    weight: float = 1.0


DEFAULT_SCENE_MIXTURE = (
    SceneEntry("shapes", "normal", 3.0), SceneEntry("shapes", "few", 1.0), SceneEntry("shapes", "dense", 1.0),
    SceneEntry("ocr", "normal", 1.5), SceneEntry("gui", "normal", 1.0), SceneEntry("keypoints", "normal", 1.0),
)


class CellTargetStream:
    """Endless scenes with their cell targets: item i is (square view image, `CellTargets`),
    pure in (seed, i), so a resumed run continues at the index where it stopped."""

    def __init__(self, mixture=DEFAULT_SCENE_MIXTURE, seed: int = 0, square_side: int = 224):
        self.mixture = tuple(SceneEntry(**e) if isinstance(e, dict) else e for e in mixture)
        if not self.mixture:
            raise InputError("the scene mixture needs at least one entry")
        for entry in self.mixture:
            if entry.world not in WORLDS or not entry.weight > 0:
                raise InputError(f"scene mixture entry {entry}: known worlds {', '.join(WORLDS)}, weight > 0")
        grid_side(square_side)
        weights = np.array([e.weight for e in self.mixture], dtype=np.float64)
        self._cumulative = np.cumsum(weights / weights.sum())
        self.seed, self.square_side = seed, square_side

    def scene(self, index: int) -> Scene:
        # The scene seed is `rexomni data synth`'s for (seed, index): stream and folder agree.
        pick = np.random.SeedSequence([self.seed, index]).generate_state(2)[1] / 2**32
        entry = self.mixture[min(int(np.searchsorted(self._cumulative, pick)), len(self.mixture) - 1)]
        return generate(entry.world, scene_seed(self.seed, index), entry.split)

    def __getitem__(self, index: int) -> tuple[Image.Image, CellTargets]:
        scene = self.scene(index)
        side = self.square_side
        return scene.image.convert("RGB").resize((side, side), Image.BICUBIC), cell_targets(scene, side)
