"""OCR, GUI and keypoint worlds: deterministic, and inside NANO_WORLD.md's ranges."""

import io
import re

import numpy as np
import pytest

from rexomni_core.data.worlds import WORLDS, generate
from rexomni_core.nano.vocabulary import GUI_ROLES as ROLES
from rexomni_core.tasks import KEYPOINT_SCHEMAS

SEEDS = range(20)
WORD = re.compile(r"[A-Z0-9]{3,10}")


def png_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("world", WORLDS)
def test_same_seed_same_bytes(world):
    assert png_bytes(generate(world, 11).image) == png_bytes(generate(world, 11).image)
    assert png_bytes(generate(world, 12).image) != png_bytes(generate(world, 11).image)


@pytest.mark.parametrize("world", WORLDS)
def test_boxes_lie_inside_the_image_and_have_area(world):
    for seed in SEEDS:
        scene = generate(world, seed)
        assert scene.annotations
        for a in scene.annotations:
            x0, y0, x1, y1 = a.box
            assert -0.5 <= x0 < x1 <= scene.width + 0.5 and -0.5 <= y0 < y1 <= scene.height + 0.5, (seed, a)


def test_ocr_words_and_lines():
    for seed in SEEDS:
        scene = generate("ocr", seed)
        lines = [a for a in scene.annotations if a.category == "text line"]
        words = [a for a in scene.annotations if a.category == "word"]
        assert words
        assert all(WORD.fullmatch(w.text) for w in words)
        for line in lines:
            parts = line.text.split(" ")
            assert 2 <= len(parts) <= 4 and all(WORD.fullmatch(p) for p in parts)
        for a in scene.annotations:
            quad = np.array(a.polygon).reshape(4, 2)
            assert np.allclose([quad[:, 0].min(), quad[:, 1].min(), quad[:, 0].max(), quad[:, 1].max()], a.box)


def test_ocr_has_rotated_text():
    angles = []
    for seed in SEEDS:
        for a in generate("ocr", seed).annotations:
            (x0, y0), (x1, y1) = a.polygon[:2], a.polygon[2:4]
            angles.append(abs(np.degrees(np.arctan2(y1 - y0, x1 - x0))))
    assert min(angles) < 0.01 and max(angles) > 10


def test_gui_elements_have_roles_and_unique_labels():
    for seed in SEEDS:
        scene = generate("gui", seed)
        names = [(a.attributes["label"], a.attributes["role"]) for a in scene.annotations]
        assert len(names) == len(set(names))
        assert all(role in ROLES for _, role in names)
        assert sum(role == "title bar" for _, role in names) == 1


def test_stick_figures_have_seventeen_keypoints_some_invisible():
    hidden = 0
    for seed in SEEDS:
        scene = generate("keypoints", seed)
        for a in scene.annotations:
            assert list(a.keypoints) == list(KEYPOINT_SCHEMAS["person"])
            for xy in a.keypoints.values():
                if xy is None:
                    hidden += 1
                else:
                    assert 0 <= xy[0] < scene.width and 0 <= xy[1] < scene.height
    assert hidden > 0


@pytest.mark.parametrize("world", ["ocr", "gui", "keypoints"])
def test_only_the_normal_split(world):
    with pytest.raises(ValueError, match="split"):
        generate(world, 0, "dense")
