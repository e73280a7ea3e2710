"""The shapes world stays inside NANO_WORLD.md and is a pure function of (seed, split)."""

import io

import numpy as np
import pytest

from rexomni_core.data.worlds.common import dilate
from rexomni_core.data.worlds.shapes import SPLITS, generate_shapes
from rexomni_core.geometry import box_iou_matrix
from rexomni_core.nano.vocabulary import OBJECT_COLOURS
from rexomni_core.nano.vocabulary import SHAPE_CATEGORIES as CATEGORIES

SEEDS = range(25)


def png_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("split", sorted(SPLITS))
def test_same_seed_gives_identical_bytes_and_annotations(split):
    first, second = generate_shapes(7, split), generate_shapes(7, split)
    assert png_bytes(first.image) == png_bytes(second.image)
    assert [(a.category, a.box) for a in first.annotations] == [(a.category, a.box) for a in second.annotations]
    assert png_bytes(generate_shapes(8, split).image) != png_bytes(first.image)


def test_thirty_categories():
    assert len(CATEGORIES) == 30 and "red circle" in CATEGORIES and "magenta hexagon" in CATEGORIES


@pytest.mark.parametrize("split", sorted(SPLITS))
def test_scenes_respect_the_spec_ranges(split):
    config = SPLITS[split]
    for seed in SEEDS:
        scene = generate_shapes(seed, split)
        width, height = scene.image.size
        assert 160 <= width <= 384 and 160 <= height <= 384
        assert config.min_count <= len(scene.annotations) <= config.max_count
        boxes = np.array([a.box for a in scene.annotations])
        iou = box_iou_matrix(boxes, boxes)
        np.fill_diagonal(iou, 0)
        assert iou.max() <= 0.3
        short = min(width, height)
        occupied = np.zeros((height, width), dtype=bool)
        for annotation in scene.annotations:
            assert annotation.category in config.categories
            box = annotation.box
            assert 0 <= box[0] < box[2] <= width and 0 <= box[1] < box[3] <= height
            longer = max(box[2] - box[0], box[3] - box[1])
            assert config.min_size * short <= longer <= config.max_size * short
            # The box is the tight box of the mask, and masks never overlap.
            assert annotation.mask.tight_box() == box
            full = annotation.mask.full(width, height)
            assert not (occupied & full).any()
            occupied |= full


def test_object_pixels_carry_their_colour_and_background_stays_far():
    for seed in SEEDS:
        scene = generate_shapes(seed)
        pixels = np.asarray(scene.image, dtype=np.float64)
        height, width = pixels.shape[:2]
        near_objects = np.zeros((height, width), dtype=bool)
        for annotation in scene.annotations:
            full = annotation.mask.full(width, height)
            core = full & ~dilate(~full, 1)[1:-1, 1:-1]  # away from anti-aliased edges and blur
            colour = np.median(pixels[core], axis=0)
            expected = np.array(OBJECT_COLOURS[annotation.attributes["colour"]])
            assert np.abs(colour - expected).max() <= 21, (seed, annotation.category)
            near_objects |= dilate(full, 3)[3:-3, 3:-3]
        background = pixels[~near_objects]
        palette = np.array(list(OBJECT_COLOURS.values()), dtype=np.float64)
        distance = np.linalg.norm(background[:, None, :] - palette[None], axis=2).min()
        assert distance >= 70, seed


@pytest.mark.parametrize(
    "split, digest",
    # Pixel digests of seed 3 taken before the "few" split was added (commit 5bedd07): adding a
    # split must not change the scenes of the existing ones.
    [("normal", "d78dada77407dfd3"), ("dense", "1bddb206951c4de9")],
)
def test_existing_splits_keep_their_scenes(split, digest):
    import hashlib

    pixels = np.asarray(generate_shapes(3, split).image).tobytes()
    assert hashlib.sha256(pixels).hexdigest()[:16] == digest


def test_few_and_single_splits_count_objects_and_have_their_own_streams():
    assert {len(generate_shapes(seed, "few").annotations) for seed in SEEDS} == {1, 2}
    assert {len(generate_shapes(seed, "single").annotations) for seed in SEEDS} == {1}
    images = {png_bytes(generate_shapes(5, split).image) for split in ("few", "single", "normal")}
    assert len(images) == 3
