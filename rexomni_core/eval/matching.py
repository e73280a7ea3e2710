"""IoU and the one-to-one greedy matcher shared by every evaluator and reward.

The matcher is COCO's (pycocotools `COCOeval.evaluateImg`), vectorised with numpy: predictions of
all groups (image × category, or image alone when categories are pooled) are processed rank by
rank, so the Python loop runs once per rank (at most the largest group size), not once per box.
Within one rank every prediction belongs to a different group, so no two of them compete for a
ground-truth (GT) region and one step can decide them all at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

# Outcome codes of a prediction at one threshold.
FALSE_POSITIVE = 0
TRUE_POSITIVE = 1
IGNORED = -1  # matched a crowd / ignore region: neither TP nor FP (COCO)


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


@dataclass(frozen=True)
class CandidatePairs:
    """Every (prediction, GT) pair of the same group, as aligned index arrays."""

    pred: np.ndarray
    gt: np.ndarray


def same_group_pairs(pred_group: np.ndarray, gt_group: np.ndarray) -> CandidatePairs:
    """All (prediction, GT) index pairs that share a group id, without a Python loop."""
    pred_group = np.asarray(pred_group, dtype=np.int64)
    gt_group = np.asarray(gt_group, dtype=np.int64)
    gt_order = np.argsort(gt_group, kind="stable")
    sorted_groups = gt_group[gt_order]
    lo = np.searchsorted(sorted_groups, pred_group, side="left")
    hi = np.searchsorted(sorted_groups, pred_group, side="right")
    counts = hi - lo
    pred_index = np.repeat(np.arange(len(pred_group)), counts)
    # Offset of each pair inside its prediction's run of GT, then map back to GT indices.
    run_start = np.repeat(np.cumsum(counts) - counts, counts)
    within = np.arange(len(pred_index)) - run_start
    gt_index = gt_order[np.repeat(lo, counts) + within]
    return CandidatePairs(pred=pred_index, gt=gt_index)


def rank_within_group(group: np.ndarray, order_key: np.ndarray) -> np.ndarray:
    """0-based rank of each item inside its group when sorted by `order_key` (stable)."""
    order = np.lexsort((np.arange(len(group)), order_key, group))
    sorted_group = np.asarray(group)[order]
    is_start = np.ones(len(order), dtype=bool)
    is_start[1:] = sorted_group[1:] != sorted_group[:-1]
    start_pos = np.maximum.accumulate(np.where(is_start, np.arange(len(order)), 0))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - start_pos
    return rank


@dataclass(frozen=True)
class MatchResult:
    """Outcome of every prediction at every threshold: (T, P) arrays."""

    outcome: np.ndarray  # TRUE_POSITIVE, FALSE_POSITIVE or IGNORED
    matched_gt: np.ndarray  # index of the GT a TP took, else -1


def greedy_match(
    pairs: CandidatePairs,
    quality: np.ndarray,
    pred_rank: np.ndarray,
    gt_is_crowd: np.ndarray,
    thresholds: Sequence[float],
) -> MatchResult:
    """COCO's greedy one-to-one matcher at every threshold.

    Predictions go in `pred_rank` order within their group. Each takes the still-unmatched
    non-crowd GT with the highest quality ≥ t; on ties the later GT wins (pycocotools keeps
    replacing its candidate on `>=`). With no such GT, a crowd GT with quality ≥ t makes the
    prediction IGNORED (crowd GT can absorb any number of predictions); otherwise it is a FP.
    `pairs` must only hold pairs of the same group; pairs absent from it have quality 0.
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    num_thresholds, num_preds = len(thresholds), len(pred_rank)
    outcome = np.full((num_thresholds, num_preds), FALSE_POSITIVE, dtype=np.int8)
    matched_gt = np.full((num_thresholds, num_preds), -1, dtype=np.int64)
    gt_is_crowd = np.asarray(gt_is_crowd, dtype=bool)
    # Pairs below the lowest threshold can never match: dropping them keeps each step small.
    keep = quality >= thresholds.min()
    pair_pred, pair_gt, pair_quality = pairs.pred[keep], pairs.gt[keep], quality[keep]
    # Sort pairs by (rank, prediction, GT) so one rank is one contiguous slice, a prediction is a
    # contiguous segment and GT ascend inside it (for the later-GT-wins tie rule).
    order = np.lexsort((pair_gt, pair_pred, pred_rank[pair_pred]))
    pair_pred, pair_gt, pair_quality = pair_pred[order], pair_gt[order], pair_quality[order]
    pair_ranks = pred_rank[pair_pred]
    rank_bounds = np.searchsorted(pair_ranks, np.arange(pair_ranks.max() + 2 if len(pair_ranks) else 1))
    gt_taken = np.zeros((num_thresholds, len(gt_is_crowd)), dtype=bool)
    for start, stop in zip(rank_bounds[:-1], rank_bounds[1:]):
        if start < stop:
            _match_one_rank(
                pair_pred[start:stop], pair_gt[start:stop], pair_quality[start:stop],
                gt_is_crowd, thresholds, gt_taken, outcome, matched_gt,
            )
    return MatchResult(outcome=outcome, matched_gt=matched_gt)


def _match_one_rank(
    pred: np.ndarray,
    gt: np.ndarray,
    quality: np.ndarray,
    gt_is_crowd: np.ndarray,
    thresholds: np.ndarray,
    gt_taken: np.ndarray,
    outcome: np.ndarray,
    matched_gt: np.ndarray,
) -> None:
    """Decide the predictions of one rank (one per group) at all thresholds, in place."""
    crowd = gt_is_crowd[gt]
    segment_start = np.flatnonzero(np.r_[True, pred[1:] != pred[:-1]])
    segment_pred = pred[segment_start]
    above = quality[None, :] >= thresholds[:, None]  # (T, n)
    free = above & ~crowd[None, :] & ~gt_taken[:, gt]
    scores = np.where(free, quality[None, :], -1.0)
    best = np.maximum.reduceat(scores, segment_start, axis=1)  # (T, segments)
    segment_of_pair = np.cumsum(np.r_[False, pred[1:] != pred[:-1]])
    is_best = free & (scores == best[:, segment_of_pair])
    position = np.where(is_best, np.arange(len(pred))[None, :], -1)
    winner = np.maximum.reduceat(position, segment_start, axis=1)  # last best = later GT wins
    t_idx, s_idx = np.nonzero(winner >= 0)
    won_gt = gt[winner[t_idx, s_idx]]
    outcome[t_idx, segment_pred[s_idx]] = TRUE_POSITIVE
    matched_gt[t_idx, segment_pred[s_idx]] = won_gt
    gt_taken[t_idx, won_gt] = True
    on_crowd = np.maximum.reduceat((above & crowd[None, :]).astype(np.int8), segment_start, axis=1)
    t_idx, s_idx = np.nonzero((winner < 0) & (on_crowd > 0))
    outcome[t_idx, segment_pred[s_idx]] = IGNORED


def match_in_order(
    quality: np.ndarray, thresholds: Sequence[float], gt_is_crowd: np.ndarray | None = None
) -> MatchResult:
    """The greedy matcher on one group given its (P, G) quality matrix, predictions in row order
    (output order)."""
    quality = np.asarray(quality, dtype=np.float64)
    num_preds, num_gt = quality.shape
    pairs = CandidatePairs(pred=np.repeat(np.arange(num_preds), num_gt), gt=np.tile(np.arange(num_gt), num_preds))
    crowd = np.zeros(num_gt, dtype=bool) if gt_is_crowd is None else np.asarray(gt_is_crowd, dtype=bool)
    return greedy_match(pairs, quality.reshape(-1), np.arange(num_preds), crowd, thresholds)


def one_to_one(quality: np.ndarray) -> list[tuple[int, int, float]]:
    """Pair rows with columns one-to-one, best quality first (greedy), skipping zero quality.

    Used where every pair's quality counts (rewards) rather than a threshold (F1@IoU).
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
