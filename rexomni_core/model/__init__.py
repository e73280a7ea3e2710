"""The Rex-Omni model: `RexOmni` (load a checkpoint, predict), its processor, decoding
(coordinate mass, the answer grammar, the lean greedy loop), region confidences and checkpoint
settings, laid out as transformers lays out a model package."""

from .confidence import CONFIDENCES, DEFAULT_CONFIDENCE, RegionEvidence, TokenProbabilities
from .configuration import (
    COORDINATE_MASS_KEY,
    DEFAULT_GENERATION,
    NANO_DIR,
    RELEASED_MODEL_ID,
    SQUARE_SIDE_KEY,
    default_device,
    default_dtype,
)
from .decoding import AnswerLimits, CoordinateMassProcessor, GrammarConstraint, generation_settings, with_processors
from .modeling import Request, RexOmni
from .processing import ImageOnlyQwen2_5_VLProcessor, load_processor, save_processor

__all__ = [
    "RexOmni",
    "Request",
    "ImageOnlyQwen2_5_VLProcessor",
    "load_processor",
    "save_processor",
    "CoordinateMassProcessor",
    "GrammarConstraint",
    "AnswerLimits",
    "TokenProbabilities",
    "RegionEvidence",
    "CONFIDENCES",
    "DEFAULT_CONFIDENCE",
    "generation_settings",
    "with_processors",
    "NANO_DIR",
    "RELEASED_MODEL_ID",
    "DEFAULT_GENERATION",
    "SQUARE_SIDE_KEY",
    "COORDINATE_MASS_KEY",
    "default_device",
    "default_dtype",
]
