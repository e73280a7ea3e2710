"""The keypoints world: stick figures with the 17 COCO person keypoints (NANO_WORLD.md).

Figures face the viewer, so a person's left side is on the image's right; the left limbs are
drawn in a warm colour and the right limbs in a cool one (a fixed convention of this world, as
COCO visualisations use), which makes left and right learnable even when arms cross. A keypoint
is invisible (None) when it falls outside the image or under an occluding panel.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from ...annotations import Annotation, Mask, Scene
from ...errors import InputError
from ...tasks import KEYPOINT_SCHEMAS
from .common import background, background_colour, image_size, maybe_blur

PERSON = "person"
KEYPOINT_NAMES = KEYPOINT_SCHEMAS[PERSON]
LEFT_COLOUR, RIGHT_COLOUR = (235, 130, 30), (30, 150, 235)
BODY_SHADES = ((20, 20, 20), (250, 250, 250))

# Limbs as (from, to, side): side picks the colour.
LIMBS = (
    ("left shoulder", "left elbow", "left"), ("left elbow", "left wrist", "left"),
    ("right shoulder", "right elbow", "right"), ("right elbow", "right wrist", "right"),
    ("left hip", "left knee", "left"), ("left knee", "left ankle", "left"),
    ("right hip", "right knee", "right"), ("right knee", "right ankle", "right"),
    ("left shoulder", "right shoulder", "body"), ("left hip", "right hip", "body"),
)


def _pose(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Keypoints of a figure 1 unit tall, centred on x = 0, head at the top (y down)."""
    points = {
        "nose": (0.0, 0.085), "left eye": (0.025, 0.065), "right eye": (-0.025, 0.065),
        "left ear": (0.075, 0.07), "right ear": (-0.075, 0.07),
        "left shoulder": (0.12, 0.2), "right shoulder": (-0.12, 0.2),
        "left hip": (0.08, 0.53), "right hip": (-0.08, 0.53),
    }
    pose = {name: np.array(xy) for name, xy in points.items()}
    for side, sign in (("left", 1.0), ("right", -1.0)):
        # Angles from straight down, positive away from the body; arms swing widely, legs less.
        upper = rng.uniform(-0.4, 2.6)
        lower = upper + rng.uniform(-1.2, 1.2)
        pose[f"{side} elbow"] = pose[f"{side} shoulder"] + 0.16 * np.array([sign * math.sin(upper), math.cos(upper)])
        pose[f"{side} wrist"] = pose[f"{side} elbow"] + 0.15 * np.array([sign * math.sin(lower), math.cos(lower)])
        thigh = rng.uniform(-0.15, 0.6)
        shin = thigh + rng.uniform(-0.5, 0.3)
        pose[f"{side} knee"] = pose[f"{side} hip"] + 0.22 * np.array([sign * math.sin(thigh), math.cos(thigh)])
        pose[f"{side} ankle"] = pose[f"{side} knee"] + 0.22 * np.array([sign * math.sin(shin), math.cos(shin)])
    return pose


def _draw_figure(draw: ImageDraw.ImageDraw, pose: dict[str, np.ndarray], scale: float, body) -> None:
    line = max(2, int(round(scale * 0.025)))
    dot = max(1.5, scale * 0.012)

    def xy(name):
        return tuple(pose[name])

    neck = (pose["left shoulder"] + pose["right shoulder"]) / 2
    pelvis = (pose["left hip"] + pose["right hip"]) / 2
    draw.line([tuple(neck), tuple(pelvis)], fill=body, width=line)
    for start, end, side in LIMBS:
        colour = {"left": LEFT_COLOUR, "right": RIGHT_COLOUR, "body": body}[side]
        draw.line([xy(start), xy(end)], fill=colour, width=line)
    head_centre = (pose["nose"] + np.array([0, -0.02 * scale]))
    radius = 0.075 * scale
    head = [head_centre[0] - radius, head_centre[1] - radius, head_centre[0] + radius, head_centre[1] + radius]
    draw.ellipse(head, outline=body, width=line)
    for name in ("left eye", "left ear", "left wrist", "left ankle"):
        x, y = xy(name)
        draw.ellipse([x - dot, y - dot, x + dot, y + dot], fill=LEFT_COLOUR)
    for name in ("right eye", "right ear", "right wrist", "right ankle"):
        x, y = xy(name)
        draw.ellipse([x - dot, y - dot, x + dot, y + dot], fill=RIGHT_COLOUR)
    x, y = xy("nose")
    draw.ellipse([x - dot, y - dot, x + dot, y + dot], fill=body)


def generate_keypoints(seed: int, split: str = "normal") -> Scene:
    if split != "normal":
        raise InputError(f"the keypoints world has only the 'normal' split, got {split!r}")
    rng = np.random.default_rng([seed, 4])
    width, height = image_size(rng)
    canvas = background(rng, width, height)
    count = int(rng.integers(1, 4))
    slot = width / count  # figures stand side by side, one per slot, so they never overlap
    body = BODY_SHADES[int(rng.integers(2))]
    figures = []
    for i in range(count):
        figure_height = height * rng.uniform(0.45, 0.95) * min(1.0, slot / (0.7 * height))
        pose = _pose(rng)
        xs = np.array([p[0] for p in pose.values()])
        # Keep the figure inside its slot horizontally; let it overhang the bottom edge sometimes.
        centre_x = i * slot + slot / 2 + rng.uniform(-0.1, 0.1) * slot
        low, high = i * slot - xs.min() * figure_height + 2, (i + 1) * slot - xs.max() * figure_height - 2
        centre_x = float(np.clip(centre_x, low, high))
        # Anywhere from the top down to overhanging the bottom edge by up to 15 % of the figure.
        top = rng.uniform(0.02 * height, max(0.02 * height, height - 0.85 * figure_height))
        placed = {k: v * figure_height + np.array([centre_x, top]) for k, v in pose.items()}
        layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
        _draw_figure(ImageDraw.Draw(layer), placed, figure_height, body)
        figures.append((placed, layer))
    occluders = []
    if rng.random() < 0.4:
        w, h = rng.uniform(0.15, 0.35) * width, rng.uniform(0.15, 0.35) * height
        x0, y0 = rng.uniform(0, width - w), rng.uniform(0, height - h)
        occluders.append((x0, y0, x0 + w, y0 + h))
    occluder_colour = background_colour(rng)
    annotations = _annotate(figures, width, height, occluders)
    if annotations is None:  # the panel would hide a figure almost entirely: leave it out
        occluders = []
        annotations = _annotate(figures, width, height, occluders)
    for _placed, layer in figures:
        canvas.paste(layer, (0, 0), layer)
    draw = ImageDraw.Draw(canvas)
    for box in occluders:
        draw.rectangle(box, fill=occluder_colour)
    return Scene(maybe_blur(rng, canvas, probability=0.2), "keypoints", split, seed, annotations)


MIN_VISIBLE_KEYPOINTS = 4


def _annotate(figures, width, height, occluders) -> list[Annotation] | None:
    """Annotations of the figures behind `occluders`; None when one would be nearly hidden."""
    annotations = []
    for placed, layer in figures:
        drawn = np.asarray(layer)[..., 3] >= 128
        for x0, y0, x1, y1 in occluders:
            drawn[int(y0) : int(math.ceil(y1)) + 1, int(x0) : int(math.ceil(x1)) + 1] = False
        keypoints = {name: _visible(placed[name], width, height, occluders) for name in KEYPOINT_NAMES}
        visible = sum(xy is not None for xy in keypoints.values())
        if visible < MIN_VISIBLE_KEYPOINTS or not drawn.any():
            return None
        mask = Mask.from_full(drawn)
        annotations.append(Annotation(PERSON, mask.tight_box(), mask=mask, keypoints=keypoints))
    return annotations


def _visible(point: np.ndarray, width: int, height: int, occluders) -> list[float] | None:
    x, y = float(point[0]), float(point[1])
    if not (0 <= x < width and 0 <= y < height):
        return None
    if any(x0 <= x <= x1 and y0 <= y <= y1 for x0, y0, x1, y1 in occluders):
        return None
    return [x, y]
