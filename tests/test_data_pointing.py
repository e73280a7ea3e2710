"""Mask → point: the centre of the minimum-area rotated rectangle, always inside the mask."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from rexomni_core.data.engines.pointing import convex_hull, mask_to_point, min_area_rect


def test_hull_of_a_square_with_inner_points():
    points = np.array([[0, 0], [4, 0], [4, 4], [0, 4], [2, 2], [1, 3], [2, 0]])
    hull = convex_hull(points)
    assert sorted(map(tuple, hull.tolist())) == [(0, 0), (0, 4), (4, 0), (4, 4)]


def test_min_area_rect_of_a_rotated_rectangle():
    angle = math.radians(30)
    axis, normal = np.array([math.cos(angle), math.sin(angle)]), np.array([-math.sin(angle), math.cos(angle)])
    corners = np.array([a * 10 * axis + b * 4 * normal for a in (-1, 1) for b in (-1, 1)]) + [50, 60]
    rect = min_area_rect(corners)
    assert np.allclose(rect.centre, (50, 60))
    assert np.isclose(rect.area, 20 * 8)
    assert np.allclose(sorted(rect.size), (8, 20))


def test_convex_mask_gets_its_rectangle_centre():
    bits = np.zeros((40, 60), dtype=bool)
    bits[10:20, 5:45] = True
    assert mask_to_point(bits) == (25.0, 15.0)


def test_ring_point_moves_into_the_ring():
    yy, xx = np.mgrid[:50, :50]
    radius = np.hypot(xx - 24.5, yy - 24.5)
    ring = (radius > 15) & (radius < 22)
    x, y = mask_to_point(ring)
    assert ring[int(y), int(x)]


def _polygon_mask(vertices, width=64, height=64):
    canvas = Image.new("1", (width, height), 0)
    ImageDraw.Draw(canvas).polygon(vertices, fill=1)
    return np.asarray(canvas, dtype=bool)


# Star-shaped polygons with random radii are concave and often thin: the hard case for the
# rectangle's centre.
star_polygons = st.lists(st.floats(min_value=1.0, max_value=30.0), min_size=3, max_size=14).flatmap(
    lambda radii: st.tuples(st.just(radii), st.floats(0, 2 * math.pi), st.integers(20, 44), st.integers(20, 44))
)


@settings(max_examples=200, deadline=None)
@given(star_polygons)
def test_point_is_always_inside_random_concave_masks(polygon):
    radii, rotation, cx, cy = polygon
    angles = rotation + 2 * math.pi * np.arange(len(radii)) / len(radii)
    vertices = [(cx + r * math.cos(a), cy + r * math.sin(a)) for r, a in zip(radii, angles)]
    bits = _polygon_mask(vertices)
    if not bits.any():
        return
    x, y = mask_to_point(bits)
    assert bits[int(y), int(x)]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(1, 14), st.integers(1, 14)), min_size=1, max_size=5))
def test_point_is_inside_unions_of_rectangles(rectangles):
    bits = np.zeros((64, 64), dtype=bool)
    for x, y, w, h in rectangles:
        bits[y : y + h, x : x + w] = True
    x, y = mask_to_point(bits)
    assert bits[int(y), int(x)]
