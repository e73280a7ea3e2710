"""How well confidences mean what they say: which predictions are right, the reliability diagram
and expected calibration error (ECE), and how often a right prediction outscores a wrong one
(AUROC). numpy only; matplotlib is imported inside the plot."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .f1 import match_detections, score_order
from .inputs import Detections, GroundTruth
from .matching import IGNORED, TRUE_POSITIVE
from .plots import save_figure


def correct_detections(gt: GroundTruth, dets: Detections, iou: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(is_true_positive, counted) per prediction under COCO's greedy matching at `iou`, highest
    score first. Predictions matched to a crowd region are neither right nor wrong: not counted."""
    outcome = match_detections(gt, dets, score_order(dets), thresholds=[iou]).outcome[0]
    return outcome == TRUE_POSITIVE, outcome != IGNORED


@dataclass(frozen=True)
class Reliability:
    """Predictions binned by confidence: how many, their mean confidence, the share right."""

    edges: np.ndarray  # (B + 1,)
    counts: np.ndarray  # (B,)
    confidence: np.ndarray  # (B,), nan where a bin is empty
    accuracy: np.ndarray  # (B,), nan where a bin is empty

    @property
    def ece(self) -> float:
        """Expected calibration error: the count-weighted mean |accuracy - confidence|."""
        filled = self.counts > 0
        if not filled.any():
            return 0.0
        gaps = np.abs(self.accuracy[filled] - self.confidence[filled])
        return float((gaps * self.counts[filled]).sum() / self.counts.sum())


def reliability(scores: np.ndarray, correct: np.ndarray, bins: int = 10) -> Reliability:
    """Equal-width bins over [0, 1] (a score of exactly 1 falls in the last)."""
    scores, correct = np.asarray(scores, dtype=np.float64), np.asarray(correct, dtype=bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(which, weights=scores, minlength=bins) / counts
        accuracy = np.bincount(which, weights=correct.astype(np.float64), minlength=bins) / counts
    return Reliability(edges, counts, confidence, accuracy)


def auroc(scores: np.ndarray, correct: np.ndarray) -> float:
    """The probability that a right prediction scores above a wrong one (ties count half);
    0.5 is no better than chance, nan without both kinds."""
    scores, correct = np.asarray(scores, dtype=np.float64), np.asarray(correct, dtype=bool)
    right, wrong = scores[correct], scores[~correct]
    if not len(right) or not len(wrong):
        return float("nan")
    order = np.sort(wrong)
    below = np.searchsorted(order, right, side="left")
    ties = np.searchsorted(order, right, side="right") - below
    return float((below + 0.5 * ties).sum() / (len(right) * len(wrong)))


def save_reliability_diagram(curves: Mapping[str, Reliability], path: str | Path, title: str = "") -> Path:
    """Accuracy against mean confidence per bin, one line per definition, with the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(4.6, 4), dpi=100)
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    for name, curve in curves.items():
        filled = curve.counts > 0
        axes.plot(curve.confidence[filled], curve.accuracy[filled], "o-", markersize=3, label=f"{name} (ECE {curve.ece:.3f})")
    axes.set(xlabel="mean confidence in bin", ylabel="share right (IoU ≥ 0.5)", xlim=(0, 1), ylim=(0, 1), title=title)
    axes.legend(loc="upper left", fontsize=7)
    return save_figure(figure, path)
