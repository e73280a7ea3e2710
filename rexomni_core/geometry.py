"""Geometry of regions: how well one region stands for another, as pure functions.

The ground floor every evaluator, reward and data engine builds on: box IoU (scalar, matrix,
row-wise pairs, COCO's crowd overlap), polygon rasterising and polygon IoU, box-or-polygon IoU of
text regions, whether a point lies in a region, COCO's object keypoint similarity (OKS), and the
one-to-one pairing of rewards. It imports nothing of the package but the region types, so
`data/` and `train/` reach it without importing the evaluation protocols in `eval/`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .regions import Box, Keypoints, Point, Polygon

# COCO person keypoint sigmas (pycocotools COCOeval Params.kpt_oks_sigmas), in COCO order.
COCO_PERSON_SIGMAS = {
    "nose": 0.026, "left eye": 0.025, "right eye": 0.025, "left ear": 0.035, "right ear": 0.035,
    "left shoulder": 0.079, "right shoulder": 0.079, "left elbow": 0.072, "right elbow": 0.072,
    "left wrist": 0.062, "right wrist": 0.062, "left hip": 0.107, "right hip": 0.107,
    "left knee": 0.087, "right knee": 0.087, "left ankle": 0.089, "right ankle": 0.089,
}


# --------------------------------------------------------------------------- boxes


def _iou_broadcast(a: np.ndarray, b: np.ndarray, crowd: np.ndarray | bool = False) -> np.ndarray:
    """IoU of xyxy boxes `a` and `b` (broadcasting over leading axes).

    Where `crowd` is true the union is replaced by the area of `a`, COCO's overlap with a crowd
    region (the share of the prediction that lies inside it). Degenerate boxes give 0.
    """
    # np.maximum(x, 0), not np.clip(x, 0, None): the same values, without clip's per-call overhead.
    area_a = np.maximum(a[..., 2] - a[..., 0], 0) * np.maximum(a[..., 3] - a[..., 1], 0)
    area_b = np.maximum(b[..., 2] - b[..., 0], 0) * np.maximum(b[..., 3] - b[..., 1], 0)
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = np.maximum(iw, 0) * np.maximum(ih, 0)
    union = np.where(crowd, area_a, area_a + area_b - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def box_iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes: (N, 4) × (M, 4) → (N, M). Degenerate boxes give 0."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    return _iou_broadcast(a[:, None, :], b[None, :, :])


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two xyxy boxes."""
    return float(box_iou_matrix(np.asarray(a), np.asarray(b))[0, 0])


def box_iou_pairs(
    pred_boxes: np.ndarray, gt_boxes: np.ndarray, gt_is_crowd: np.ndarray | None = None
) -> np.ndarray:
    """Row-wise IoU of two aligned (N, 4) xyxy arrays; crowd rows use COCO's crowd overlap."""
    crowd = False if gt_is_crowd is None else np.asarray(gt_is_crowd, dtype=bool)
    return _iou_broadcast(
        np.asarray(pred_boxes, dtype=np.float64), np.asarray(gt_boxes, dtype=np.float64), crowd
    )


# --------------------------------------------------------------------------- polygons


def polygon_mask(rings: Sequence[np.ndarray], origin: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """Rasterise a polygon (one or more (K, 2) rings, e.g. COCO's multi-part segmentations) onto
    a pixel grid: a pixel is inside when its centre is inside a ring (even-odd rule), the parts
    are united. `origin` is the (x, y) of the grid's top-left pixel, `shape` is (h, w)."""
    px, py = np.meshgrid(origin[0] + np.arange(shape[1]) + 0.5, origin[1] + np.arange(shape[0]) + 0.5)
    mask = np.zeros(shape, dtype=bool)
    for ring in rings:
        inside = np.zeros(shape, dtype=bool)
        for ax, ay, bx, by in zip(ring[:, 0], ring[:, 1], np.roll(ring[:, 0], -1), np.roll(ring[:, 1], -1)):
            if ay == by:
                continue  # a horizontal edge never crosses a horizontal ray
            crosses = (ay > py) != (by > py)
            inside ^= crosses & (px < ax + (py - ay) * (bx - ax) / (by - ay))
        mask |= inside
    return mask


def as_rings(polygon: Sequence) -> list[np.ndarray]:
    """A flat [x0, y0, x1, y1, ...] list is one ring; a list of such lists is several."""
    parts = polygon if len(polygon) and isinstance(polygon[0], (list, tuple, np.ndarray)) else [polygon]
    return [np.asarray(part, dtype=np.float64).reshape(-1, 2) for part in parts]


def polygon_iou(polygon_a: Sequence, polygon_b: Sequence) -> float:
    """IoU of two polygons (flat [x0, y0, x1, y1, ...] lists, or lists of them) on the pixel grid.

    Pixel-level like COCO's mask IoU (pycocotools rasterises polygons too); exact enough for
    thresholds 0.5..0.95 on regions more than a few pixels wide.
    """
    rings_a, rings_b = as_rings(polygon_a), as_rings(polygon_b)
    both = np.vstack(rings_a + rings_b)
    lo = np.floor(both.min(axis=0)).astype(int)
    hi = np.ceil(both.max(axis=0)).astype(int)
    shape = (max(int(hi[1] - lo[1]), 1), max(int(hi[0] - lo[0]), 1))
    mask_a = polygon_mask(rings_a, (lo[0], lo[1]), shape)
    mask_b = polygon_mask(rings_b, (lo[0], lo[1]), shape)
    union = np.count_nonzero(mask_a | mask_b)
    return float(np.count_nonzero(mask_a & mask_b) / union) if union else 0.0


def region_iou(a: Box | Polygon, b: Box | Polygon) -> float:
    """IoU of text regions: box IoU when both are boxes, else polygon IoU (a box becomes its
    4-corner polygon)."""
    if isinstance(a, Box) and isinstance(b, Box):
        return box_iou(a.coords, b.coords)
    return polygon_iou(_outline(a), _outline(b))


def _outline(region: Box | Polygon) -> list[float]:
    if isinstance(region, Polygon):
        return list(region.coords)
    x0, y0, x1, y1 = region.coords
    return [x0, y0, x1, y0, x1, y1, x0, y1]


# --------------------------------------------------------------------------- points


def point_of(region: Point | Box) -> tuple[float, float]:
    """The point a prediction stands for: a Point itself, a Box's centre."""
    if isinstance(region, Box):
        x0, y0, x1, y1 = region.coords
        return (x0 + x1) / 2, (y0 + y1) / 2
    return region.coords[0], region.coords[1]


def inside(xy: tuple[float, float], target: Box | Polygon) -> bool:
    """Whether a point lies in a region: the mask (pixel containing the point, as a mask lookup
    would do) for a Polygon, the closed box for a Box."""
    x, y = xy
    if isinstance(target, Polygon):  # coords: one flat ring, or a list of rings (COCO parts)
        return bool(polygon_mask(as_rings(target.coords), (int(np.floor(x)), int(np.floor(y))), (1, 1))[0, 0])
    x0, y0, x1, y1 = target.coords
    return x0 <= x <= x1 and y0 <= y <= y1


# --------------------------------------------------------------------------- keypoints


def oks(prediction: Keypoints, target: Keypoints, area: float, sigmas: Mapping[str, float] = COCO_PERSON_SIGMAS) -> float:
    """COCO's OKS: mean over the GT's labelled keypoints of exp(-d² / (2 · area · (2σ)²)).

    A keypoint the prediction leaves out or calls "unvisible" contributes 0. A GT with no labelled
    keypoint has OKS 0 (COCO would fall back to a distance to its box; such GT are rare in our data).
    """
    terms = []
    for name, xy in target.coords.items():
        if xy is None or name not in sigmas:
            continue
        guess = prediction.coords.get(name)
        if guess is None:
            terms.append(0.0)
            continue
        squared = (guess[0] - xy[0]) ** 2 + (guess[1] - xy[1]) ** 2
        terms.append(float(np.exp(-squared / ((2 * sigmas[name]) ** 2) / (area + np.spacing(1)) / 2)))
    return float(np.mean(terms)) if terms else 0.0


def box_area(region: Keypoints) -> float:
    """The scale OKS uses when no segment area is known: the GT box area."""
    if region.box is None:
        raise ValueError(f"keypoint instance {region.instance_id or region.phrase!r} has no box for its OKS scale")
    x0, y0, x1, y1 = region.box
    return max(x1 - x0, 0.0) * max(y1 - y0, 0.0)


# --------------------------------------------------------------------------- pairing


def one_to_one(quality: np.ndarray) -> list[tuple[int, int, float]]:
    """Pair rows with columns one-to-one, best quality first (greedy), skipping zero quality.

    Used where every pair's quality counts (rewards) rather than a threshold (F1@IoU, whose
    matcher is COCO's, in eval/matching.py).
    """
    quality = np.asarray(quality, dtype=np.float64)
    if quality.size == 0:
        return []
    rows, cols = np.nonzero(quality > 0)
    order = np.argsort(-quality[rows, cols], kind="stable")
    row_used, col_used, pairs = set(), set(), []
    for r, c in zip(rows[order], cols[order]):
        if r not in row_used and c not in col_used:
            row_used.add(r)
            col_used.add(c)
            pairs.append((int(r), int(c), float(quality[r, c])))
    return pairs
