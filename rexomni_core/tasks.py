"""The task catalog: what each task asks, in the exact words the released checkpoint was trained on.

`build_prompt` reproduces the released prompt builder string for string (see FORMAT.md) and
validates its inputs. `sample_prompt` draws from paraphrase sets so that models trained on this
project's data engines do not overfit one sentence; the released wording is always one of them.

GUI grounding: the released wrapper's template carries a stray quote
(`Detect element "{categories}"" in the image.`, kept here as `RELEASED_GUI_GROUNDING_TEMPLATE`).
This project sends the clean form `Detect element "{categories}" in the image.`, the form the
task is documented with and the nano world uses; the stray quote reads as a typo in the wrapper,
not in the training data.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .coords import check_size, quantize_xy, tokens_text
from .errors import InputError

SYSTEM_PROMPT = "You are a helpful assistant"

# Qwen2.5-VL smart-resize bounds the released wrapper uses (pixels of the resized input).
MIN_PIXELS = 16 * 28 * 28
MAX_PIXELS = 2560 * 28 * 28

RELEASED_GUI_GROUNDING_TEMPLATE = 'Detect element "{categories}"" in the image.'
# The name of the reference boxes in a visual prompt's JSON, which the answer names its group after.
VISUAL_PROMPT_PHRASE = "object_1"

# Bounds on what a user may ask in one prompt: a phrase is a name or a short description (a
# 10 000-character "category" once held the app's only worker for most of a minute), and a COCO-
# or LVIS-sized list is asked in chunks, not in one prompt that overflows the model's positions.
MAX_CATEGORIES = 256
MAX_PHRASE_CHARS = 256
# Text the tokenizer would read as a control or coordinate token (`<|im_end|>`, `<|box_start|>`,
# `<12>`, `<tool_call>`): inside a phrase it would rewrite the chat structure of the prompt.
_CONTROL_TEXT = re.compile(r"<\|?/?\w+\|?>")


# What a task asks about, which decides how its queries are built and scored (`eval run`), and
# how its answer reads (`ocr` answers name each region by its text).
Family = Literal["boxes", "points", "ocr", "gui", "keypoints"]


@dataclass(frozen=True)
class Task:
    """One task: its released prompt template, the regions its answer holds, what it needs.

    The one registry of task knowledge: samplers, rewards, the grammar and `eval run` read these
    fields rather than keep tables of task names.
    """

    name: str
    template: str
    region_kind: str  # box | point | polygon | keypoints
    family: Family
    needs_categories: bool = True
    needs_visual_prompt: bool = False
    needs_keypoint_type: bool = False
    # Prompts may also name categories the image lacks, answered `None` (training negatives).
    absent_phrases: bool = False
    paraphrases: tuple[str, ...] = ()

    @property
    def templates(self) -> tuple[str, ...]:
        """The released template first, then the paraphrases."""
        return (self.template,) + self.paraphrases

    @property
    def ocr(self) -> bool:
        """Whether the answer names each region by the text it reads."""
        return self.family == "ocr"


_DETECTION_PARAPHRASES = (
    "Detect {categories}.",
    "Locate {categories} in the image. Output the bounding box coordinates in [x0, y0, x1, y1] format.",
    "Find {categories} in the image and give their bounding boxes.",
    "Find every {categories} and output the boxes as [x0, y0, x1, y1].",
    "Where are {categories}? Answer with bounding boxes.",
    "Please detect {categories} in this image.",
    "Give the bounding boxes of {categories}.",
    "Output the [x0, y0, x1, y1] boxes of all {categories} in the picture.",
)
_POINTING_PARAPHRASES = (
    "Point to every {categories}.",
    "Give a point on each {categories}.",
    "Where is {categories}? Answer with points.",
    "Mark {categories} with points.",
    "Locate {categories} and output one point per instance.",
)
_VISUAL_PROMPT_PARAPHRASES = (
    "Reference boxes {visual_prompt} mark examples of an object. Find all objects like them and output their bounding boxes.",
    "Find every object similar to the ones in {visual_prompt} and give their bounding boxes.",
    "Using the example boxes {visual_prompt}, detect all similar objects in the image.",
)
_OCR_BOX_PARAPHRASES = (
    "Find all {categories} in the image and read them.",
    "Detect every {categories}, give its box and its text.",
    "Read all {categories} in the image with their bounding boxes.",
)
_OCR_POLYGON_PARAPHRASES = (
    "Detect all {categories} as polygons [x0, y0, x1, y1, x2, y2 ...] and recognize them.",
    "Find every {categories} in polygon format and read it.",
)
_GUI_GROUNDING_PARAPHRASES = (
    'Find the element "{categories}" in the screenshot.',
    'Locate element "{categories}" and give its bounding box.',
    'Where is "{categories}"? Output its box.',
)
_GUI_POINTING_PARAPHRASES = (
    'Click on "{categories}".',
    'Point to the element "{categories}" in the screenshot.',
    'Where should I click for "{categories}"?',
)
_KEYPOINT_PARAPHRASES = (
    "Detect each {categories} with a [x0, y0, x1, y1] box and give the [x0, y0] coordinates of its {keypoints}. Answer in JSON.",
    "Find every {categories}, output its box and the positions of its {keypoints} in JSON format.",
)

_DETECTION_TEMPLATE = (
    "Detect {categories}. Output the bounding box coordinates in [x0, y0, x1, y1] format."
)

TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("detection", _DETECTION_TEMPLATE, "box", "boxes", absent_phrases=True, paraphrases=_DETECTION_PARAPHRASES),
        # Referring expressions are asked exactly like detection; the name keeps data and
        # metrics apart.
        Task("referring", _DETECTION_TEMPLATE, "box", "boxes", paraphrases=_DETECTION_PARAPHRASES),
        Task("pointing", "Point to {categories}.", "point", "points", absent_phrases=True, paraphrases=_POINTING_PARAPHRASES),
        Task(
            "visual_prompting",
            "Given reference boxes {visual_prompt} indicating one or more objects, find all "
            "similar objects in the image and output their bounding boxes.",
            "box",
            "boxes",
            needs_categories=False,
            needs_visual_prompt=True,
            paraphrases=_VISUAL_PROMPT_PARAPHRASES,
        ),
        Task(
            "keypoint",
            "Can you detect each {categories} in the image using a [x0, y0, x1, y1] box format, "
            "and then provide the coordinates of its {keypoints} as [x0, y0]? Output the answer "
            "in JSON format.",
            "keypoints",
            "keypoints",
            needs_keypoint_type=True,
            paraphrases=_KEYPOINT_PARAPHRASES,
        ),
        Task(
            "ocr_box",
            "Detect all {categories} and recognize them.",
            "box",
            "ocr",
            paraphrases=_OCR_BOX_PARAPHRASES,
        ),
        Task(
            "ocr_polygon",
            "Can you detect all {categories} in this image in polygon format like "
            "[x0, y0, x1, y1, x2, y2 ...] and then recognize them?",
            "polygon",
            "ocr",
            paraphrases=_OCR_POLYGON_PARAPHRASES,
        ),
        Task(
            "gui_grounding",
            'Detect element "{categories}" in the image.',
            "box",
            "gui",
            paraphrases=_GUI_GROUNDING_PARAPHRASES,
        ),
        Task(
            "gui_pointing",
            'Point to element "{categories}".',
            "point",
            "gui",
            paraphrases=_GUI_POINTING_PARAPHRASES,
        ),
    )
}

# COCO order of the 17 person keypoints, and the released animal schema.
KEYPOINT_SCHEMAS: dict[str, tuple[str, ...]] = {
    "person": (
        "nose", "left eye", "right eye", "left ear", "right ear",
        "left shoulder", "right shoulder", "left elbow", "right elbow",
        "left wrist", "right wrist", "left hip", "right hip",
        "left knee", "right knee", "left ankle", "right ankle",
    ),
    "animal": (
        "left eye", "right eye", "nose", "neck", "root of tail",
        "left shoulder", "left elbow", "left front paw",
        "right shoulder", "right elbow", "right front paw",
        "left hip", "left knee", "left back paw",
        "right hip", "right knee", "right back paw",
    ),
}

OCR_GRANULARITIES = ("word", "text line")


def get_task(task: str) -> Task:
    try:
        return TASKS[task]
    except (KeyError, TypeError):
        raise InputError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}") from None


def normalize_categories(categories: str | Sequence[str] | None) -> list[str] | None:
    """A phrase or a list of phrases → a list of non-empty phrases (None stays None)."""
    if categories is None:
        return None
    if isinstance(categories, str):
        categories = [categories]
    if len(categories) > MAX_CATEGORIES:
        raise InputError(
            f"{len(categories)} categories in one prompt; at most {MAX_CATEGORIES} (ask in several prompts)"
        )
    phrases = []
    for i, phrase in enumerate(categories):
        if not isinstance(phrase, str) or not phrase.strip():
            raise InputError(f"categories[{i}] must be a non-empty string, got {phrase!r}")
        if len(phrase) > MAX_PHRASE_CHARS:
            raise InputError(
                f"categories[{i}] is {len(phrase)} characters long; a phrase has at most {MAX_PHRASE_CHARS}"
            )
        control = _CONTROL_TEXT.search(phrase)
        if control:
            raise InputError(
                f"categories[{i}] = {phrase[:60]!r} holds {control.group()!r}, which the model reads as a "
                "control or coordinate token; remove it"
            )
        phrases.append(phrase.strip())
    return phrases or None


def split_categories(text: str) -> list[str]:
    """`"red circle, blue star"` → `["red circle", "blue star"]` (for command lines and forms)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def keypoint_names(keypoint_type: str) -> tuple[str, ...]:
    try:
        return KEYPOINT_SCHEMAS[keypoint_type]
    except (KeyError, TypeError):
        raise InputError(
            f"unknown keypoint type {keypoint_type!r}; known types: {', '.join(KEYPOINT_SCHEMAS)}"
        ) from None


def visual_prompt_text(boxes: Sequence[Sequence[float]], width: float, height: float) -> str:
    """Reference boxes in pixels → the JSON text the released prompt embeds.

    `{"object_1": ["<x0><y0><x1><y1>", …]}`, written by `json.dumps` as the released builder does.
    """
    check_size(width, height)
    if isinstance(boxes, (str, bytes)) or not isinstance(boxes, Sequence) or not boxes:
        raise InputError("visual_prompt_boxes must be a non-empty list of [x0, y0, x1, y1] boxes")
    tokens = []
    for i, box in enumerate(boxes):
        if (
            isinstance(box, (str, bytes))
            or not isinstance(box, Sequence)
            or len(box) != 4
            or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in box)
        ):
            raise InputError(
                f"visual_prompt_boxes[{i}] must be 4 finite numbers [x0, y0, x1, y1], got {box!r}"
            )
        x0, y0, x1, y1 = box
        if not (x1 > x0 and y1 > y0):
            raise InputError(
                f"visual_prompt_boxes[{i}] = {list(box)} has no area: need x1 > x0 and y1 > y0"
            )
        if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
            raise InputError(
                f"visual_prompt_boxes[{i}] = {list(box)} lies outside the {width}x{height} image"
            )
        tokens.append(tokens_text(quantize_xy(box, width, height)))
    return json.dumps({VISUAL_PROMPT_PHRASE: tokens})


def build_prompt(
    task: str,
    categories: str | Sequence[str] | None = None,
    keypoint_type: str | None = None,
    visual_prompt_boxes: Sequence[Sequence[float]] | None = None,
    width: float | None = None,
    height: float | None = None,
    template: str | None = None,
) -> str:
    """The prompt for `task`, exactly as the released wrapper builds it.

    `template` replaces the released wording (used by `sample_prompt`); validation is the same.
    """
    spec = get_task(task)
    template = spec.template if template is None else template
    phrases = normalize_categories(categories)
    if spec.needs_visual_prompt:
        if visual_prompt_boxes is None:
            raise InputError(f"task {task!r} needs visual_prompt_boxes (reference boxes in pixels)")
        if width is None or height is None:
            raise InputError(f"task {task!r} needs the image width and height to encode its boxes")
        return template.format(visual_prompt=visual_prompt_text(visual_prompt_boxes, width, height))
    if spec.needs_categories and phrases is None:
        hint = f" (one of {list(OCR_GRANULARITIES)})" if spec.ocr else ""
        raise InputError(f"task {task!r} needs categories{hint}")
    if spec.needs_keypoint_type:
        if keypoint_type is None:
            raise InputError(f"task {task!r} needs a keypoint_type ({', '.join(KEYPOINT_SCHEMAS)})")
        names = keypoint_names(keypoint_type)
        return template.format(categories=", ".join(phrases), keypoints=", ".join(names))
    return template.format(categories=", ".join(phrases) if phrases else "objects")


def sample_prompt(
    task: str,
    rng: random.Random,
    released_share: float = 0.5,
    **prompt_inputs,
) -> str:
    """A prompt for training data: the released wording with probability `released_share`,
    otherwise a paraphrase drawn uniformly. Inputs are validated as in `build_prompt`."""
    spec = get_task(task)
    if not spec.paraphrases or rng.random() < released_share:
        template = spec.template
    else:
        template = rng.choice(spec.paraphrases)
    return build_prompt(task, template=template, **prompt_inputs)
