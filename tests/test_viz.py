import numpy as np
from PIL import Image

from rexomni_core import Box, Keypoints, Point, Polygon, Prediction
from rexomni_core.tasks import KEYPOINT_SCHEMAS
from rexomni_core.viz import PALETTE, annotate, phrase_color_index


def _prediction(regions):
    return Prediction(regions=regions, raw_text="", problems=[], width=200, height=100,
                      phrases=list(dict.fromkeys(r.phrase for r in regions)))


def _rgb(phrase):
    return PALETTE.by_idx(phrase_color_index(phrase)).as_rgb()


def test_box_outline_is_drawn_in_the_phrase_colour_and_input_is_untouched():
    image = Image.new("RGB", (200, 100), (255, 255, 255))
    out = annotate(image, _prediction([Box("cat", [20, 30, 120, 90])]), show_labels=False)
    pixels = np.asarray(out)
    assert tuple(pixels[60, 20]) == _rgb("cat")  # left edge
    assert tuple(pixels[60, 70]) == (255, 255, 255)  # inside stays clear
    assert np.asarray(image).min() == 255  # the caller's image is not drawn on


def test_colours_are_stable_per_phrase_across_predictions():
    assert phrase_color_index("red circle") == phrase_color_index("red circle")
    image = Image.new("RGB", (200, 100), (255, 255, 255))
    alone = np.asarray(annotate(image, _prediction([Box("dog", [10, 10, 50, 50])]), show_labels=False))
    mixed = np.asarray(annotate(image, _prediction([Box("cat", [100, 10, 150, 50]), Box("dog", [10, 10, 50, 50])]), show_labels=False))
    assert tuple(alone[30, 10]) == tuple(mixed[30, 10]) == _rgb("dog")


def test_labels_points_polygons_and_skeletons_are_drawn():
    image = Image.new("RGB", (200, 100), (255, 255, 255))
    blank = np.asarray(image)
    person = Keypoints("person", {name: [100 + i, 20 + 4 * i] for i, name in enumerate(KEYPOINT_SCHEMAS["person"])}, box=[90, 10, 130, 95])
    for regions in (
        [Box("cat", [20, 30, 120, 90], text="CAT", score=0.8)],
        [Point("cat", [50, 50])],
        [Polygon("EXIT", [10, 10, 90, 12, 88, 40, 12, 38], text="EXIT")],
        [person],
    ):
        drawn = np.asarray(annotate(image, _prediction(regions)))
        assert (drawn != blank).any(axis=2).sum() > 50, regions[0].kind
    point = np.asarray(annotate(image, _prediction([Point("cat", [50, 50])]), show_labels=False))
    assert tuple(point[50, 50]) == _rgb("cat")


def test_min_score_hides_low_confidence_regions():
    image = Image.new("RGB", (200, 100), (255, 255, 255))
    pred = _prediction([Box("cat", [20, 30, 120, 90], score=0.2)])
    assert np.asarray(annotate(image, pred, min_score=0.5)).min() == 255
    assert np.asarray(annotate(image, pred, min_score=0.1)).min() < 255


def test_numpy_and_rgba_inputs_are_accepted():
    rgba = np.zeros((100, 200, 4), dtype=np.uint8)
    out = annotate(rgba, _prediction([Box("cat", [20, 30, 120, 90])]))
    assert out.mode == "RGB" and out.size == (200, 100)
