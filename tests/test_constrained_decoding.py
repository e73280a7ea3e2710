"""Grammar-constrained decoding (model/decoding.py): the automata accept every answer the data
engines write, refuse what the grammar forbids, and make even a randomly initialised model write
only well-formed answers that name only the phrases asked."""

import random

import numpy as np
import pytest

pytest.importorskip("transformers")
import torch
from PIL import Image

from rexomni_core import RexOmni
from rexomni_core.data.samplers import WORLD_TASKS, sample_conversation
from rexomni_core.data.worlds import generate
from rexomni_core.geometry import box_iou
from rexomni_core.grammar import BOX_END, BOX_START, IM_END, REF_END, REF_START
from rexomni_core.model import NANO_DIR, CoordinateMassProcessor, generation_settings
from rexomni_core.model.decoding import AnswerLimits, GrammarConstraint, answer_automaton
from rexomni_core.nano.architecture import build_nano
from rexomni_core.nano.vocabulary import SHAPE_CATEGORIES
from rexomni_core.tasks import KEYPOINT_SCHEMAS, TASKS, get_task
from tests.test_model_sft import MICRO

SHIPPED = (NANO_DIR / "model.safetensors").is_file()
needs_shipped = pytest.mark.skipif(not SHIPPED, reason="nano checkpoint not shipped yet")
PERSON = KEYPOINT_SCHEMAS["person"]


@pytest.fixture(scope="module")
def micro():
    """A randomly initialised micro nano (coordinate-mass decoding on, as nano's)."""
    return build_nano(seed=0, text=MICRO["text"], vision=MICRO["vision"])


@pytest.fixture(scope="module")
def shipped():
    return RexOmni.from_pretrained() if SHIPPED else None


def automaton(model, task, phrases, limits=AnswerLimits()):
    names = PERSON if task == "keypoint" else None
    return answer_automaton(model.answer_vocabulary, get_task(task), phrases, names, limits)


def allowed(move_list, token):
    return any(move.allows(token) for move in move_list)


def write(model, machine, text, budget=10_000):
    """Feed `text`'s tokens; the index of the first token the grammar refuses, or None."""
    for i, token in enumerate(model.tokenizer.encode(text, add_special_tokens=False)):
        if machine.done or not allowed(machine.offer(budget - i), token):
            return i
        machine.advance(token)
    return None


def offered_ids(model, machine):
    mask = torch.zeros(len(model.tokenizer), dtype=torch.bool)
    for move in machine.offer(10_000):
        if move.ids.dtype == torch.bool:
            mask |= move.ids
        else:
            mask[move.ids] = True
    return set(mask.nonzero().flatten().tolist())


def bin_ids(model, bins):
    return {model.coordinate_ids[b] for b in bins}


@pytest.mark.parametrize("world", sorted(WORLD_TASKS))
def test_every_answer_the_data_engines_write_is_accepted(micro, world):
    rng = random.Random(0)
    for seed in range(6):
        scene = generate(world, 500 + seed, "normal")
        for task in WORLD_TASKS[world]:
            conversation = sample_conversation(scene, task, rng)
            if conversation is None:
                continue
            machine = automaton(micro, task, conversation.phrases)
            answer = conversation.answer + IM_END
            assert write(micro, machine, answer) is None, (task, answer)
            assert machine.done and machine.cost() == 0


def test_only_asked_phrases_each_once_and_the_end_only_when_all_have_a_group(micro):
    machine = automaton(micro, "detection", ["red circle", "blue star"])
    group = f"{REF_START}red circle{REF_END}{BOX_START}<1><2><3><4>{BOX_END}"
    assert write(micro, machine, f"{REF_START}green square") is not None
    machine = automaton(micro, "detection", ["red circle", "blue star"])
    assert write(micro, machine, group) is None
    im_end = micro.tokenizer.convert_tokens_to_ids(IM_END)
    assert im_end not in offered_ids(micro, machine)  # blue star has no group yet
    again = automaton(micro, "detection", ["red circle", "blue star"])
    assert write(micro, again, f"{group}, {group}") is not None  # red circle twice
    assert write(micro, machine, f", {REF_START}blue star{REF_END}{BOX_START}None{BOX_END}") is None
    assert offered_ids(micro, machine) == {im_end}


def test_boxes_have_x1_not_below_x0_and_no_duplicates_of_the_same_phrase(micro):
    machine = automaton(micro, "detection", ["red circle", "blue star"])
    assert write(micro, machine, f"{REF_START}red circle{REF_END}{BOX_START}<100><200>") is None
    assert offered_ids(micro, machine) == bin_ids(micro, range(100, 1000))
    assert write(micro, machine, "<300>") is None
    assert offered_ids(micro, machine) == bin_ids(micro, range(200, 1000))
    assert write(micro, machine, "<400>,<100><200><300>") is None
    # y1 = 400 would repeat the box; IoU > 0.9 with it are the y1 within 10 % of its height.
    duplicates = {y1 for y1 in range(200, 1000) if box_iou([100, 200, 300, y1], [100, 200, 300, 400]) > 0.9}
    assert 400 in duplicates and len(duplicates) > 10
    assert offered_ids(micro, machine) == bin_ids(micro, set(range(200, 1000)) - duplicates)
    # Another phrase may hold the same box.
    other = f"<500>{BOX_END}, {REF_START}blue star{REF_END}{BOX_START}<100><200><300><400>{BOX_END}"
    assert write(micro, machine, other) is None


def test_points_are_never_repeated_and_region_runs_have_the_task_length(micro):
    machine = automaton(micro, "pointing", ["red circle"])
    assert write(micro, machine, f"{REF_START}red circle{REF_END}{BOX_START}<10><20>,<10>") is None
    assert bin_ids(micro, [20]) & offered_ids(micro, machine) == set()
    assert write(micro, automaton(micro, "pointing", ["red circle"]),
                 f"{REF_START}red circle{REF_END}{BOX_START}<10><20><30>") is not None


def test_polygons_are_even_and_at_least_six_coordinates_and_ocr_text_is_free(micro):
    opening = f"{REF_START}EXIT 12{REF_END}{BOX_START}"
    box_end = micro.tokenizer.convert_tokens_to_ids(BOX_END)
    machine = automaton(micro, "ocr_polygon", ["word"])
    assert write(micro, machine, opening + "<1><2><3><4>") is None
    assert box_end not in offered_ids(micro, machine)
    assert write(micro, machine, "<5><6>") is None
    assert box_end in offered_ids(micro, machine)
    assert write(micro, machine, "<7>") is None
    assert box_end not in offered_ids(micro, machine)
    # OCR: one region per group; the answer may end at any group boundary, even at once.
    machine = automaton(micro, "ocr_box", ["word"])
    assert write(micro, machine, opening + "<1><2><3><4>,") is not None
    assert write(micro, automaton(micro, "ocr_box", ["word"]), IM_END) is None
    assert write(micro, automaton(micro, "ocr_box", ["word"]), f"{REF_START} {REF_END}") is not None  # blank text


def test_caps_per_phrase_and_per_answer(micro):
    limits = AnswerLimits(max_regions=3, max_regions_per_phrase=2)
    machine = automaton(micro, "detection", ["red circle", "blue star", "green square"], limits)
    comma = micro.tokenizer.convert_tokens_to_ids(",")
    box_end = micro.tokenizer.convert_tokens_to_ids(BOX_END)
    assert write(micro, machine, f"{REF_START}red circle{REF_END}{BOX_START}<1><1><5><5>,<50><50><60><60>") is None
    assert offered_ids(micro, machine) == {box_end}  # 2 per phrase
    assert write(micro, machine, f"{BOX_END}, {REF_START}blue star{REF_END}{BOX_START}<1><1><5><5>") is None
    assert comma not in offered_ids(micro, machine)  # 3 per answer
    assert write(micro, machine, BOX_END) is None
    # The answer is full: it ends, though green square has no group.
    assert offered_ids(micro, machine) == {micro.tokenizer.convert_tokens_to_ids(IM_END)}


def test_keypoint_json_is_the_serialized_layout(micro):
    machine = automaton(micro, "keypoint", ["person"])
    assert write(micro, machine, '{"person1": {"bbox": " <10> <20> <5>') is not None  # x1 < x0
    machine = automaton(micro, "keypoint", ["person"])
    assert write(micro, machine, '{"person2"') is not None  # instances are numbered from 1
    machine = automaton(micro, "keypoint", ["person"])
    assert write(micro, machine, '```json\n{"person1": {"bbox": " <10> <20> <50> <90> ", "keypoints": {"nose": "unvisible", '
                                 '"left eye": " <30> <30> ", "left ear"') is not None  # "right eye" comes first
    assert write(micro, automaton(micro, "keypoint", ["person"]), "```json\n{}\n```" + IM_END) is None


def test_the_constraint_composes_with_coordinate_mass_decoding(micro):
    vocab = micro.answer_vocabulary
    machine = automaton(micro, "detection", ["red circle"])
    text = f"{REF_START}red circle{REF_END}{BOX_START}"
    tokens = micro.tokenizer.encode(text, add_special_tokens=False)
    prompt = [5, 6]
    constraint = GrammarConstraint([machine], prompt_length=len(prompt), max_new_tokens=100)
    mass = CoordinateMassProcessor(micro.coordinate_ids, vocab.box_start, vocab.box_end)
    ids = list(prompt)
    for token in tokens:  # walk the constraint to the first coordinate of the group
        constraint(torch.tensor([ids]), torch.zeros(1, len(micro.tokenizer)))
        ids.append(token)
    scores = torch.full((1, len(micro.tokenizer)), -30.0)
    scores[0, micro.coordinate_ids] = 0.0  # the bins together: most of the mass
    scores[0, vocab.box_end] = 5.0  # the likeliest single token, which the grammar forbids here
    scores[0, micro.coordinate_ids[:100]] = -30.0
    masked = constraint(torch.tensor([ids]), scores.clone())
    assert torch.isinf(masked[0, vocab.box_end])
    chosen = int(mass(torch.tensor([ids]), masked).argmax())
    assert chosen in micro.coordinate_ids[100:]


def test_random_walks_through_every_grammar_parse_cleanly(micro):
    """Tokens drawn at random among those offered (every move alike, so OCR groups, polygons and
    keypoint instances are all visited), under budgets that leave room for a minimal answer."""
    from rexomni_core.grammar import parse

    rng = random.Random(1)
    for task in TASKS:
        for _ in range(12):
            phrases = ["person"] if task == "keypoint" else rng.sample(["red circle", "red", "blue star", "EXIT"], rng.randint(1, 3))
            limits = AnswerLimits(max_regions=rng.choice([None, 3]), max_regions_per_phrase=rng.choice([None, 2]))
            machine = automaton(micro, task, phrases, limits)
            budget = machine.cost() + rng.choice([0, 5, 40, 300])
            tokens = []
            while not machine.done:
                assert len(tokens) < budget, (task, micro.tokenizer.decode(tokens))
                move = rng.choice(machine.offer(budget - len(tokens)))
                ids = move.ids.nonzero().flatten() if move.ids.dtype == torch.bool else move.ids
                tokens.append(int(ids[rng.randrange(len(ids))]))
                machine.advance(tokens[-1])
            text = micro.tokenizer.decode(tokens, skip_special_tokens=False)
            prediction = parse(text, 640, 480, task=task)
            assert prediction.well_formed and text.endswith(IM_END), (task, prediction.problems, text)
            if limits.max_regions is not None:
                assert len(prediction.regions) <= limits.max_regions
            if task != "keypoint" and not TASKS[task].ocr:
                assert set(prediction.phrases) <= set(phrases)


def random_requests(rng, task, count):
    """`count` random prompts of `task`: images of noise, phrases from the nano vocabulary."""
    spec = TASKS[task]
    images = [Image.fromarray(np.random.default_rng(rng.randrange(10**6)).integers(0, 255, (112, 112, 3), np.uint8))
              for _ in range(count)]
    if spec.ocr:
        categories = [[rng.choice(["word", "text line"])] for _ in images]
    elif spec.needs_visual_prompt:
        categories = None
    elif spec.needs_keypoint_type:
        categories = [["person"] for _ in images]
    else:
        categories = [rng.sample(SHAPE_CATEGORIES, rng.randint(1, 4 if spec.family != "gui" else 1)) for _ in images]
    boxes = [[[10, 10, 60, 70]] for _ in images] if spec.needs_visual_prompt else None
    return images, categories, boxes


def test_a_random_nano_with_constraints_writes_only_well_formed_answers(micro):
    """200 random prompts across every task, greedy (a random model then repeats one token:
    freely decoded it writes only newlines) and sampled (a random walk through the grammar),
    some with a budget too small for a free answer."""
    rng = random.Random(0)
    torch.manual_seed(0)
    count = 0
    for n, (task, sample) in enumerate((task, sample) for task in TASKS for sample in (False, True)):
        per_batch = 200 // (2 * len(TASKS)) + (1 if n < 200 % (2 * len(TASKS)) else 0)
        images, categories, boxes = random_requests(rng, task, per_batch)
        predictions = micro.predict_batch(
            images, task=task, categories=categories, visual_prompt_boxes=boxes,
            keypoint_type="person" if task == "keypoint" else None, do_sample=sample,
            max_new_tokens=rng.choice([40, 120]) if task != "keypoint" else 200, max_regions_per_phrase=6,
        )
        for i, prediction in enumerate(predictions):
            count += 1
            assert prediction.well_formed, (task, prediction.problems, prediction.raw_text)
            assert prediction.raw_text.endswith(IM_END), (task, prediction.raw_text)
            asked = set(categories[i]) if categories else {"object_1"}
            if task == "keypoint":
                assert {r.instance_id for r in prediction.regions} == {f"person{k + 1}" for k in range(len(prediction.regions))}
            elif not TASKS[task].ocr:
                assert prediction.phrases and set(prediction.phrases) == asked, (prediction.phrases, asked)
                assert prediction.raw_text.count(REF_START) == len(asked)  # each phrase exactly once
            for region in prediction.regions:
                assert 0.0 <= region.score <= 1.0
                if region.kind in ("box", "keypoints"):
                    x0, y0, x1, y1 = region.bounds()
                    assert x1 >= x0 and y1 >= y0
            boxes_of = {}
            for region in prediction.regions:
                if region.kind == "box":
                    for earlier in boxes_of.get(region.phrase, []):
                        assert box_iou(earlier, region.coords) <= 0.9 + 1e-9
                    boxes_of.setdefault(region.phrase, []).append(region.coords)
    assert count == 200


def test_a_tight_budget_still_closes_every_answer(micro):
    image = Image.new("RGB", (112, 112), (30, 60, 90))
    for task, categories, budget in [("detection", ["red circle", "blue star"], 22), ("pointing", ["red circle"], 9),
                                     ("ocr_polygon", ["word"], 14), ("keypoint", ["person"], 30)]:
        prediction = micro.predict(image, task=task, categories=categories, keypoint_type="person", max_new_tokens=budget)
        assert prediction.well_formed and prediction.raw_text.endswith(IM_END), (task, prediction.raw_text)
        assert prediction.num_output_tokens <= budget


def test_free_decoding_is_the_released_decoding(shipped):
    """`constrained=False` gives the tokens the released wrapper's generate call gives."""
    if shipped is None:
        pytest.skip("nano checkpoint not shipped yet")
    world = [generate("shapes", 70_000 + seed, "normal") for seed in range(3)]
    for scene in world:
        categories = sorted({a.category for a in scene.annotations})[:3] + ["purple star"]
        free = shipped.predict(scene.image, categories=categories, constrained=False)
        prompt = free.prompt
        inputs = shipped.encode([scene.image], [shipped.chat_text(prompt)])
        settings = generation_settings(shipped.model.generation_config.max_new_tokens, {})
        mass = CoordinateMassProcessor(shipped.coordinate_ids, *shipped.box_ids)
        eos = shipped.tokenizer.convert_tokens_to_ids(IM_END)
        with torch.inference_mode():
            output = shipped.model.generate(**inputs, eos_token_id=eos, pad_token_id=shipped.tokenizer.pad_token_id,
                                            logits_processor=[mass], **settings)
        released = shipped.tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=False)
        assert free.raw_text == released


@needs_shipped
def test_constraints_keep_or_improve_the_shipped_nano_on_held_out_scenes(shipped):
    hits = {True: 0, False: 0}
    wrong_phrases = {True: 0, False: 0}
    total = 0
    for seed in range(12):
        scene = generate("shapes", 71_000 + seed, "few")
        asked = sorted({a.category for a in scene.annotations})
        total += len(scene.annotations)
        for constrained in (True, False):
            prediction = shipped.predict(scene.image, categories=asked, constrained=constrained)
            wrong_phrases[constrained] += sum(r.phrase not in asked for r in prediction.regions)
            hits[constrained] += sum(
                any(r.phrase == a.category and box_iou(r.coords, a.box) >= 0.5 for r in prediction.regions)
                for a in scene.annotations
            )
    assert wrong_phrases[True] == 0
    assert hits[True] >= hits[False], (hits, total)
