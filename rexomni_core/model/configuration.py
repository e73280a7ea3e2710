"""Checkpoint settings and defaults: where the embedded nano lives, the released model's id, the
config.json keys of nano-only behaviours, the default decoding, and device/dtype choice."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ..errors import InputError
from ..tasks import TASKS

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
# Written into config.json of checkpoints trained on only some tasks (nano: the shapes world's),
# so that every surface can say when a task was never trained rather than show its nonsense as an
# answer. Training adds the tasks of its data; a freshly built nano starts with none. Absent (the
# released checkpoint): every task.
TRAINED_TASKS_KEY = "rexomni_trained_tasks"
# Written into config.json of checkpoints trained with the prompt before the image in the user
# turn: the image tokens, which the language model also runs over, can then read the phrases
# asked (causal attention), so each can tell whether it shows one of them. Absent: image first,
# as the released model reads it.
PROMPT_FIRST_KEY = "rexomni_prompt_first"


def add_trained_tasks(config, tasks: Sequence[str] | None) -> None:
    """Add `tasks` to those a model config declares it was trained on (a config that declares
    none already counts as trained on every task, and stays so). `None`, training data that does
    not say which tasks it poses, takes the declaration away: the config no longer claims to know."""
    known = getattr(config, TRAINED_TASKS_KEY, None)
    if tasks is None:
        if known is not None:
            delattr(config, TRAINED_TASKS_KEY)
    elif known is not None:
        unknown = sorted(set(tasks) - set(TASKS))
        if unknown:
            raise InputError(f"{unknown} are no tasks (tasks: {', '.join(TASKS)})")
        setattr(config, TRAINED_TASKS_KEY, sorted({*known, *tasks}))


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32
