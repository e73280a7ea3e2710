"""Rex-Omni toolkit core: detect anything by next point prediction.

The public API: `RexOmni` (load a checkpoint, predict), `parse` and `serialize` (answer text
<-> regions), the region types and `Prediction`, and the task catalog (`build_prompt`, `TASKS`).
`RexOmni` is imported on first use, so parsing and scoring never load torch.
"""

from .grammar import parse, serialize
from .regions import Box, Keypoints, ParseProblem, Point, Polygon, Prediction, Region
from .tasks import TASKS, build_prompt

__all__ = [
    "RexOmni",
    "parse",
    "serialize",
    "Box",
    "Point",
    "Polygon",
    "Keypoints",
    "Region",
    "Prediction",
    "ParseProblem",
    "TASKS",
    "build_prompt",
]


def __getattr__(name: str):
    if name == "RexOmni":
        from .model import RexOmni

        return RexOmni
    raise AttributeError(f"module 'rexomni_core' has no attribute {name!r}")
