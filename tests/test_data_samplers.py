"""Samplers write answers the parser reads back exactly; the stream is pure in (seed, index)."""

import itertools
import random

import pytest

from rexomni_core.coords import quantize_xy
from rexomni_core.data.referring import referring_expressions
from rexomni_core.data.samplers import (
    MAX_PROMPT_PHRASES,
    WORLD_TASKS,
    ConversationStream,
    MixtureEntry,
    sample_conversation,
)
from rexomni_core.data.worlds import generate
from rexomni_core.grammar import parse

WORLD_TASK_PAIRS = [(world, task) for world, tasks in WORLD_TASKS.items() for task in tasks]


def region_bins(region, width, height):
    if region.kind == "keypoints":
        points = {name: None if xy is None else tuple(quantize_xy(xy, width, height)) for name, xy in region.coords.items()}
        return (region.phrase, tuple(quantize_xy(region.bounds(), width, height)), tuple(sorted(points.items())))
    return (region.phrase, tuple(quantize_xy(region.coords, width, height)))


def assert_round_trip(conversation):
    """parse(answer) has no problems and gives back the ground truth to within one bin."""
    prediction = parse(conversation.answer, conversation.width, conversation.height, task=conversation.task)
    assert prediction.problems == [], (conversation.answer, prediction.problems)
    expected = sorted(region_bins(r, conversation.width, conversation.height) for r in conversation.regions)
    got = sorted(region_bins(r, conversation.width, conversation.height) for r in prediction.regions)
    assert len(expected) == len(got)
    for want, have in zip(expected, got):
        assert want[0] == have[0]
        assert _close(want[1:], have[1:]), (want, have)
    if conversation.task not in ("keypoint", "ocr_box", "ocr_polygon"):
        assert prediction.phrases == conversation.phrases


def _close(a, b):
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if a is None or b is None or isinstance(a, str) or isinstance(b, str):
        return a == b
    return abs(a - b) <= 1


@pytest.mark.parametrize("world,task", WORLD_TASK_PAIRS)
def test_answers_parse_back_to_the_ground_truth(world, task):
    rng = random.Random(0)
    made = 0
    for seed in range(12):
        conversation = sample_conversation(generate(world, seed), task, rng)
        if conversation is None:
            continue
        made += 1
        assert conversation.prompt and conversation.answer
        assert_round_trip(conversation)
    assert made >= 6


def test_detection_prompts_list_one_to_six_phrases_with_negatives():
    rng = random.Random(1)
    negatives = 0
    for seed in range(40):
        scene = generate("shapes", seed)
        conversation = sample_conversation(scene, "detection", rng)
        assert 1 <= len(conversation.phrases) <= MAX_PROMPT_PHRASES
        present = {a.category for a in scene.annotations}
        absent = [p for p in conversation.phrases if p not in present]
        negatives += len(absent)
        prediction = parse(conversation.answer, scene.width, scene.height)
        assert sorted(prediction.absent) == sorted(absent)
        for phrase in conversation.phrases:
            assert phrase in conversation.prompt
    assert negatives > 0


def test_pointing_targets_lie_inside_their_masks():
    rng = random.Random(2)
    for seed in range(20):
        scene = generate("shapes", seed, "dense")
        conversation = sample_conversation(scene, "pointing", rng)
        masks = {}
        for annotation in scene.annotations:
            masks.setdefault(annotation.category, []).append(annotation.mask.full(scene.width, scene.height))
        for point in conversation.regions:
            x, y = point.coords
            assert any(mask[int(y), int(x)] for mask in masks[point.phrase])


def test_referring_expressions_pick_exactly_one_object():
    for seed in range(30):
        scene = generate("shapes", seed)
        for kind, expressions in referring_expressions(scene.annotations).items():
            for expression, index in expressions:
                target = scene.annotations[index]
                # Spot-check the meaning of the simple kinds.
                if kind == "unique":
                    noun = expression.removeprefix("the ")
                    matches = [a for a in scene.annotations if noun in (a.category, a.attributes["shape"], f"{a.attributes['colour']} shape", "shape")]
                    assert matches == [target], expression
                if expression.startswith("the largest "):
                    areas = sorted(a.mask.bits.sum() for a in scene.annotations if _describes(expression[12:], a))
                    assert target.mask.bits.sum() == areas[-1]


def _describes(noun, annotation):
    colour, shape = annotation.attributes["colour"], annotation.attributes["shape"]
    return noun in ("shape", shape, f"{colour} shape", f"{colour} {shape}")


def test_visual_prompt_answers_every_instance_of_the_reference_category():
    rng = random.Random(3)
    for seed in range(20):
        scene = generate("shapes", seed)
        conversation = sample_conversation(scene, "visual_prompting", rng)
        boxes = sorted(tuple(r.coords) for r in conversation.regions)
        categories = {a.category for a in scene.annotations if tuple(a.box) in boxes}
        assert len(categories) == 1
        category = categories.pop()
        assert boxes == sorted(tuple(a.box) for a in scene.annotations if a.category == category)


def test_stream_is_pure_in_seed_and_index_and_resumes():
    stream = ConversationStream(seed=5)
    first = [(c.task, c.prompt, c.answer) for c in itertools.islice(iter(stream), 6)]
    again = [(c.task, c.prompt, c.answer) for c in itertools.islice(iter(ConversationStream(seed=5)), 6)]
    assert first == again
    resumed = ConversationStream(seed=5)
    it = iter(resumed)
    next(it), next(it)
    state = resumed.state_dict()
    fresh = ConversationStream(seed=5)
    fresh.load_state_dict(state)
    assert [(c.task, c.prompt, c.answer) for c in itertools.islice(iter(fresh), 4)] == first[2:]
    worker = ConversationStream(seed=5, start=1, step=2)
    assert [(c.task, c.prompt, c.answer) for c in itertools.islice(iter(worker), 3)] == first[1::2]
    assert first != [(c.task, c.prompt, c.answer) for c in itertools.islice(iter(ConversationStream(seed=6)), 6)]


def test_stream_rejects_a_task_its_world_cannot_pose():
    with pytest.raises(ValueError, match="cannot pose"):
        ConversationStream(mixture=[MixtureEntry("shapes", "ocr_box")])


def test_messages_carry_prompt_and_answer():
    conversation = ConversationStream(seed=0)[0]
    roles = [m["role"] for m in conversation.messages()]
    assert roles == ["system", "user", "assistant"]
    assert conversation.messages()[2]["content"][0]["text"] == conversation.answer


def test_mixture_entries_may_be_plain_mappings_as_read_from_yaml():
    from rexomni_core.data.samplers import ConversationStream, MixtureEntry

    stream = ConversationStream(mixture=[{"world": "shapes", "task": "detection", "split": "dense"}], seed=3)
    assert stream.mixture == (MixtureEntry("shapes", "detection", 1.0, "dense"),)
    assert stream[0].task == "detection"
    with pytest.raises(TypeError):
        ConversationStream(mixture=[{"world": "shapes", "tsk": "detection"}])


@pytest.mark.parametrize("task", ["detection", "pointing"])
def test_without_absent_phrases_every_phrase_asked_is_in_the_image(task):
    stream = ConversationStream(seed=4, mixture=[{"world": "shapes", "task": task, "split": "few", "absent_phrases": False}])
    for index in range(30):
        conversation = stream[index]
        assert conversation.phrases and set(conversation.phrases) <= {r.phrase for r in conversation.regions}
        assert "None" not in conversation.answer
        assert_round_trip(conversation)
    with_absent = ConversationStream(seed=4, mixture=[{"world": "shapes", "task": task, "split": "few"}])
    assert any("None" in with_absent[index].answer for index in range(30))


def test_absent_phrases_off_is_refused_for_tasks_without_negatives():
    with pytest.raises(ValueError, match="absent_phrases"):
        ConversationStream(mixture=[{"world": "shapes", "task": "referring", "absent_phrases": False}])


def test_worlds_pose_tasks_of_the_registry_and_every_task_is_posed():
    from rexomni_core.data.samplers import SAMPLERS
    from rexomni_core.tasks import TASKS

    posed = [task for tasks in WORLD_TASKS.values() for task in tasks]
    assert sorted(posed) == sorted(TASKS) == sorted(SAMPLERS)
    assert [name for name, task in TASKS.items() if task.absent_phrases] == ["detection", "pointing"]
