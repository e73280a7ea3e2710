"""Task samplers: one annotated scene → training conversations, one per task.

Every sampler is a pure function `(scene, rng) → Conversation | None` (None: this scene cannot
pose that task, e.g. no unambiguous referring expression exists). Prompts come from
`tasks.sample_prompt` (released wording or a paraphrase), answers from `grammar.serialize`, so
the training targets speak exactly the language the parser reads.

`ConversationStream` turns (worlds, tasks, mixture weights, seed) into an endless, resumable
sequence: conversation `i` depends only on `(seed, i)`, so a trainer resumes at any index and
data-loader workers can split indices among themselves. Nothing is written to disk.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ..annotations import Annotation, Scene
from ..chat import chat_messages
from ..errors import InputError
from ..grammar import serialize
from ..nano.vocabulary import SHAPE_CATEGORIES
from ..regions import Box, Keypoints, Point, Polygon, Region
from ..tasks import KEYPOINT_SCHEMAS, TASKS, VISUAL_PROMPT_PHRASE, sample_prompt
from .engines.pointing import mask_to_point
from .referring import referring_expressions
from .worlds import generate

MAX_PROMPT_PHRASES = 6


@dataclass
class Conversation:
    """One training example: the image, the user's prompt and the target answer.

    `answer` is the assistant text without the closing `<|im_end|>` (the chat template adds it);
    `regions` are the ground truth in original-image pixels that `answer` encodes; `phrases`
    every phrase asked (those answered `None` included). `targets` are what an answer is judged
    against when that differs from `regions` (pointing: the objects' boxes a point must fall in,
    while `regions` holds the one point the answer writes); `judged_against` picks.
    """

    image: Image.Image | str
    width: int
    height: int
    task: str
    prompt: str
    answer: str
    regions: list[Region]
    phrases: list[str]
    targets: list[Region] | None = None

    @property
    def judged_against(self) -> list[Region]:
        """The ground truth a reward or metric compares an answer with."""
        return self.regions if self.targets is None else self.targets

    def messages(self) -> list[dict]:
        """The conversation in the chat-message form Qwen2.5-VL processors take."""
        return chat_messages(self.prompt, image=self.image, answer=self.answer)


def _conversation(
    scene: Scene, task: str, prompt: str, regions: list[Region], phrases: list[str], targets: list[Region] | None = None
) -> Conversation:
    answer = serialize(regions, scene.width, scene.height, task=task, phrases=phrases)
    return Conversation(scene.image, scene.width, scene.height, task, prompt, answer, regions, phrases, targets)


def annotation_point(annotation: Annotation) -> list[float]:
    """The pointing target: mask → point (engines.pointing), or the box centre for rectangles."""
    if annotation.mask is None:
        x0, y0, x1, y1 = annotation.box
        return [(x0 + x1) / 2, (y0 + y1) / 2]
    x, y = mask_to_point(annotation.mask.bits)
    return [annotation.mask.x + x, annotation.mask.y + y]


def choose_phrases(present: Sequence[str], vocabulary: Sequence[str], rng: random.Random) -> list[str]:
    """1–6 phrases: some present in the image, the rest absent (negatives, answered `None`)."""
    present = sorted(set(present))
    absent = [c for c in vocabulary if c not in set(present)]
    count = rng.randint(1, MAX_PROMPT_PHRASES)
    # Mostly at least one positive; sometimes a prompt where nothing asked is there.
    low = 0 if (rng.random() < 0.05 and absent) else 1
    positives = rng.randint(min(low, len(present)), min(count, len(present)))
    negatives = min(count - positives, len(absent))
    phrases = rng.sample(present, positives) + rng.sample(absent, negatives)
    rng.shuffle(phrases)
    return phrases


# --------------------------------------------------------------------------- shapes tasks


def _shape_phrases(scene: Scene, rng: random.Random, absent_phrases: bool, vocabulary: Sequence[str]) -> list[str]:
    return choose_phrases([a.category for a in scene.annotations], vocabulary if absent_phrases else (), rng)


def sample_detection(
    scene: Scene, rng: random.Random, absent_phrases: bool = True, vocabulary: Sequence[str] = SHAPE_CATEGORIES
) -> Conversation:
    """Boxes of the phrases asked; absent phrases come from `vocabulary` (for a user's dataset,
    its own category list) and are answered `None`. Pointing alike."""
    phrases = _shape_phrases(scene, rng, absent_phrases, vocabulary)
    regions = [Box(a.category, list(a.box)) for a in scene.annotations if a.category in phrases]
    prompt = sample_prompt("detection", rng, categories=phrases)
    return _conversation(scene, "detection", prompt, regions, phrases)


def sample_pointing(
    scene: Scene, rng: random.Random, absent_phrases: bool = True, vocabulary: Sequence[str] = SHAPE_CATEGORIES
) -> Conversation:
    phrases = _shape_phrases(scene, rng, absent_phrases, vocabulary)
    asked = [a for a in scene.annotations if a.category in phrases]
    regions = [Point(a.category, annotation_point(a)) for a in asked]
    prompt = sample_prompt("pointing", rng, categories=phrases)
    # A point anywhere on the object is right: judged against its box, as shapes evaluation does.
    return _conversation(scene, "pointing", prompt, regions, phrases, targets=[Box(a.category, list(a.box)) for a in asked])


def sample_visual_prompting(scene: Scene, rng: random.Random) -> Conversation:
    """Reference boxes of some instances of one category → every instance of it."""
    by_category: dict[str, list[Annotation]] = {}
    for annotation in scene.annotations:
        by_category.setdefault(annotation.category, []).append(annotation)
    category = rng.choice(sorted(by_category))
    instances = by_category[category]
    references = rng.sample(instances, rng.randint(1, len(instances)))
    prompt = sample_prompt(
        "visual_prompting",
        rng,
        visual_prompt_boxes=[a.box for a in references],
        width=scene.width,
        height=scene.height,
    )
    regions = [Box(VISUAL_PROMPT_PHRASE, list(a.box)) for a in instances]
    return _conversation(scene, "visual_prompting", prompt, regions, [VISUAL_PROMPT_PHRASE])


def sample_referring(scene: Scene, rng: random.Random) -> Conversation | None:
    """One unambiguous expression (colour, shape, size, position, relation) → its one object."""
    candidates = referring_expressions(scene.annotations)
    if not candidates:
        return None
    kind = rng.choice(sorted(candidates))
    expression, target = rng.choice(candidates[kind])
    prompt = sample_prompt("referring", rng, categories=[expression])
    regions = [Box(expression, list(scene.annotations[target].box))]
    return _conversation(scene, "referring", prompt, regions, [expression])


# --------------------------------------------------------------------------- OCR, GUI, keypoints


def _ocr_granularity(scene: Scene, rng: random.Random) -> str:
    categories = sorted({a.category for a in scene.annotations})
    return rng.choice(categories)


def sample_ocr_box(scene: Scene, rng: random.Random) -> Conversation:
    """Every word (or every text line) with its box; the phrase is the text itself."""
    granularity = _ocr_granularity(scene, rng)
    regions = [Box(a.text, list(a.box), text=a.text) for a in scene.annotations if a.category == granularity]
    prompt = sample_prompt("ocr_box", rng, categories=[granularity])
    return _conversation(scene, "ocr_box", prompt, regions, [r.phrase for r in regions])


def sample_ocr_polygon(scene: Scene, rng: random.Random) -> Conversation:
    granularity = _ocr_granularity(scene, rng)
    regions = [Polygon(a.text, list(a.polygon), text=a.text) for a in scene.annotations if a.category == granularity]
    prompt = sample_prompt("ocr_polygon", rng, categories=[granularity])
    return _conversation(scene, "ocr_polygon", prompt, regions, [r.phrase for r in regions])


def gui_phrase(annotation: Annotation, scene: Scene, rng: random.Random) -> str:
    """"Save button"; or the role alone ("title bar") when the screen has one element of it."""
    role = annotation.attributes["role"]
    alone = sum(a.attributes["role"] == role for a in scene.annotations) == 1
    if alone and rng.random() < 0.4:
        return role
    return f"{annotation.attributes['label']} {role}"


def _sample_gui(scene: Scene, rng: random.Random, task: str, region_type) -> Conversation:
    annotation = rng.choice(scene.annotations)
    phrase = gui_phrase(annotation, scene, rng)
    element = Box(phrase, list(annotation.box))
    region = element if region_type is Box else Point(phrase, annotation_point(annotation))
    prompt = sample_prompt(task, rng, categories=[phrase])
    return _conversation(scene, task, prompt, [region], [phrase], targets=[element])


def sample_gui_grounding(scene: Scene, rng: random.Random) -> Conversation:
    return _sample_gui(scene, rng, "gui_grounding", Box)


def sample_gui_pointing(scene: Scene, rng: random.Random) -> Conversation:
    return _sample_gui(scene, rng, "gui_pointing", Point)


def sample_keypoint(scene: Scene, rng: random.Random) -> Conversation:
    """Every person, left to right, with its box and its 17 keypoints (hidden ones `unvisible`)."""
    people = sorted(scene.annotations, key=lambda a: (a.box[0], a.box[1]))
    regions = [
        Keypoints(a.category, {name: a.keypoints[name] for name in KEYPOINT_SCHEMAS[a.category]}, box=list(a.box))
        for a in people
    ]
    prompt = sample_prompt("keypoint", rng, categories=[people[0].category], keypoint_type=people[0].category)
    return _conversation(scene, "keypoint", prompt, regions, [people[0].category])


def record_conversation(record) -> Conversation:
    """A real-data record (formats.Record) → detection of every category it holds, crowds left out.

    The released prompt is used (no sampling), so `rexomni data show` on a dataset is repeatable.
    """
    regions = [Box(a.category, list(a.box)) for a in record.annotations if a.attributes.get("iscrowd") != "1"]
    phrases = list(dict.fromkeys(r.phrase for r in regions)) or sorted({a.category for a in record.annotations})
    prompt = sample_prompt("detection", random.Random(0), released_share=1.0, categories=phrases or ["object"])
    return _conversation(record, "detection", prompt, regions, phrases)


# --------------------------------------------------------------------------- registry

Sampler = Callable[[Scene, random.Random], "Conversation | None"]

SAMPLERS: dict[str, Sampler] = {
    "detection": sample_detection,
    "referring": sample_referring,
    "pointing": sample_pointing,
    "visual_prompting": sample_visual_prompting,
    "ocr_box": sample_ocr_box,
    "ocr_polygon": sample_ocr_polygon,
    "gui_grounding": sample_gui_grounding,
    "gui_pointing": sample_gui_pointing,
    "keypoint": sample_keypoint,
}

# Which tasks (names of the `tasks.TASKS` registry) each world can pose.
WORLD_TASKS: dict[str, tuple[str, ...]] = {
    "shapes": ("detection", "referring", "pointing", "visual_prompting"),
    "ocr": ("ocr_box", "ocr_polygon"),
    "gui": ("gui_grounding", "gui_pointing"),
    "keypoints": ("keypoint",),
}


def sample_conversation(
    scene: Scene, task: str, rng: random.Random, absent_phrases: bool = True
) -> Conversation | None:
    """One conversation posing `task` on `scene`; `absent_phrases=False` asks only for categories
    the image holds (detection and pointing; a curriculum's first rungs)."""
    if task not in WORLD_TASKS.get(scene.world, ()):
        raise InputError(
            f"world {scene.world!r} cannot pose task {task!r}; it poses {WORLD_TASKS.get(scene.world, ())}"
        )
    if TASKS[task].absent_phrases:
        return SAMPLERS[task](scene, rng, absent_phrases=absent_phrases)
    return SAMPLERS[task](scene, rng)


# --------------------------------------------------------------------------- the stream


@dataclass(frozen=True)
class MixtureEntry:
    """One ingredient of the training mixture: a world (and split) posing one task, with a weight.

    `absent_phrases: false` (detection and pointing only) asks only for categories present.
    """

    world: str
    task: str
    weight: float = 1.0
    split: str = "normal"
    absent_phrases: bool = True


DEFAULT_MIXTURE: tuple[MixtureEntry, ...] = (
    MixtureEntry("shapes", "detection", 3.0),
    MixtureEntry("shapes", "detection", 1.0, split="dense"),
    MixtureEntry("shapes", "referring", 1.5),
    MixtureEntry("shapes", "pointing", 1.5),
    MixtureEntry("shapes", "pointing", 0.5, split="dense"),
    MixtureEntry("shapes", "visual_prompting", 1.0),
    MixtureEntry("ocr", "ocr_box", 1.0),
    MixtureEntry("ocr", "ocr_polygon", 1.0),
    MixtureEntry("gui", "gui_grounding", 1.0),
    MixtureEntry("gui", "gui_pointing", 1.0),
    MixtureEntry("keypoints", "keypoint", 1.0),
)


def _index_rng(seed: int, index: int) -> tuple[int, random.Random]:
    """A scene seed and a sampler RNG that depend only on (seed, index)."""
    scene_seed, sampler_seed = np.random.SeedSequence([seed, index]).generate_state(2)
    return int(scene_seed), random.Random(int(sampler_seed))


@dataclass
class ConversationStream:
    """Endless, seedable, resumable conversations over a mixture of (world, split, task).

    `stream[i]` is conversation i (pure in (seed, i)); iterating yields `start`, `start + step`,
    … forever. To resume, build the stream with `start=` the next index (or `load_state_dict`);
    to split work among data-loader workers give worker w `start=w, step=num_workers`.
    """

    mixture: Sequence[MixtureEntry] = DEFAULT_MIXTURE
    seed: int = 0
    start: int = 0
    step: int = 1
    _next: int = field(init=False)

    def __post_init__(self) -> None:
        if not self.mixture:
            raise InputError("the mixture needs at least one entry")
        # Entries may come from YAML as plain mappings: {world: shapes, task: detection, ...}.
        self.mixture = tuple(MixtureEntry(**e) if isinstance(e, dict) else e for e in self.mixture)
        for entry in self.mixture:
            if entry.task not in WORLD_TASKS.get(entry.world, ()):
                raise InputError(f"mixture entry {entry}: world {entry.world!r} cannot pose task {entry.task!r}")
            if not entry.absent_phrases and not TASKS[entry.task].absent_phrases:
                with_negatives = [task.name for task in TASKS.values() if task.absent_phrases]
                raise InputError(f"mixture entry {entry}: absent_phrases applies to {with_negatives} only")
            if not entry.weight > 0:
                raise InputError(f"mixture entry {entry}: weight must be positive")
        if self.step < 1 or self.start < 0:
            raise InputError("start must be ≥ 0 and step ≥ 1")
        weights = np.array([e.weight for e in self.mixture], dtype=np.float64)
        self._cumulative = np.cumsum(weights / weights.sum())
        self._next = self.start

    @property
    def tasks(self) -> list[str]:
        """The tasks the mixture poses (a trainer records them in the checkpoint it writes)."""
        return sorted({entry.task for entry in self.mixture})

    def entry_index(self, index: int) -> int:
        """Which mixture entry conversation `index` comes from, without drawing its scene (a
        trainer batches conversations of one entry together: their answers are alike in length)."""
        return self._pick_entry(_index_rng(self.seed, index)[1])

    def _pick_entry(self, rng: random.Random) -> int:
        return min(int(np.searchsorted(self._cumulative, rng.random())), len(self.mixture) - 1)

    def __getitem__(self, index: int) -> Conversation:
        return self.scene_and_conversation(index)[1]

    def scene_and_conversation(self, index: int) -> tuple[Scene, Conversation]:
        """Conversation `index` with the scene it was drawn from (for probes that need the
        scene's ground truth beside the image, `nano/oracle.py`)."""
        scene_seed, rng = _index_rng(self.seed, index)
        # A scene that cannot pose the drawn task (rare: no unambiguous referring expression)
        # is replaced by the next scene of the same entry; still pure in (seed, index).
        entry = self.mixture[self._pick_entry(rng)]
        while True:
            scene = generate(entry.world, scene_seed, entry.split)
            conversation = sample_conversation(scene, entry.task, rng, entry.absent_phrases)
            if conversation is not None:
                return scene, conversation
            scene_seed += 1_000_003

    def __iter__(self) -> Iterator[Conversation]:
        while True:
            index = self._next
            self._next += self.step
            yield self[index]

    def state_dict(self) -> dict:
        return {"seed": self.seed, "next": self._next, "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        if state["seed"] != self.seed:
            raise InputError(f"state is for seed {state['seed']}, this stream has seed {self.seed}")
        self._next, self.step = int(state["next"]), int(state["step"])
