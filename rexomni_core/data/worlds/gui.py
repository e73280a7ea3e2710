"""The GUI world: synthetic application screens (NANO_WORLD.md).

A screen has a title bar, then rows laid out top to bottom: labelled text fields, check boxes
with their labels, rows of buttons and rows of icons. Every element carries a role
(`title bar`, `text field`, `checkbox`, `button`, `icon`) and a label unique on its screen, so
"Save button" or "search icon" names exactly one element. An element's box is its clickable area
(a check box together with its label, as a click on the label ticks it).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from ...annotations import Annotation, Scene
from ...errors import InputError
from ...nano.vocabulary import APP_TITLES, BUTTON_LABELS, CHECKBOX_LABELS, FIELD_LABELS, ICON_LABELS
from .common import load_font, maybe_blur, random_font_file

THEMES = (
    # window, panel, text, border
    ((245, 245, 245), (255, 255, 255), (30, 30, 30), (150, 150, 150)),
    ((250, 248, 240), (255, 255, 252), (50, 40, 30), (170, 160, 140)),
    ((40, 42, 48), (58, 60, 68), (230, 230, 230), (110, 112, 120)),
    ((25, 30, 45), (40, 46, 64), (220, 225, 240), (90, 100, 130)),
)


def _draw_icon(draw: ImageDraw.ImageDraw, name: str, box, colour, width: int) -> None:
    """A simple glyph for each icon name, inside `box`."""
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    if name == "home":
        draw.polygon([(cx, y0), (x1, cy), (x0, cy)], outline=colour, width=width)
        draw.rectangle([x0 + r * 0.3, cy, x1 - r * 0.3, y1], outline=colour, width=width)
    elif name == "search":
        draw.ellipse([x0, y0, cx + r * 0.3, cy + r * 0.3], outline=colour, width=width)
        draw.line([(cx + r * 0.2, cy + r * 0.2), (x1, y1)], fill=colour, width=width)
    elif name == "settings":
        for k in range(8):
            a = k * math.pi / 4
            draw.line([(cx, cy), (cx + r * math.cos(a), cy + r * math.sin(a))], fill=colour, width=width)
        draw.ellipse([cx - r * 0.6, cy - r * 0.6, cx + r * 0.6, cy + r * 0.6], fill=colour)
    elif name == "trash":
        draw.line([(x0, y0 + r * 0.3), (x1, y0 + r * 0.3)], fill=colour, width=width)
        draw.rectangle([x0 + r * 0.25, y0 + r * 0.3, x1 - r * 0.25, y1], outline=colour, width=width)
    elif name == "star":
        points = [
            (cx + (r if k % 2 == 0 else r * 0.45) * math.sin(k * math.pi / 5),
             cy - (r if k % 2 == 0 else r * 0.45) * math.cos(k * math.pi / 5))
            for k in range(10)
        ]
        draw.polygon(points, fill=colour)
    elif name == "heart":
        draw.ellipse([x0, y0 + r * 0.2, cx, cy + r * 0.2], fill=colour)
        draw.ellipse([cx, y0 + r * 0.2, x1, cy + r * 0.2], fill=colour)
        draw.polygon([(x0 + 1, cy - r * 0.1), (x1 - 1, cy - r * 0.1), (cx, y1)], fill=colour)
    elif name == "plus":
        draw.line([(cx, y0), (cx, y1)], fill=colour, width=width + 1)
        draw.line([(x0, cy), (x1, cy)], fill=colour, width=width + 1)
    elif name == "menu":
        for y in (y0 + r * 0.3, cy, y1 - r * 0.3):
            draw.line([(x0, y), (x1, y)], fill=colour, width=width)
    elif name == "close":
        draw.line([(x0, y0), (x1, y1)], fill=colour, width=width + 1)
        draw.line([(x0, y1), (x1, y0)], fill=colour, width=width + 1)
    else:  # play
        draw.polygon([(x0 + r * 0.2, y0), (x1, cy), (x0 + r * 0.2, y1)], fill=colour)


class _Screen:
    """Draws widgets and records their annotations, top to bottom."""

    def __init__(self, rng: np.random.Generator, width: int, height: int):
        self.rng = rng
        self.width, self.height = width, height
        window, self.panel, self.text, self.border = THEMES[int(rng.integers(len(THEMES)))]
        self.accent = tuple(int(v) for v in rng.integers(40, 200, size=3))
        self.image = Image.new("RGB", (width, height), window)
        self.draw = ImageDraw.Draw(self.image)
        self.font_file = random_font_file(rng)
        self.font = load_font(self.font_file, int(rng.integers(10, 15)))
        self.margin = int(rng.integers(6, 14))
        self.annotations: list[Annotation] = []
        self.used: dict[tuple[str, ...], set[str]] = {}

    def label(self, pool: tuple[str, ...]) -> str | None:
        """A label of `pool` not used yet on this screen (labels are unique per screen)."""
        free = [p for p in pool if p not in self.used.setdefault(pool, set())]
        if not free:
            return None
        chosen = free[int(self.rng.integers(len(free)))]
        self.used[pool].add(chosen)
        return chosen

    def add(self, role: str, label: str, box) -> None:
        box = [float(v) for v in box]
        self.annotations.append(Annotation(role, box, text=label, attributes={"role": role, "label": label}))

    def text_size(self, text: str) -> tuple[int, int]:
        x0, y0, x1, y1 = self.draw.textbbox((0, 0), text, font=self.font)
        return int(math.ceil(x1)), int(math.ceil(y1))

    def title_bar(self) -> int:
        title = APP_TITLES[int(self.rng.integers(len(APP_TITLES)))]
        height = self.text_size(title)[1] + int(self.rng.integers(8, 14))
        colour = self.accent if self.rng.random() < 0.5 else self.border
        self.draw.rectangle([0, 0, self.width - 1, height - 1], fill=colour)
        text_colour = (255, 255, 255) if sum(colour) < 450 else (0, 0, 0)
        self.draw.text((self.margin, (height - self.text_size(title)[1]) // 2), title, font=self.font, fill=text_colour)
        self.add("title bar", title, [0, 0, self.width, height])
        return height

    def text_field(self, y: int) -> int | None:
        label = self.label(FIELD_LABELS)
        if label is None:
            return None
        tw, th = self.text_size(label)
        height = th + int(self.rng.integers(8, 14))
        x0 = self.margin + tw + 8
        x1 = self.width - self.margin - int(self.rng.integers(0, max(1, (self.width - x0) // 3)))
        if x1 - x0 < 40 or y + height > self.height - self.margin:
            return None
        self.draw.text((self.margin, y + (height - th) // 2), label, font=self.font, fill=self.text)
        self.draw.rectangle([x0, y, x1 - 1, y + height - 1], fill=self.panel, outline=self.border)
        self.add("text field", label, [x0, y, x1, y + height])
        return height

    def checkbox(self, y: int) -> int | None:
        label = self.label(CHECKBOX_LABELS)
        if label is None:
            return None
        tw, th = self.text_size(label)
        side = max(th, 10)
        if y + side > self.height - self.margin or self.margin + side + 6 + tw > self.width - self.margin:
            return None
        x0 = self.margin
        self.draw.rectangle([x0, y, x0 + side - 1, y + side - 1], fill=self.panel, outline=self.border)
        if self.rng.random() < 0.5:  # ticked
            tick = [(x0 + 2, y + side / 2), (x0 + side / 2, y + side - 3), (x0 + side - 2, y + 2)]
            self.draw.line(tick, fill=self.accent, width=2)
        self.draw.text((x0 + side + 6, y + (side - th) // 2), label, font=self.font, fill=self.text)
        self.add("checkbox", label, [x0, y, x0 + side + 6 + tw, y + side])
        return side

    def buttons(self, y: int) -> int | None:
        count = int(self.rng.integers(1, 4))
        x, placed, height = self.margin, 0, 0
        for _ in range(count):
            label = self.label(BUTTON_LABELS)
            if label is None:
                break
            tw, th = self.text_size(label)
            pad = int(self.rng.integers(6, 12))
            w, height = tw + 2 * pad, th + int(self.rng.integers(8, 14))
            if x + w > self.width - self.margin or y + height > self.height - self.margin:
                break
            filled = self.rng.random() < 0.5
            self.draw.rounded_rectangle(
                [x, y, x + w - 1, y + height - 1], radius=int(self.rng.integers(0, 6)),
                fill=self.accent if filled else self.panel, outline=self.border,
            )
            text_colour = (255, 255, 255) if filled and sum(self.accent) < 450 else (self.text if not filled else (0, 0, 0))
            self.draw.text((x + pad, y + (height - th) // 2), label, font=self.font, fill=text_colour)
            self.add("button", label, [x, y, x + w, y + height])
            x += w + int(self.rng.integers(6, 16))
            placed += 1
        return height if placed else None

    def icons(self, y: int) -> int | None:
        side = int(self.rng.integers(14, 24))
        if y + side > self.height - self.margin:
            return None
        x = self.margin
        placed = 0
        for _ in range(int(self.rng.integers(2, 6))):
            if x + side > self.width - self.margin:
                break
            label = self.label(ICON_LABELS)
            if label is None:
                break
            _draw_icon(self.draw, label, (x + 2, y + 2, x + side - 3, y + side - 3), self.text, 2)
            self.add("icon", label, [x, y, x + side, y + side])
            x += side + int(self.rng.integers(6, 14))
            placed += 1
        return side if placed else None


def generate_gui(seed: int, split: str = "normal") -> Scene:
    if split != "normal":
        raise InputError(f"the gui world has only the 'normal' split, got {split!r}")
    rng = np.random.default_rng([seed, 3])
    width, height = int(rng.integers(240, 385)), int(rng.integers(200, 385))
    screen = _Screen(rng, width, height)
    y = screen.title_bar() + screen.margin
    widgets = (screen.text_field, screen.checkbox, screen.buttons, screen.icons)
    misses = 0
    while misses < 4:
        row_height = widgets[int(rng.integers(len(widgets)))](y)
        if row_height is None:
            misses += 1
            continue
        y += row_height + int(rng.integers(6, 16))
    return Scene(maybe_blur(rng, screen.image, probability=0.1), "gui", split, seed, screen.annotations)
