"""The one-to-one greedy matcher of every evaluation protocol (the qualities it matches on, IoU
and the like, are `rexomni_core.geometry`'s).

The matcher is COCO's (pycocotools `COCOeval.evaluateImg`), vectorised with numpy: predictions of
all groups (image × category, or image alone when categories are pooled) are processed rank by
rank, so the Python loop runs once per rank (at most the largest group size), not once per box.
Within one rank every prediction belongs to a different group, so no two of them compete for a
ground-truth (GT) region and one step can decide them all at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Outcome codes of a prediction at one threshold.
FALSE_POSITIVE = 0
TRUE_POSITIVE = 1
IGNORED = -1  # matched a crowd / ignore region: neither TP nor FP (COCO)


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
