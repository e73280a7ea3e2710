"""What every nano-world generator shares: backgrounds, fonts, rendering (the scene record and
masks are the data model, `data/annotations.py`).

A generator is a pure function `(seed, config) → Scene`: it draws only from a
`numpy.random.Generator` seeded with `seed`, so the same seed gives the same pixels and the same
annotations on every run. Boxes are tight `[x0, y0, x1, y1]` pixel-edge boxes (COCO convention:
a shape covering pixel columns 3..7 has x0 = 3, x1 = 8).
"""

from __future__ import annotations

import functools
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ...nano.vocabulary import OBJECT_COLOURS

MIN_SIDE, MAX_SIDE = 160, 384
COLOUR_JITTER = 20

# A background colour must stay this far (RGB Euclidean) from every object colour. Jitter moves an
# object colour by at most 20·√3 ≈ 35, so objects stay at least ~75 away from what they lie on.
MIN_BACKGROUND_DISTANCE = 110.0
BACKGROUND_KINDS = ("plain", "gradient", "noise")


def image_size(rng: np.random.Generator, low: int = MIN_SIDE, high: int = MAX_SIDE) -> tuple[int, int]:
    """Width and height drawn independently, so the aspect ratio varies."""
    width, height = rng.integers(low, high + 1, size=2)
    return int(width), int(height)


def jitter_colour(rng: np.random.Generator, rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    offsets = rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=3)
    # Plain ints: three values do not pay numpy's per-call overhead.
    return tuple(min(max(channel + int(offset), 0), 255) for channel, offset in zip(rgb, offsets))


_OBJECT_RGB = np.array(list(OBJECT_COLOURS.values()), dtype=np.float64)


def far_from_objects(rgb) -> bool:
    distances = np.linalg.norm(_OBJECT_RGB - np.asarray(rgb, dtype=np.float64), axis=1)
    return bool(distances.min() >= MIN_BACKGROUND_DISTANCE)


def background_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """A random colour far from every object colour (rejection sampling; most draws pass)."""
    while True:
        rgb = tuple(int(v) for v in rng.integers(0, 256, size=3))
        if far_from_objects(rgb):
            return rgb


def _gradient_colours(rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    # A straight line between two safe colours can pass close to an object colour: check it.
    while True:
        start, end = background_colour(rng), background_colour(rng)
        steps = np.linspace(0.0, 1.0, 9)[:, None]
        line = (1 - steps) * np.asarray(start) + steps * np.asarray(end)
        if all(far_from_objects(rgb) for rgb in line):
            return start, end


def linear_gradient(rng: np.random.Generator, width: int, height: int, start, end) -> Image.Image:
    """A gradient from `start` to `end` colour along a random direction."""
    angle = rng.uniform(0, 2 * np.pi)
    xs = np.arange(width, dtype=np.float32)[None, :] * np.cos(angle)
    ys = np.arange(height, dtype=np.float32)[:, None] * np.sin(angle)
    t = xs + ys
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    for channel in range(3):  # per channel: no (H, W, 3) float temporaries; same values
        pixels[..., channel] = (1 - t) * np.float32(start[channel]) + t * np.float32(end[channel])
    return Image.fromarray(pixels, "RGB")


def background(rng: np.random.Generator, width: int, height: int, kinds=BACKGROUND_KINDS) -> Image.Image:
    """A plain colour, a linear gradient at a random angle, or low-contrast smooth noise."""
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind == "plain":
        return Image.new("RGB", (width, height), background_colour(rng))
    if kind == "gradient":
        return linear_gradient(rng, width, height, *_gradient_colours(rng))
    # Noise: drawn coarse and upsampled (fast, and smooth like paper or fabric texture).
    base = np.asarray(background_colour(rng), dtype=np.int16)
    amplitude = int(rng.integers(6, 16))
    cell = int(rng.integers(4, 17))
    coarse = rng.integers(-amplitude, amplitude + 1, size=(height // cell + 2, width // cell + 2, 3))
    small = Image.fromarray(np.clip(base + coarse, 0, 255).astype(np.uint8), "RGB")
    return small.resize((width, height), Image.BILINEAR)


def maybe_blur(rng: np.random.Generator, image: Image.Image, probability: float = 0.3) -> Image.Image:
    """Mild Gaussian blur on some images (radius < 1 px keeps the ground truth exact)."""
    if rng.random() < probability:
        return image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 0.8))))
    return image


def supersampled_alpha(draw_fn, width: int, height: int, factor: int) -> np.ndarray:
    """Rasterise with `draw_fn(ImageDraw, scale)` at `factor`× and box-downsample → uint8 alpha.

    factor 1 is aliased drawing; 2 and 4 anti-alias. Varying it per image varies edge softness.
    """
    canvas = Image.new("L", (width * factor, height * factor), 0)
    draw_fn(ImageDraw.Draw(canvas), factor)
    if factor > 1:
        canvas = canvas.reduce(factor)
    return np.asarray(canvas)


def alpha_to_mask(alpha: np.ndarray) -> np.ndarray:
    """Drawn pixels: those at least half covered."""
    return alpha >= 128


def dilate(bits: np.ndarray, pixels: int = 1) -> np.ndarray:
    """Binary dilation by a square of radius `pixels`; the result is `pixels` larger on each side."""
    h, w = bits.shape
    out = np.zeros((h + 2 * pixels, w + 2 * pixels), dtype=bool)
    # Shifted ORs: every pixel within `pixels` of a set pixel becomes set.
    for dy in range(2 * pixels + 1):
        for dx in range(2 * pixels + 1):
            out[dy : dy + h, dx : dx + w] |= bits
    return out


# Fonts: PIL's built-in font always; the DejaVu family that matplotlib ships when it is installed
# (the `data` extra pulls it in), so text varies in shape without any system fonts.
_MATPLOTLIB_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
)


@functools.lru_cache(maxsize=1)
def font_files() -> tuple[str | None, ...]:
    """Available font files; None stands for PIL's built-in font."""
    files: list[str | None] = [None]
    try:
        import matplotlib

        folder = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
        files += [os.path.join(folder, name) for name in _MATPLOTLIB_FONTS if os.path.exists(os.path.join(folder, name))]
    except ImportError:
        pass
    return tuple(files)


@functools.lru_cache(maxsize=256)
def load_font(path: str | None, size: int) -> ImageFont.FreeTypeFont:
    if path is None:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(path, size=size)


def random_font_file(rng: np.random.Generator) -> str | None:
    files = font_files()
    return files[int(rng.integers(len(files)))]
