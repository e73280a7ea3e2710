"""Generation-time logic: the keyword arguments of `generate`, and coordinate-mass decoding."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from .configuration import DEFAULT_GENERATION


class CoordinateMassProcessor(LogitsProcessor):
    """Inside `<|box_start|>…<|box_end|>`, decide *whether* to write a coordinate by the summed
    probability of all bins, then which bin as usual: where the bins together outweigh the
    likeliest other token, every other token is masked; otherwise the bins are. Elsewhere (phrases,
    separators) decoding is untouched. A model sure of its bins decodes exactly as plain greedy."""

    def __init__(self, coordinate_ids: Sequence[int], box_start_id: int, box_end_id: int):
        self.coordinate_ids = torch.as_tensor(list(coordinate_ids))
        self.box_start_id, self.box_end_id = box_start_id, box_end_id
        self._is_coordinate: torch.Tensor | None = None  # vocabulary mask, built at the first step

    def _coordinate_mask(self, vocab_size: int, device: torch.device) -> torch.Tensor:
        mask = self._is_coordinate
        if mask is None or mask.shape[0] != vocab_size or mask.device != device:
            mask = torch.zeros(vocab_size, dtype=torch.bool, device=device)
            mask[self.coordinate_ids.to(device)] = True
            self._is_coordinate = mask
        return mask

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        positions = torch.arange(1, input_ids.shape[1] + 1, device=input_ids.device)
        last_start = torch.where(input_ids == self.box_start_id, positions, 0).max(dim=-1).values
        last_end = torch.where(input_ids == self.box_end_id, positions, 0).max(dim=-1).values
        inside_box = (last_start > last_end)[:, None]
        is_coordinate = self._coordinate_mask(scores.shape[-1], scores.device)
        probs = scores.float().softmax(dim=-1)
        coordinate_mass = probs[:, self.coordinate_ids.to(scores.device)].sum(dim=-1)
        best_other = probs.masked_fill(is_coordinate, 0).max(dim=-1).values
        write_coordinate = (coordinate_mass > best_other)[:, None]
        banned = torch.where(write_coordinate, ~is_coordinate, is_coordinate) & inside_box
        return scores.masked_fill(banned, float("-inf"))


def generation_settings(
    checkpoint_max_new_tokens: int | None,
    overrides: Mapping[str, Any],
    coordinate_mass: CoordinateMassProcessor | None = None,
) -> dict[str, Any]:
    """`generate`'s keyword arguments: the released demo's decoding with the checkpoint's own
    max_new_tokens when it sets one, then the caller's `overrides`; `coordinate_mass` (when the
    checkpoint asks for it) runs after any logits processors the caller passed."""
    settings = dict(DEFAULT_GENERATION)
    if checkpoint_max_new_tokens:
        settings["max_new_tokens"] = checkpoint_max_new_tokens
    settings.update(overrides)
    if coordinate_mass is not None:
        processors = LogitsProcessorList(settings.get("logits_processor") or [])
        processors.append(coordinate_mass)
        settings["logits_processor"] = processors
    return settings
