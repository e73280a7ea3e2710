"""Rex-Omni toolkit core: detect anything by next point prediction.

The public API: `parse` and `serialize` (answer text <-> regions), the region types and
`Prediction`, and the task catalog (`build_prompt`, `TASKS`).
"""

from .grammar import parse, serialize
from .regions import Box, Keypoints, ParseProblem, Point, Polygon, Prediction, Region
from .tasks import TASKS, build_prompt

__all__ = [
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
