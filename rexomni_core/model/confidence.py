"""Region confidence from the model's own token probabilities, recorded during generation.

`TokenProbabilities` runs as the first logits processor of `generate` (no second forward
pass): at every step it keeps the model's distribution, and once the next token is known it
records three numbers for it, from the model's own logits (before the repetition penalty, the
grammar and coordinate-mass decoding touch them):

- `p`: the probability of the token written;
- `mass`: the summed probability of all 1000 coordinate bins, the probability that *a*
  coordinate comes next (with coordinate-mass decoding this is what decided to write one);
- `window`: the probability of the bins within ±WINDOW_BINS of the bin written (coordinates).

After generation every region is traced to its run of coordinate tokens (`region_evidence`),
which gives its `RegionEvidence`:

- `presence`: the probability that this region was opened at all: the probability of the
  tokens that lead into it (after `<|box_start|>`: none; after the previous region: the ","
  that the model preferred to `<|box_end|>`; in keypoint JSON: the text opening the instance)
  times the coordinate mass where its first bin was written (after `<|box_start|>` that is the
  probability of a region rather than `None`);
- `bins`: for each coordinate token, p(bin | a coordinate), its probability divided by the mass
  (not the plain probability: a model whose mass is spread over neighbouring bins, like nano,
  would otherwise score every box near zero);
- `windows`: the same for the mass near the bin written.

`CONFIDENCES` turns evidence into a score in [0, 1]; `DEFAULT_CONFIDENCE` is the definition
measured best on held-out nano detection (README, "Confidence"). Keypoint instances are scored by
their box's coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import LogitsProcessor

from ..coords import NUM_BINS, dequantize_xy
from ..errors import InputError
from ..regions import Prediction
from .decoding import AnswerVocabulary, coordinate_span

# ±20 bins is 2 % of the image side: an edge within it keeps a box of a fifth of the image at
# IoU ≥ 0.8 with the one written.
WINDOW_BINS = 20


@dataclass(frozen=True)
class TokenRecord:
    """Per-token probabilities of one answer, aligned with its tokens (see module docstring)."""

    p: np.ndarray
    mass: np.ndarray
    window: np.ndarray


class TokenProbabilities(LogitsProcessor):
    """Records the model's probability of each token written (see module docstring). Leaves
    the logits unchanged; must run before any processor that changes them.

    Each step keeps only what the record needs of the distribution (the probability of the token
    written, once it is known, and the 1000 bins' probabilities); `finish` derives mass and
    windows for every step at once, so a step costs three tensor operations."""

    def __init__(self, coordinate_ids: Sequence[int]):
        self.coordinate_ids = torch.as_tensor(list(coordinate_ids), dtype=torch.long)
        self._span = coordinate_span(coordinate_ids)  # a slice where the ids are one run: a copy, not a gather
        self._probs: torch.Tensor | None = None  # the latest step's distribution
        self._chosen: list[torch.Tensor] = []  # (B,) per step: the token written
        self._p: list[torch.Tensor] = []  # (B,) per step: its probability
        self._bins: list[torch.Tensor] = []  # (B, NUM_BINS) per step: the bins' probabilities

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._probs is not None:
            self._record(input_ids[:, -1])
        self._probs = scores.float().softmax(dim=-1)
        if self.coordinate_ids.device != self._probs.device:
            self.coordinate_ids = self.coordinate_ids.to(self._probs.device)
        self._bins.append(self._probs[:, self.coordinate_ids] if self._span is None else self._probs[:, self._span].clone())
        return scores

    def _record(self, chosen: torch.Tensor) -> None:
        chosen = chosen.to(self._probs.device)
        self._chosen.append(chosen)
        self._p.append(self._probs.gather(1, chosen[:, None])[:, 0])

    def finish(self, last_tokens: torch.Tensor) -> list[TokenRecord]:
        """Record the last step's token (generate calls no processor after it) and return one
        record per row, position t for the t-th generated token."""
        if self._probs is not None:
            self._record(last_tokens)
            self._probs = None
        if not self._p:
            return [TokenRecord(np.zeros(0), np.zeros(0), np.zeros(0)) for _ in range(len(last_tokens))]
        bins = torch.stack(self._bins, dim=1)  # (B, steps, NUM_BINS)
        cumulative = torch.nn.functional.pad(bins.cumsum(dim=-1), (1, 0))  # cumulative[..., b] = mass below bin b
        chosen = torch.stack(self._chosen, dim=1)
        bin_of = torch.full((max(int(chosen.max()), int(self.coordinate_ids.max())) + 1,), -1, device=bins.device)
        bin_of[self.coordinate_ids] = torch.arange(NUM_BINS, device=bins.device)  # token id → bin, -1 for others
        written = bin_of[chosen].clamp(min=0)
        low = (written - WINDOW_BINS).clamp(min=0)
        high = (written + WINDOW_BINS + 1).clamp(max=NUM_BINS)
        window = cumulative.gather(2, high[..., None])[..., 0] - cumulative.gather(2, low[..., None])[..., 0]
        steps = torch.stack([torch.stack(self._p, dim=1), cumulative[..., -1], window], dim=2)
        steps = steps.cpu().numpy().astype(np.float64)
        return [TokenRecord(row[:, 0], row[:, 1], row[:, 2]) for row in steps]


@dataclass(frozen=True)
class RegionEvidence:
    """What the model's probabilities say about one region (see module docstring)."""

    presence: float
    bins: tuple[float, ...]
    windows: tuple[float, ...]


def _geometric_mean(values: Sequence[float]) -> float:
    return math.exp(sum(math.log(max(v, 1e-12)) for v in values) / len(values)) if values else 1.0


CONFIDENCES: dict[str, Callable[[RegionEvidence], float]] = {
    "presence": lambda e: e.presence,
    "bins": lambda e: _geometric_mean(e.bins),
    "presence_x_bins": lambda e: e.presence * _geometric_mean(e.bins),
    "presence_x_window": lambda e: e.presence * _geometric_mean(e.windows),
}
DEFAULT_CONFIDENCE = "presence_x_window"


def check_confidence(name: str) -> str:
    if name not in CONFIDENCES:
        raise InputError(f"confidence must be one of {', '.join(CONFIDENCES)}, got {name!r}")
    return name


@dataclass(frozen=True)
class _Run:
    """A run of coordinate tokens (blank tokens between them allowed, as the parser allows)."""

    bins: tuple[int, ...]
    evidence: RegionEvidence


def _given_a_coordinate(probability: np.ndarray, mass: np.ndarray) -> tuple[float, ...]:
    conditional = np.divide(probability, mass, out=np.zeros_like(probability), where=mass > 0)
    return tuple(float(v) for v in np.clip(conditional, 0.0, 1.0))


def _runs(tokens: Sequence[int], record: TokenRecord, vocab: AnswerVocabulary) -> list[_Run]:
    runs: list[_Run] = []
    lead_in = 1.0  # probability of the tokens since the last coordinate or marker
    bins: list[int] = []
    positions: list[int] = []
    presence = 0.0

    def close() -> None:
        if bins:
            mass = record.mass[positions]
            runs.append(_Run(tuple(bins), RegionEvidence(
                presence=float(min(presence, 1.0)),
                bins=_given_a_coordinate(record.p[positions], mass),
                windows=_given_a_coordinate(record.window[positions], mass),
            )))
            bins.clear()
            positions.clear()

    for t, token in enumerate(tokens):
        if token in vocab.bin_of:
            if not bins:
                presence = lead_in * float(record.mass[t])
            bins.append(vocab.bin_of[token])
            positions.append(t)
            lead_in = 1.0
        elif bins and vocab.is_blank(token):
            continue  # inside a run ("<1> <2>"), or right after it
        else:
            close()
            lead_in = 1.0 if token in vocab.markers else lead_in * float(record.p[t])
    close()
    return runs


def region_evidence(
    prediction: Prediction, tokens: Sequence[int], record: TokenRecord, vocab: AnswerVocabulary
) -> list[RegionEvidence | None]:
    """The evidence of each region of `prediction` (parsed from `tokens`), or None for one no
    run of coordinate tokens decodes to. Regions are traced in order, each to the next run whose
    bins decode to exactly its coordinates (the parser reads runs in order and drops malformed
    ones, which are skipped here as they match no region)."""
    runs = _runs(tokens, record, vocab)
    width, height, decode = prediction.width, prediction.height, prediction.decode
    evidence: list[RegionEvidence | None] = []
    start = 0
    for region in prediction.regions:
        target = region.box if region.kind == "keypoints" else region.coords
        found = None
        for j in range(start, len(runs)):
            bins = runs[j].bins
            if len(bins) == len(target) and dequantize_xy(bins, width, height, decode) == list(target):
                found = j
                break
        evidence.append(None if found is None else runs[found].evidence)
        start = start if found is None else found + 1
    return evidence
