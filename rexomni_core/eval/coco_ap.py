"""COCO AP/AR through pycocotools, for predictions that carry confidences (e.g. token
probabilities), and a precision-recall plot. pycocotools and matplotlib are imported here only,
inside the functions, so the rest of the evaluators stay numpy-only."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rexomni_core.coco import xyxy_to_bboxes
from rexomni_core.eval.inputs import Detections, GroundTruth

from ..errors import InputError
from .plots import save_figure

STAT_NAMES = (
    "AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large"
)


@dataclass(frozen=True)
class APReport:
    stats: dict[str, float]  # pycocotools' 12 summary numbers (-1 where undefined)
    recall_steps: np.ndarray  # (101,)
    curves: dict[str, np.ndarray]  # IoU label -> (101,) precision, mean over categories with GT


def _as_coco_dataset(gt: GroundTruth) -> dict:
    """The checked ground truth back in COCO form, for pycocotools."""
    xywh = xyxy_to_bboxes(gt.boxes)
    return {
        "images": [{"id": int(i), "width": float(w), "height": float(h)} for i, (w, h) in zip(gt.image_ids, gt.image_sizes)],
        "categories": [{"id": int(k), "name": name} for k, name in zip(gt.category_ids, gt.category_names)],
        "annotations": [
            {"id": n + 1, "image_id": int(gt.image_ids[i]), "category_id": int(gt.category_ids[k]),
             "bbox": box.tolist(), "area": float(area), "iscrowd": int(crowd)}
            for n, (i, k, box, area, crowd) in enumerate(zip(gt.image_index, gt.category_index, xywh, gt.area, gt.is_crowd))
        ],
    }


def _as_coco_results(gt: GroundTruth, dets: Detections) -> list[dict]:
    xywh = xyxy_to_bboxes(dets.boxes)
    return [
        {"image_id": int(i), "category_id": int(k), "bbox": box.tolist(), "score": float(s)}
        for i, k, box, s in zip(gt.image_ids[dets.image_index], gt.category_ids[dets.category_index], xywh, dets.scores)
    ]


def _category_mean(precision: np.ndarray) -> np.ndarray:
    """(R, K) with -1 for categories without GT → (R,) mean over the others."""
    valid = precision > -1
    count = valid.sum(axis=1)
    return np.divide(np.where(valid, precision, 0).sum(axis=1), count, out=np.zeros(len(precision)), where=count > 0)


def coco_ap(gt: GroundTruth, dets: Detections) -> APReport:
    """COCOeval (bbox) on `dets`, which must carry scores."""
    if dets.scores is None:
        raise InputError("AP needs a score on every prediction; use `rexomni eval f1` for unscored predictions")
    if len(dets) == 0:
        raise InputError("AP needs at least one prediction")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress on stdout
        reference = COCO()
        reference.dataset = _as_coco_dataset(gt)
        reference.createIndex()
        evaluator = COCOeval(reference, reference.loadRes(_as_coco_results(gt, dets)), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # (T, R, K), area "all", 100 dets
    thresholds = evaluator.params.iouThrs
    curves = {
        "0.50": _category_mean(precision[np.isclose(thresholds, 0.5)][0]),
        "0.75": _category_mean(precision[np.isclose(thresholds, 0.75)][0]),
        "0.50:0.95": np.mean([_category_mean(p) for p in precision], axis=0),
    }
    return APReport(
        stats=dict(zip(STAT_NAMES, (float(v) for v in evaluator.stats))),
        recall_steps=np.asarray(evaluator.params.recThrs),
        curves=curves,
    )


def save_pr_curve(report: APReport, path: str | Path) -> Path:
    """Write the category-mean precision-recall curves as a PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 4), dpi=120)
    for label, precision in report.curves.items():
        axes.plot(report.recall_steps, precision, label=f"IoU {label}")
    axes.set(xlabel="recall", ylabel="precision (interpolated)", xlim=(0, 1), ylim=(0, 1.02),
             title=f"AP {report.stats['AP']:.3f}, AP50 {report.stats['AP50']:.3f}")
    axes.legend(loc="lower left")
    return save_figure(figure, path)
