import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rexomni_core.coords import (
    MAX_BIN,
    NUM_BINS,
    bins_in,
    dequantize,
    quantize,
    roundtrip_xy,
    tokens_text,
)
from rexomni_core.geometry import box_iou


def test_quantize_follows_the_spec_formula():
    # bin = floor(clamp(x / W, 0, 1) * 999)
    assert quantize(0, 640) == 0
    assert quantize(640, 640) == 999
    assert quantize(320, 640) == 499  # 0.5 * 999 = 499.5 -> 499
    assert quantize(-5, 640) == 0 and quantize(1e6, 640) == 999


def test_official_decoder_is_the_released_formula():
    assert dequantize(12, 1280, "official") == 12 / 999 * 1280
    assert dequantize(999, 720, "official") == 720.0


def test_center_decoder_is_the_bin_centre_clamped_to_the_image():
    assert dequantize(12, 1280, "center") == pytest.approx(12.5 / 999 * 1280)
    assert dequantize(999, 720, "center") == 720.0  # 999.5/999 would leave the image


def test_unknown_decoder_is_refused():
    with pytest.raises(ValueError, match="decode"):
        dequantize(1, 10, "floor")


@given(st.integers(0, MAX_BIN), st.floats(1, 10_000))
def test_center_decoding_reencodes_to_the_same_bin(bin_index, size):
    assert quantize(dequantize(bin_index, size, "center"), size) == bin_index


@given(st.floats(0, 1), st.floats(1, 10_000))
def test_both_decoders_stay_within_one_bin_of_the_pixel(fraction, size):
    x = fraction * size
    for decode in ("center", "official"):
        assert abs(dequantize(quantize(x, size), size, decode) - x) <= size / MAX_BIN + 1e-9


def test_tokens_text_writes_coordinate_tokens_and_refuses_out_of_range():
    assert tokens_text([0, 17, 999]) == "<0><17><999>"
    with pytest.raises(ValueError, match="0..999"):
        tokens_text([1000])


# COCO's size mix: about 41 % small (side < 32 px), 34 % medium (32-96), 25 % large (> 96).
_COCO_SIZE_MIX = ((0.41, 8, 32), (0.34, 32, 96), (0.25, 96, 300))


def _coco_like_boxes(rng: random.Random, n: int, width: int, height: int, small_only: bool):
    boxes = []
    for _ in range(n):
        if small_only:
            low, high = 8, 32
        else:
            _, low, high = rng.choices(_COCO_SIZE_MIX, weights=[m[0] for m in _COCO_SIZE_MIX])[0]
        side = rng.uniform(low, high)
        w, h = side * rng.uniform(0.7, 1.4), side * rng.uniform(0.7, 1.4)
        x0, y0 = rng.uniform(0, width - w), rng.uniform(0, height - h)
        boxes.append([x0, y0, x0 + w, y0 + h])
    return boxes


def _ceiling(boxes, width, height, decode, threshold=0.95):
    hits = sum(box_iou(b, roundtrip_xy(b, width, height, decode)) >= threshold for b in boxes)
    return hits / len(boxes)


def test_iou_ceiling_of_both_decoders_on_random_boxes():
    """METRICS.md: with /999 decoding a perfect model reaches IoU >= 0.95 on only about 77 % of
    COCO-like boxes (37 % of small ones), against about 93 % when decoding bin centres."""
    rng = random.Random(0)
    width, height = 640, 480
    mixed = _coco_like_boxes(rng, 5000, width, height, small_only=False)
    small = _coco_like_boxes(rng, 5000, width, height, small_only=True)
    official_all = _ceiling(mixed, width, height, "official")
    center_all = _ceiling(mixed, width, height, "center")
    official_small = _ceiling(small, width, height, "official")
    center_small = _ceiling(small, width, height, "center")
    print(f"IoU>=0.95 ceiling: official {official_all:.3f} (small {official_small:.3f}), "
          f"center {center_all:.3f} (small {center_small:.3f})")
    assert official_all == pytest.approx(0.77, abs=0.06)
    # COCO's small objects skew smaller than a uniform 8-32 px side, so its 37 % is lower
    # than what this distribution gives; the gap between the decoders is the point.
    assert official_small < 0.5
    assert center_all == pytest.approx(0.93, abs=0.05)
    assert center_small > official_small + 0.3


def test_bins_in_reads_numbers_too_long_for_a_bin_as_out_of_range_without_raising():
    assert bins_in("<0><7><007><999>") == [0, 7, 7, 999]
    assert bins_in("<1000><12345>") == [NUM_BINS, NUM_BINS]
    long_number = "1" * 5000  # Python refuses int() of a string of over 4300 digits
    assert bins_in(f"<5><{long_number}><{'0' * 5000}6>") == [5, NUM_BINS, 6]
