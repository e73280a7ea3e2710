"""Measurements of a Rex-Omni-nano checkpoint that need the model itself (torch), unlike the
torch-free scores of `rexomni_core.eval` that judge its written answers."""

from __future__ import annotations

import numpy as np
import torch

from ..model import RexOmni
from ..train.sft import IGNORE_INDEX, SFTCollator, coordinate_bin_table


def coordinate_error(model: RexOmni, conversations) -> dict[str, float]:
    """Teacher-forced: NLL of the exact coordinate token and |argmax bin - true bin|, averaged
    over every coordinate of the answers. Informative long before boxes reach IoU 0.5."""
    batch = SFTCollator(model)(conversations)
    labels = batch.pop("labels")[:, 1:]
    with torch.no_grad():
        log_probs = torch.log_softmax(model.model(**batch).logits[:, :-1].float(), dim=-1)
    ids = torch.tensor(model.coordinate_ids)
    bin_of = coordinate_bin_table(ids, log_probs.shape[-1])
    keep = (labels != IGNORE_INDEX) & (bin_of[labels.clamp(min=0)] >= 0)
    targets = labels[keep]
    nll = -log_probs[keep].gather(1, targets[:, None]).mean()
    guessed = log_probs[keep][:, ids].argmax(dim=-1)
    error = (guessed - bin_of[targets]).abs().float()
    return {"coordinate_nll": float(nll), "coordinate_mae_bins": float(error.mean()),
            "coordinate_within_20_bins": float(np.mean((error <= 20).numpy())),
            # What answering the image centre for every coordinate would score.
            "centre_guess_mae_bins": float((bin_of[targets] - 499.5).abs().mean())}
