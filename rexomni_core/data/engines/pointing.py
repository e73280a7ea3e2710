"""Pointing engine: a mask → one point inside it, as the paper's data engine makes pointing targets.

The point is the centre of the mask's minimum-area rotated rectangle. For a concave mask (a ring,
a C, a star seen edge-on) that centre can fall outside the mask; it is then moved to the nearest
pixel that lies well inside the mask, so a pointing target is never on the background.
Pure numpy: a monotone-chain convex hull and rotating calipers over the hull's edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# How deep (in pixels) a fallback point should sit inside the mask when the mask allows it.
INSIDE_DEPTH = 2


@dataclass(frozen=True)
class RotatedRect:
    centre: tuple[float, float]
    size: tuple[float, float]  # along the rectangle's own axes
    angle: float  # radians, of the first axis

    @property
    def area(self) -> float:
        return self.size[0] * self.size[1]


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Convex hull (counter-clockwise, no repeated end point) of (n, 2) points: Andrew's monotone chain."""
    unique = np.unique(np.asarray(points, dtype=np.float64), axis=0)  # sorted by x, then y
    if len(unique) <= 2:
        return unique

    def half(sequence) -> list:
        chain: list = []
        for p in sequence:
            while len(chain) >= 2:
                (ox, oy), (ax, ay) = chain[-2], chain[-1]
                if (ax - ox) * (p[1] - oy) - (ay - oy) * (p[0] - ox) > 0:
                    break
                chain.pop()
            chain.append(p)
        return chain

    lower, upper = half(unique), half(unique[::-1])
    return np.array(lower[:-1] + upper[:-1])


def min_area_rect(points: np.ndarray) -> RotatedRect:
    """Smallest rotated rectangle holding the points (rotating calipers: one side lies on a hull edge)."""
    hull = convex_hull(points)
    if len(hull) == 1:
        return RotatedRect((float(hull[0, 0]), float(hull[0, 1])), (0.0, 0.0), 0.0)
    edges = np.roll(hull, -1, axis=0) - hull
    lengths = np.linalg.norm(edges, axis=1)
    keep = lengths > 0
    axes = edges[keep] / lengths[keep, None]  # (e, 2) unit edge directions
    normals = np.stack([-axes[:, 1], axes[:, 0]], axis=1)
    along = hull @ axes.T  # (k, e) projections of every hull point on every edge direction
    across = hull @ normals.T
    extents_along = along.max(axis=0) - along.min(axis=0)
    extents_across = across.max(axis=0) - across.min(axis=0)
    best = int(np.argmin(extents_along * extents_across))
    mid_along = (along[:, best].max() + along[:, best].min()) / 2
    mid_across = (across[:, best].max() + across[:, best].min()) / 2
    centre = mid_along * axes[best] + mid_across * normals[best]
    return RotatedRect(
        (float(centre[0]), float(centre[1])),
        (float(extents_along[best]), float(extents_across[best])),
        float(np.arctan2(axes[best, 1], axes[best, 0])),
    )


def erode(bits: np.ndarray) -> np.ndarray:
    """One step of binary erosion with a 3×3 square (pixels outside the array count as empty)."""
    padded = np.pad(bits, 1)
    h, w = bits.shape
    out = np.ones_like(bits)
    for dy in range(3):
        for dx in range(3):
            out &= padded[dy : dy + h, dx : dx + w]
    return out


def _row_ends(bits: np.ndarray) -> np.ndarray:
    """Centres of the first and last pixel of every non-empty row: the same hull, far fewer points."""
    rows = np.flatnonzero(bits.any(axis=1))
    first = bits[rows].argmax(axis=1)
    last = bits.shape[1] - 1 - bits[rows, ::-1].argmax(axis=1)
    xs = np.concatenate([first, last]) + 0.5
    ys = np.concatenate([rows, rows]) + 0.5
    return np.stack([xs, ys], axis=1)


def mask_to_point(bits: np.ndarray) -> tuple[float, float]:
    """The pointing target of a boolean (h, w) mask, in pixel coordinates of that array.

    Pixel (row r, column c) covers [c, c+1) × [r, r+1); the returned point always lies in a
    pixel of the mask.
    """
    bits = np.asarray(bits, dtype=bool)
    if not bits.any():
        raise ValueError("an empty mask has no point")
    x, y = min_area_rect(_row_ends(bits)).centre
    if bits[min(int(y), bits.shape[0] - 1), min(int(x), bits.shape[1] - 1)]:
        return x, y
    deep = bits
    for _ in range(INSIDE_DEPTH):
        deeper = erode(deep)
        if not deeper.any():
            break
        deep = deeper
    rows, cols = np.nonzero(deep)
    nearest = int(np.argmin((cols + 0.5 - x) ** 2 + (rows + 0.5 - y) ** 2))
    return float(cols[nearest] + 0.5), float(rows[nearest] + 0.5)
