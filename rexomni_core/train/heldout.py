"""A quick held-out evaluation of a model on synthetic conversations (used while training nano).

Micro-averaged F1 (totals over every phrase and image) with the greedy one-to-one matcher of
METRICS.md (predictions in output order take the unmatched GT box of their phrase with the
highest IoU ≥ t). Pointing is asked on the detection scenes: a point is a TP inside an unmatched
GT box of its phrase (METRICS.md's rule where there is no mask). The project's evaluators
(rexomni_core.eval) give the full protocol, macro averages included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..coords import bins_in, dequantize_xy
from ..eval.matching import box_iou_matrix

THRESHOLDS = np.round(np.arange(0.5, 0.96, 0.05), 2)


@dataclass
class Counts:
    tp: np.ndarray = field(default_factory=lambda: np.zeros(len(THRESHOLDS)))
    predicted: int = 0
    truth: int = 0

    def f1(self, index: int | None = None) -> float:
        """F1 at one threshold index, or F1@mIoU (F1 of mean precision and mean recall)."""
        precision = self.tp / max(self.predicted, 1)
        recall = self.tp / max(self.truth, 1)
        p, r = (precision.mean(), recall.mean()) if index is None else (precision[index], recall[index])
        return float(2 * p * r / (p + r)) if p + r > 0 else 0.0


def match_boxes(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """TP count at every threshold for one phrase of one image (greedy, output order)."""
    tp = np.zeros(len(THRESHOLDS))
    if len(predicted) == 0 or len(truth) == 0:
        return tp
    iou = box_iou_matrix(predicted, truth)
    for k, threshold in enumerate(THRESHOLDS):
        free = np.ones(len(truth), dtype=bool)
        for row in iou:
            candidates = np.where(free & (row >= threshold), row, -1.0)
            best = int(candidates.argmax())
            if candidates[best] >= 0:
                free[best] = False
                tp[k] += 1
    return tp


def match_points(points: np.ndarray, truth: np.ndarray) -> int:
    """TPs of points against GT boxes (a point takes the first unmatched box containing it)."""
    free = np.ones(len(truth), dtype=bool)
    hits = 0
    for x, y in points:
        inside = free & (truth[:, 0] <= x) & (x <= truth[:, 2]) & (truth[:, 1] <= y) & (y <= truth[:, 3])
        if inside.any():
            free[int(inside.argmax())] = False
            hits += 1
    return hits


def _add(counts: Counts, prediction, truth_regions, phrases: Sequence[str], points: bool) -> None:
    for phrase in phrases:
        truth = np.array([r.bounds() for r in truth_regions if r.phrase == phrase]).reshape(-1, 4)
        mine = [r for r in prediction.regions if r.phrase == phrase]
        counts.predicted += len(mine)
        counts.truth += len(truth)
        if points:
            counts.tp += match_points(np.array([r.coords for r in mine]).reshape(-1, 2), truth)
        else:
            counts.tp += match_boxes(np.array([r.coords for r in mine]).reshape(-1, 4), truth)
    # Phrases the model invented (not asked) are false positives too.
    counts.predicted += sum(r.phrase not in phrases for r in prediction.regions)


def evaluate(rexomni, conversations: Sequence, batch_size: int = 8) -> dict[str, float]:
    """Detection / referring / visual-prompting conversations (box answers) → metrics.

    Detection conversations are asked again as pointing; the result also carries the share of
    well-formed answers over every answer generated.
    """
    results = {task: Counts() for task in ("detection", "pointing", "visual_prompting")}
    answers = well_formed = 0
    jobs = [(c, c.task if c.task != "referring" else "detection") for c in conversations]
    jobs += [(c, "pointing") for c in conversations if c.task == "detection"]
    for task in results:
        todo = [c for c, t in jobs if t == task]
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            kwargs = (
                {"visual_prompt_boxes": [_reference_boxes(c) for c in chunk]}
                if task == "visual_prompting"
                else {"categories": [list(c.phrases) for c in chunk]}
            )
            predictions = rexomni.predict_batch([c.image for c in chunk], task=task, **kwargs)
            for conversation, prediction in zip(chunk, predictions):
                answers += 1
                well_formed += prediction.well_formed
                _add(results[task], prediction, conversation.regions, conversation.phrases, task == "pointing")
    return {
        "detection_f1@0.5": results["detection"].f1(0),
        "detection_f1@miou": results["detection"].f1(),
        "pointing_f1": results["pointing"].f1(0),
        "pointing_recall": float(results["pointing"].tp[0] / max(results["pointing"].truth, 1)),
        "visual_prompting_f1@0.5": results["visual_prompting"].f1(0),
        "well_formed": well_formed / max(answers, 1),
        "answers": answers,
    }


def _reference_boxes(conversation) -> list[list[float]]:
    """The reference boxes in a visual-prompting prompt, back in pixels (centre decoding
    re-quantizes to the same bins, so the released prompt rebuilt from them is identical)."""
    bins = bins_in(conversation.prompt)
    return [
        dequantize_xy(bins[i : i + 4], conversation.width, conversation.height)
        for i in range(0, len(bins) - 3, 4)
    ]


def main(argv: list[str] | None = None) -> int:
    """`python -m rexomni_core.train.heldout --model DIR --factory module:callable --kwargs JSON`."""
    import argparse
    import json

    from ..model import RexOmni
    from .configs import DataConfig

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--model", help="checkpoint directory (default: the shipped nano)")
    parser.add_argument("--factory", default=DataConfig.factory)
    parser.add_argument("--kwargs", type=json.loads, default={}, help="factory kwargs (JSON)")
    parser.add_argument("--count", type=int, default=200, help="conversations to evaluate")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)
    source = DataConfig(args.factory, args.kwargs).build()
    conversations = [source[i] for i in range(args.count)]
    metrics = evaluate(RexOmni.from_pretrained(args.model), conversations, args.batch_size)
    print(json.dumps({"model": args.model, "count": args.count, **metrics}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
