"""Checkpoint settings and defaults: where the embedded nano lives, the released model's id, the
config.json keys of nano-only behaviours, the default decoding, and device/dtype choice."""

from __future__ import annotations

from pathlib import Path

import torch

NANO_DIR = Path(__file__).parent.parent / "assets" / "nano"
RELEASED_MODEL_ID = "IDEA-Research/Rex-Omni"

# The released demo's decoding: greedy with a light repetition penalty, stop at <|im_end|>.
# max_new_tokens: the checkpoint's generation_config.json may set a tighter cap (nano: 512).
DEFAULT_GENERATION = {"do_sample": False, "repetition_penalty": 1.05, "max_new_tokens": 2048}
# Written into a checkpoint's config.json when the model sees every image resized to one square
# (side x side, aspect ratio not kept): nano does, because a fixed token grid is what a model this
# small learns to localise on (model card). Answers are normalised bins, so they map back to the
# original image unchanged. Absent (the released checkpoint): Qwen's aspect-preserving resize.
SQUARE_SIDE_KEY = "rexomni_square_side"
# Written into config.json of checkpoints whose coordinate probability is spread over many
# neighbouring bins (nano): plain greedy decoding then writes `None` or `<|box_end|>` although most
# of the mass says a coordinate comes next (model card). Absent: plain greedy, as released.
COORDINATE_MASS_KEY = "rexomni_coordinate_mass_decoding"


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32
