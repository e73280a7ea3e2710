"""F1 at IoU thresholds 0.50:0.05:0.95 for detections without (or with) scores.

Two protocols (shared/spec/METRICS.md):
- `sound` (default): per-category TP/FP/GT counts, macro (headline) and micro means.
- `paper`: the released Rex-Omni evaluator (its converter's positive-only filter, score 0.2,
  fastevaluate's COCO accumulate, then `safe_mean`), each documented quirk a named function below.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from rexomni_core.eval.inputs import Detections, GroundTruth
from rexomni_core.eval.matching import (
    FALSE_POSITIVE,
    TRUE_POSITIVE,
    MatchResult,
    greedy_match,
    match_in_order,
    rank_within_group,
    same_group_pairs,
)
from rexomni_core.geometry import box_iou_pairs, polygon_iou

from ..errors import InputError

# Written as literals (not np.linspace, whose 0.6000000000000001 differs) like the released
# evaluator's params, so a box exactly at a threshold is decided the same way.
IOU_THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
PROTOCOLS = ("sound", "paper")


@dataclass(frozen=True)
class PRF:
    precision: float
    recall: float
    f1: float


def f1_score(precision: float, recall: float) -> float:
    """Harmonic mean; 0 when both are 0."""
    total = precision + recall
    return 2 * precision * recall / total if total > 0 else 0.0


def prf(precision: float, recall: float) -> PRF:
    return PRF(float(precision), float(recall), float(f1_score(precision, recall)))


@dataclass(frozen=True)
class F1Report:
    """The three headline points (IoU 0.5, 0.95 and the mean over thresholds, "mIoU")."""

    protocol: str
    at_50: PRF
    at_95: PRF
    at_miou: PRF
    micro: dict[str, PRF] | None  # same three points from pooled counts (sound protocol only)
    per_threshold: list[PRF] | None  # macro P/R/F1 at each IoU_THRESHOLDS value (sound only)
    num_predictions: int  # predictions scored
    num_ground_truth: int  # non-crowd GT regions
    num_left_out: dict[str, int]  # why predictions were not scored, and how many

    def to_dict(self) -> dict:
        """Flat JSON-ready mapping: `f1@0.5`, `precision@0.5`, ..., `micro_f1@0.5`, ..."""
        out: dict = {"protocol": self.protocol}
        for prefix, points in (("", self.headline), ("micro_", self.micro or {})):
            for point, value in points.items():
                out[f"{prefix}f1@{point}"] = value.f1
                out[f"{prefix}precision@{point}"] = value.precision
                out[f"{prefix}recall@{point}"] = value.recall
        if self.per_threshold is not None:
            out["per_threshold"] = {
                f"{t:.2f}": {"precision": v.precision, "recall": v.recall, "f1": v.f1}
                for t, v in zip(IOU_THRESHOLDS, self.per_threshold)
            }
        out["num_predictions"] = self.num_predictions
        out["num_ground_truth"] = self.num_ground_truth
        out["num_left_out"] = dict(self.num_left_out)
        return out

    @property
    def headline(self) -> dict[str, PRF]:
        return {"0.5": self.at_50, "0.95": self.at_95, "miou": self.at_miou}


# ---------------------------------------------------------------------------------------------
# Matching (both protocols)


def pair_quality(gt: GroundTruth, dets: Detections, pred_index: np.ndarray, gt_index: np.ndarray) -> np.ndarray:
    """IoU of each candidate pair: boxes, or polygons when both sides carry them."""
    if dets.polygons is not None and gt.polygons is not None:
        return np.array(
            [polygon_iou(dets.polygons[p], gt.polygons[g]) for p, g in zip(pred_index, gt_index)],
            dtype=np.float64,
        )
    return box_iou_pairs(dets.boxes[pred_index], gt.boxes[gt_index], gt.is_crowd[gt_index])


def match_detections(
    gt: GroundTruth,
    dets: Detections,
    order_key: np.ndarray,
    pool_categories: bool = False,
    thresholds: Sequence[float] = IOU_THRESHOLDS,
) -> MatchResult:
    """COCO greedy matching per image and category (per image alone with `pool_categories`),
    predictions taken by ascending `order_key` (ties: output order)."""
    num_k = 1 if pool_categories else gt.num_categories
    gt_group = gt.image_index * num_k + (0 if pool_categories else gt.category_index)
    pred_group = dets.image_index * num_k + (0 if pool_categories else dets.category_index)
    pairs = same_group_pairs(pred_group, gt_group)
    quality = pair_quality(gt, dets, pairs.pred, pairs.gt)
    rank = rank_within_group(pred_group, order_key)
    return greedy_match(pairs, quality, rank, gt.is_crowd, thresholds)


def score_order(dets: Detections) -> np.ndarray:
    """Highest score first; output order when there are no scores (as with the released model)."""
    if dets.scores is None:
        return np.arange(len(dets), dtype=np.float64)
    return -dets.scores


# ---------------------------------------------------------------------------------------------
# Sound protocol


@dataclass(frozen=True)
class CategoryCounts:
    """(T, K) true and false positives, (K,) non-crowd GT."""

    tp: np.ndarray
    fp: np.ndarray
    gt: np.ndarray


def category_counts(
    match: MatchResult, pred_category: np.ndarray, gt: GroundTruth, num_k: int, gt_category: np.ndarray
) -> CategoryCounts:
    def per_category(flags: np.ndarray) -> np.ndarray:
        return np.stack([np.bincount(pred_category, weights=row, minlength=num_k) for row in flags]).astype(np.float64)

    return CategoryCounts(
        tp=per_category(match.outcome == TRUE_POSITIVE),
        fp=per_category(match.outcome == FALSE_POSITIVE),
        gt=np.bincount(gt_category[~gt.is_crowd], minlength=num_k).astype(np.float64),
    )


def _mean_where_defined(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Row means of numerator/denominator over columns with denominator > 0 (0 if none)."""
    defined = denominator > 0
    ratio = np.divide(numerator, denominator, out=np.zeros_like(numerator), where=defined)
    count = defined.sum(axis=-1)
    return np.divide(ratio.sum(axis=-1), count, out=np.zeros(ratio.shape[:-1]), where=count > 0)


def points_from_curves(precision: np.ndarray, recall: np.ndarray) -> dict[str, PRF]:
    """F1@0.5, F1@0.95 and F1@mIoU (F1 of the threshold-mean P and R) from (T,) curves."""
    return {
        "0.5": prf(precision[0], recall[0]),
        "0.95": prf(precision[-1], recall[-1]),
        "miou": prf(precision.mean(), recall.mean()),
    }


def sound_from_counts(counts: CategoryCounts, protocol: str, num_predictions: int, left_out: dict[str, int]) -> F1Report:
    """Macro (headline) and micro P/R/F1 from per-category counts (METRICS.md, sound)."""
    gt_per_threshold = np.broadcast_to(counts.gt, counts.tp.shape)
    macro_p = _mean_where_defined(counts.tp, counts.tp + counts.fp)
    macro_r = _mean_where_defined(counts.tp, gt_per_threshold)
    total_tp, total_fp, total_gt = counts.tp.sum(axis=1), counts.fp.sum(axis=1), counts.gt.sum()
    micro_p = np.divide(total_tp, total_tp + total_fp, out=np.zeros_like(total_tp), where=total_tp + total_fp > 0)
    micro_r = total_tp / total_gt if total_gt > 0 else np.zeros_like(total_tp)
    macro = points_from_curves(macro_p, macro_r)
    return F1Report(
        protocol=protocol,
        at_50=macro["0.5"],
        at_95=macro["0.95"],
        at_miou=macro["miou"],
        micro=points_from_curves(micro_p, micro_r),
        per_threshold=[prf(p, r) for p, r in zip(macro_p, macro_r)],
        num_predictions=num_predictions,
        num_ground_truth=int(total_gt),
        num_left_out=left_out,
    )


def bad_record_counts(dets: Detections) -> dict[str, int]:
    """How many bad prediction records lenient reading left out (none: empty)."""
    bad = dets.skipped.counts["bad records"]
    return {"bad_records": bad} if bad else {}


def sound_f1(gt: GroundTruth, dets: Detections, pool_categories: bool = False) -> F1Report:
    """The project's default protocol. A prediction of a category absent from the image is a FP.
    `pool_categories` scores all categories as one (visual prompting)."""
    match = match_detections(gt, dets, score_order(dets), pool_categories)
    if pool_categories:
        num_k, pred_k, gt_k = 1, np.zeros(len(dets), dtype=np.int64), np.zeros(len(gt.is_crowd), dtype=np.int64)
    else:
        num_k, pred_k, gt_k = gt.num_categories, dets.category_index, gt.category_index
    counts = category_counts(match, pred_k, gt, num_k, gt_k)
    return sound_from_counts(counts, "sound", len(dets), bad_record_counts(dets))


@dataclass(frozen=True)
class CategoryF1:
    """One category's detection scores (sound protocol): counts and P/R/F1 at `iou_threshold`,
    and F1@mIoU (of the mean P and R over IOU_THRESHOLDS, as the headline's)."""

    iou_threshold: float
    objects: int  # non-crowd ground truth
    true_positives: int  # at iou_threshold
    false_positives: int  # at iou_threshold (predictions a crowd region absorbs are neither)
    at_threshold: PRF
    at_miou: PRF

    def to_dict(self) -> dict:
        """JSON-ready: `objects`, `true_positives`, `false_positives`, `precision@0.5`, ..., `f1@miou`."""
        point = f"{self.iou_threshold:g}"
        return {
            "objects": self.objects, "true_positives": self.true_positives, "false_positives": self.false_positives,
            f"precision@{point}": self.at_threshold.precision, f"recall@{point}": self.at_threshold.recall,
            f"f1@{point}": self.at_threshold.f1, "f1@miou": self.at_miou.f1,
        }


def per_category_f1(gt: GroundTruth, dets: Detections, iou_threshold: float = 0.5) -> dict[str, CategoryF1]:
    """Each category's scores, for every category with ground truth or predictions, matched as
    `sound_f1` matches them (per image and category, highest score first, else output order)."""
    if not 0 < iou_threshold <= 1:
        raise InputError(f"the IoU threshold must be in (0, 1], got {iou_threshold!r}")
    # Row 0 is the threshold asked; the rest give F1@mIoU.
    match = match_detections(gt, dets, score_order(dets), thresholds=(iou_threshold, *IOU_THRESHOLDS))
    counts = category_counts(match, dets.category_index, gt, gt.num_categories, gt.category_index)
    scores = {}
    for k, name in enumerate(gt.category_names):
        tp, fp, objects = counts.tp[:, k], counts.fp[:, k], counts.gt[k]
        if objects == 0 and not fp.any():
            continue
        precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=tp + fp > 0)
        recall = tp / objects if objects else np.zeros_like(tp)
        scores[name] = CategoryF1(
            iou_threshold, int(objects), int(tp[0]), int(fp[0]),
            at_threshold=prf(precision[0], recall[0]), at_miou=prf(precision[1:].mean(), recall[1:].mean()),
        )
    return scores


def f1_from_quality_groups(
    groups: Iterable[tuple[Hashable, np.ndarray]], thresholds: Sequence[float] = IOU_THRESHOLDS
) -> F1Report:
    """Sound-protocol F1 for tasks scored one small group at a time (points, OCR, keypoints).

    Each group is (category, 2-D (P, G) quality array) with rows in output order; it has G GT.
    With one threshold, the three headline points coincide.
    """
    category_rows: dict[Hashable, int] = {}
    tp, fp, num_gt = [], [], []
    for category, quality in groups:
        row = category_rows.setdefault(category, len(category_rows))
        if row == len(tp):
            tp.append(np.zeros(len(thresholds)))
            fp.append(np.zeros(len(thresholds)))
            num_gt.append(0)
        outcome = match_in_order(quality, thresholds).outcome
        tp[row] += (outcome == TRUE_POSITIVE).sum(axis=1)
        fp[row] += (outcome == FALSE_POSITIVE).sum(axis=1)
        num_gt[row] += quality.shape[1]
    num_t = len(thresholds)
    counts = CategoryCounts(
        tp=np.array(tp).T.reshape(num_t, -1),
        fp=np.array(fp).T.reshape(num_t, -1),
        gt=np.array(num_gt, dtype=np.float64),
    )
    return sound_from_counts(counts, "sound", int(counts.tp[0].sum() + counts.fp[0].sum()), {})


# ---------------------------------------------------------------------------------------------
# Paper protocol: each quirk of the released evaluator is one function.

COCO_MAX_DETS = 100
RECALL_STEPS = tuple(i * 0.01 for i in range(101))  # built as i * 0.01, like fastevaluate's params
COCO_EPS = 2.220446049250313e-16  # np.spacing(1), added to TP + FP in precision


def quirk1_drop_absent_categories(gt: GroundTruth, dets: Detections) -> Detections:
    """Quirk 1: the converter (`--positive_only`) keeps a prediction only when its category has
    an annotation in the image (crowd included). Images with no annotation at all are not
    filtered (the converter only filters images it finds in its annotation index)."""
    num_k = gt.num_categories
    present = np.zeros(len(gt.image_ids) * num_k, dtype=bool)
    present[gt.image_index * num_k + gt.category_index] = True
    annotated_image = np.zeros(len(gt.image_ids), dtype=bool)
    annotated_image[gt.image_index] = True
    keep = present[dets.image_index * num_k + dets.category_index] | ~annotated_image[dets.image_index]
    return dets.subset(keep)


def quirk2_constant_score_order(gt: GroundTruth, dets: Detections) -> np.ndarray:
    """Quirk 2 (order): every prediction gets score 0.2, so the stable score sort leaves them in
    the order the evaluator reads them: images in the GT file's order, then output order."""
    return dets.image_index.astype(np.float64) * (len(dets) + 1) + np.arange(len(dets))


def quirk2_cap_per_image_category(dets: Detections, order_key: np.ndarray, max_dets: int | None) -> np.ndarray:
    """Quirk 2 (cap): COCO mode keeps the first 100 predictions per image and category (LVIS
    mode: `max_dets=None`, no cap). Returns the indices kept."""
    if max_dets is None:
        return np.arange(len(dets))
    group = dets.image_index * (dets.category_index.max(initial=0) + 1) + dets.category_index
    return np.flatnonzero(rank_within_group(group, order_key) < max_dets)


def quirk3_precision_at_last_recall_step(outcomes: np.ndarray, num_gt: int) -> np.ndarray:
    """Quirk 3 (reading): per threshold, COCO's interpolated precision at the highest 1 % recall
    step strictly below the final recall, instead of TP / (TP + FP).

    `outcomes` is (T, n) in evaluation order. NaN where there is no such step (no TP, no GT).
    """
    result = np.full(outcomes.shape[0], np.nan)
    if num_gt == 0 or outcomes.shape[1] == 0:
        return result
    tp = np.cumsum(outcomes == TRUE_POSITIVE, axis=1, dtype=np.float64)
    fp = np.cumsum(outcomes == FALSE_POSITIVE, axis=1, dtype=np.float64)
    steps = np.asarray(RECALL_STEPS)
    for t in range(outcomes.shape[0]):
        recall = tp[t] / num_gt
        precision = tp[t] / (fp[t] + tp[t] + COCO_EPS)
        interpolated = np.maximum.accumulate(precision[::-1])[::-1]
        below_final = steps[steps < recall[-1]]
        if len(below_final):
            # fastevaluate reads the first detection whose recall is strictly above the step.
            result[t] = interpolated[np.searchsorted(recall, below_final[-1], side="right")]
    return result


def quirk3_final_recall(outcomes: np.ndarray, num_gt: int) -> np.ndarray:
    """COCO's recall per threshold: -1 when the category has no GT (a sentinel the category
    mean then drops), 0 when it has no prediction."""
    if num_gt == 0:
        return np.full(outcomes.shape[0], -1.0)
    if outcomes.shape[1] == 0:
        return np.zeros(outcomes.shape[0])
    return np.count_nonzero(outcomes == TRUE_POSITIVE, axis=1) / num_gt


def quirk3_carry_over_previous_category(values: np.ndarray) -> np.ndarray:
    """Quirk 3 (carry, per-threshold vectors): a category with no reading repeats the previous
    category's value (fastevaluate's variable lives outside its category loop). The first
    category has no predecessor; its (uninitialised in C++) value is taken as 0, which quirk 4
    then drops."""
    carried = np.empty_like(values)
    previous = 0.0
    for k, value in enumerate(values):
        previous = previous if np.isnan(value) else value
        carried[k] = previous
    return carried


def quirk3_carry_over_previous_threshold(values: np.ndarray) -> np.ndarray:
    """Quirk 3 (carry, the averaged vector): (T, K) readings; a missing one repeats the value read
    at the previous threshold, and at the first threshold the last value of the previous
    category (the same never-reset variable), 0 before any. Returns the (K,) threshold means."""
    flat = quirk3_carry_over_previous_category(values.T.reshape(-1))
    return flat.reshape(values.shape[1], values.shape[0]).mean(axis=1)


def quirk4_mean_of_positive(values: np.ndarray) -> float:
    """Quirk 4: the category mean drops every value <= 0 (the -1 sentinels, and real zeros)."""
    positive = values[values > 0]
    return float(positive.mean()) if len(positive) else 0.0


def paper_f1(gt: GroundTruth, dets: Detections, max_dets: int | None = COCO_MAX_DETS) -> F1Report:
    """The released evaluator's numbers (fastevaluate, COCO mode, threshold 0)."""
    filtered = quirk1_drop_absent_categories(gt, dets)
    order_key = quirk2_constant_score_order(gt, filtered)
    kept = quirk2_cap_per_image_category(filtered, order_key, max_dets)
    scored, order_key = filtered.subset(kept), order_key[kept]
    match = match_detections(gt, scored, order_key)
    evaluation_order = np.argsort(order_key, kind="stable")
    num_gt = np.bincount(gt.category_index[~gt.is_crowd], minlength=gt.num_categories)
    precision = np.empty((len(IOU_THRESHOLDS), gt.num_categories))
    recall = np.empty_like(precision)
    for k in range(gt.num_categories):
        in_k = evaluation_order[scored.category_index[evaluation_order] == k]
        outcomes = match.outcome[:, in_k]
        precision[:, k] = quirk3_precision_at_last_recall_step(outcomes, int(num_gt[k]))
        recall[:, k] = quirk3_final_recall(outcomes, int(num_gt[k]))
    mean: Callable[[np.ndarray], float] = quirk4_mean_of_positive
    # Quirk 5: F1 of the category-mean P and R.
    return F1Report(
        protocol="paper",
        at_50=prf(mean(quirk3_carry_over_previous_category(precision[0])), mean(recall[0])),
        at_95=prf(mean(quirk3_carry_over_previous_category(precision[-1])), mean(recall[-1])),
        at_miou=prf(mean(quirk3_carry_over_previous_threshold(precision)), mean(recall.mean(axis=0))),
        micro=None,
        per_threshold=None,
        num_predictions=len(scored),
        num_ground_truth=int(num_gt.sum()),
        num_left_out={
            **bad_record_counts(dets),
            "category_absent_from_image": len(dets) - len(filtered),
            "over_100_per_image_category": len(filtered) - len(scored),
        },
    )


def evaluate_f1(gt: GroundTruth, dets: Detections, protocol: str = "sound") -> F1Report:
    if protocol == "sound":
        return sound_f1(gt, dets)
    if protocol == "paper":
        return paper_f1(gt, dets)
    raise InputError(f"unknown protocol {protocol!r} (expected one of {', '.join(PROTOCOLS)})")


def counting_mae(gt: GroundTruth, dets: Detections) -> float:
    """Visual prompting's counting error: mean over GT images of |#predictions − #non-crowd GT|."""
    num_images = len(gt.image_ids)
    expected = np.bincount(gt.image_index[~gt.is_crowd], minlength=num_images)
    predicted = np.bincount(dets.image_index, minlength=num_images)
    return float(np.abs(predicted - expected).mean()) if num_images else 0.0
