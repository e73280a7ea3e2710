"""The OCR world: words of 3–10 characters A–Z 0–9, alone or in text lines of 2–4 words,
horizontal or rotated, on plain or gradient backgrounds (NANO_WORLD.md).

A scene is either a `words` scene (only single words: every one is a `word`) or a `lines`
scene (lines of 2–4 words, annotated both as `text line` and word by word), so that asking for
text lines is never ambiguous. The polygon of a text instance is its ink-tight rectangle in the
text's own frame, rotated with the text (a rotated quadrilateral); its box is the polygon's bounds.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ...annotations import Annotation, Scene
from ...errors import InputError
from .common import dilate, image_size, linear_gradient, load_font, maybe_blur, random_font_file

ALPHABET = string.ascii_uppercase + string.digits
MIN_WORD, MAX_WORD = 3, 10
MIN_LINE_WORDS, MAX_LINE_WORDS = 2, 4
ROTATED_SHARE = 0.4
MAX_ANGLE = 35.0  # degrees either way for rotated text
MIN_LUMINANCE_GAP = 90.0


def random_word(rng: np.random.Generator) -> str:
    length = int(rng.integers(MIN_WORD, MAX_WORD + 1))
    # Mostly letters, as words are; digits appear, as in codes and signs.
    letters = string.ascii_uppercase if rng.random() < 0.6 else ALPHABET
    return "".join(letters[int(i)] for i in rng.integers(len(letters), size=length))


def _luminance(rgb) -> float:
    r, g, b = rgb
    return 0.299 * r + 0.587 * g + 0.114 * b


def random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, size=3))


def colour_against(rng: np.random.Generator, text_rgb, lighter: bool) -> tuple[int, int, int]:
    """A backdrop colour at least MIN_LUMINANCE_GAP lighter (or darker) than the text.

    Luminance is linear in RGB, so a gradient between two such colours keeps the gap everywhere.
    """
    while True:
        rgb = random_colour(rng)
        gap = _luminance(rgb) - _luminance(text_rgb)
        if (gap if lighter else -gap) >= MIN_LUMINANCE_GAP:
            return rgb


def text_backdrop(rng: np.random.Generator, width: int, height: int):
    """A text colour and a plain or gradient backdrop that reads clearly behind it."""
    text_rgb = random_colour(rng)
    lighter = _luminance(text_rgb) < 128  # dark text on a light backdrop, and the reverse
    start = colour_against(rng, text_rgb, lighter)
    if rng.random() < 0.5:
        return text_rgb, Image.new("RGB", (width, height), start)
    end = colour_against(rng, text_rgb, lighter)
    return text_rgb, linear_gradient(rng, width, height, start, end)


def rotate_points(points: np.ndarray, angle_deg: float, size: tuple[int, int], rotated_size: tuple[int, int]) -> np.ndarray:
    """Where points of an image land after `Image.rotate(angle_deg, expand=True)`."""
    theta = math.radians(angle_deg)
    w, h = size
    rw, rh = rotated_size
    dx, dy = points[:, 0] - w / 2, points[:, 1] - h / 2
    x = rw / 2 + dx * math.cos(theta) + dy * math.sin(theta)
    y = rh / 2 - dx * math.sin(theta) + dy * math.cos(theta)
    return np.stack([x, y], axis=1)


@dataclass
class _TextItem:
    """One rendered word or line: alpha crop, and its words' ink rectangles in the crop."""

    alpha: np.ndarray
    words: list[str]
    word_quads: list[np.ndarray]  # (4, 2) corners, clockwise from the text's top-left
    line_quad: np.ndarray


def _ink_rect(alpha: np.ndarray, x0: int, x1: int) -> np.ndarray:
    """Ink-tight rectangle of the columns x0..x1 of an unrotated text crop, as 4 corners."""
    columns = alpha[:, x0:x1] >= 128
    rows = np.flatnonzero(columns.any(axis=1))
    cols = np.flatnonzero(columns.any(axis=0))
    left, right = x0 + cols[0], x0 + cols[-1] + 1
    top, bottom = rows[0], rows[-1] + 1
    return np.array([[left, top], [right, top], [right, bottom], [left, bottom]], dtype=np.float64)


def render_text(words: list[str], font, angle: float) -> _TextItem:
    """Draw words separated by spaces, then rotate; quads follow the rotation."""
    pad = 4
    space = font.getlength(" ")
    starts, x = [], float(pad)
    for word in words:
        starts.append(x)
        x += font.getlength(word) + space
    ascent, descent = font.getmetrics()
    canvas = Image.new("L", (int(math.ceil(x - space)) + 2 * pad, ascent + descent + 2 * pad), 0)
    draw = ImageDraw.Draw(canvas)
    for start, word in zip(starts, words):
        draw.text((start, pad), word, font=font, fill=255)
    alpha = np.asarray(canvas)
    word_quads = [
        _ink_rect(alpha, int(start), int(math.ceil(start + font.getlength(word))))
        for start, word in zip(starts, words)
    ]
    line_quad = _ink_rect(alpha, 0, alpha.shape[1])
    if angle:
        rotated = canvas.rotate(angle, expand=True, resample=Image.BICUBIC)
        size, rotated_size = canvas.size, rotated.size
        word_quads = [rotate_points(q, angle, size, rotated_size) for q in word_quads]
        line_quad = rotate_points(line_quad, angle, size, rotated_size)
        alpha = np.asarray(rotated)
    return _TextItem(alpha, list(words), word_quads, line_quad)


def _quad_annotation(category: str, text: str, quad: np.ndarray, x: int, y: int) -> Annotation:
    placed = quad + [x, y]
    xs, ys = placed[:, 0], placed[:, 1]
    box = [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]
    return Annotation(category, box, polygon=[float(v) for v in placed.reshape(-1)], text=text)


MIN_FONT_SIZE = 9


def _fitted_text(words, angle, font_size, rng, width, height) -> _TextItem | None:
    """Render at `font_size`, shrinking the font once if the text overflows the image."""
    font_file = random_font_file(rng)
    item = render_text(words, load_font(font_file, font_size), angle)
    h, w = item.alpha.shape
    if w <= width and h <= height:
        return item
    smaller = int(font_size * min(width / w, height / h) * 0.9)
    if smaller < MIN_FONT_SIZE:
        return None
    item = render_text(words, load_font(font_file, smaller), angle)
    h, w = item.alpha.shape
    return item if w <= width and h <= height else None


def generate_ocr(seed: int, split: str = "normal") -> Scene:
    if split != "normal":
        raise InputError(f"the ocr world has only the 'normal' split, got {split!r}")
    rng = np.random.default_rng([seed, 2])
    width, height = image_size(rng)
    colour, canvas = text_backdrop(rng, width, height)
    lines_scene = rng.random() < 0.5
    count = int(rng.integers(1, 5 if lines_scene else 7))
    occupied = np.zeros((height, width), dtype=bool)
    annotations: list[Annotation] = []
    placed, attempts = 0, 0
    # Give up on the rest after many collisions, but never leave the image without text.
    while placed < count and (attempts < 20 * count or not annotations):
        attempts += 1
        n_words = int(rng.integers(MIN_LINE_WORDS, MAX_LINE_WORDS + 1)) if lines_scene else 1
        words = [random_word(rng) for _ in range(n_words)]
        angle = float(rng.uniform(-MAX_ANGLE, MAX_ANGLE)) if rng.random() < ROTATED_SHARE else 0.0
        item = _fitted_text(words, angle, int(rng.integers(11, 27)), rng, width, height)
        if item is None:
            continue
        h, w = item.alpha.shape
        x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        footprint = dilate(item.alpha > 0, 3)[3:-3, 3:-3]
        if (occupied[y : y + h, x : x + w] & footprint).any():
            continue
        occupied[y : y + h, x : x + w] |= footprint
        canvas.paste(colour, (x, y), Image.fromarray(item.alpha, "L"))
        for word, quad in zip(item.words, item.word_quads):
            annotations.append(_quad_annotation("word", word, quad, x, y))
        if lines_scene:
            annotations.append(_quad_annotation("text line", " ".join(item.words), item.line_quad, x, y))
        placed += 1
    return Scene(maybe_blur(rng, canvas, probability=0.2), "ocr", split, seed, annotations)
