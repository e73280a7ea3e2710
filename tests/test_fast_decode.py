"""The lean greedy loop (model/fast_decode.py) writes what `generate` writes, token for token,
with the same scores, on held-out prompts of every task, alone and in left-padded batches; any
setting it does not mirror goes through `generate`."""

import copy
import random

import numpy as np
import pytest

pytest.importorskip("transformers")
import torch
from PIL import Image
from transformers import LogitsProcessorList

from rexomni_core import RexOmni
from rexomni_core.data.samplers import sample_conversation
from rexomni_core.data.worlds import generate as generate_scene
from rexomni_core.grammar import IM_END
from rexomni_core.model import NANO_DIR, CoordinateMassProcessor, fast_decode, generation_settings, with_processors
from rexomni_core.model.confidence import TokenProbabilities
from rexomni_core.model.decoding import AnswerLimits, GrammarConstraint, answer_automaton
from rexomni_core.model.fast_decode import greedy_decode, needs_generate
from rexomni_core.nano.architecture import build_nano
from rexomni_core.nano.heldout import HELDOUT_SEED
from rexomni_core.tasks import get_task
from tests.test_model_sft import MICRO

SHIPPED = (NANO_DIR / "model.safetensors").is_file()
needs_shipped = pytest.mark.skipif(not SHIPPED, reason="nano checkpoint not shipped yet")
WORLD = {"detection": "shapes", "referring": "shapes", "pointing": "shapes", "visual_prompting": "shapes",
         "ocr_polygon": "ocr", "keypoint": "keypoints"}
BUDGET = 40  # tokens per answer: enough for several regions, short enough for a fast test


@pytest.fixture(scope="module")
def shipped():
    return RexOmni.from_pretrained() if SHIPPED else None


@pytest.fixture(scope="module")
def micro():
    return build_nano(seed=0, text=MICRO["text"], vision=MICRO["vision"])


def held_out_requests(task: str, count: int) -> dict:
    """`predict_batch` arguments for `count` held-out scenes of `task`'s world (seeds no training
    stream draws), asking what the data engines would ask."""
    rng = random.Random(task)
    images, categories, boxes = [], [], []
    for k in range(count):
        scene = generate_scene(WORLD[task], HELDOUT_SEED * 10 + k, "normal")
        images.append(scene.image)
        if task == "visual_prompting":
            boxes.append([list(a.box) for a in scene.annotations[: 1 + k % 2]])
        elif task == "ocr_polygon":
            categories.append(["word"] if k % 2 else ["text line", "word"])
        elif task == "keypoint":
            categories.append(["person"])
        else:
            categories.append(sample_conversation(scene, task, rng).phrases)
    return {"images": images, "task": task, "categories": categories or None, "visual_prompt_boxes": boxes or None,
            "keypoint_type": "person" if task == "keypoint" else None}


def answers(model, requests, **options):
    return [(p.raw_text, p.num_prompt_tokens, p.num_output_tokens, [(r.phrase, r.coords, r.score) for r in p.regions])
            for p in model.predict_batch(**requests, max_new_tokens=BUDGET, **options)]


def assert_same_answers(fast, slow, context):
    """The same tokens, hence text, regions and counts; scores equal up to float32 rounding (a
    drafted chunk rounds the decoder's products differently from one token at a time)."""
    strip = [(text, prompt, output, [(phrase, coords) for phrase, coords, _ in regions])
             for text, prompt, output, regions in fast]
    assert strip == [(text, prompt, output, [(phrase, coords) for phrase, coords, _ in regions])
                     for text, prompt, output, regions in slow], context
    fast_scores = [score for answer in fast for _, _, score in answer[3]]
    slow_scores = [score for answer in slow for _, _, score in answer[3]]
    np.testing.assert_allclose(fast_scores, slow_scores, rtol=1e-4, atol=1e-6, err_msg=str(context))


@needs_shipped
@pytest.mark.parametrize("task", sorted(WORLD))
def test_predict_answers_as_generate_does_alone_and_batched(shipped, task):
    batch = held_out_requests(task, 4)
    single = {**batch, "images": batch["images"][:1], "categories": batch["categories"] and batch["categories"][:1],
              "visual_prompt_boxes": batch["visual_prompt_boxes"] and batch["visual_prompt_boxes"][:1]}
    regions = 0
    for requests in (single, batch):
        for constrained in (True, False):
            fast = answers(shipped, requests, constrained=constrained)
            slow = answers(shipped, requests, constrained=constrained, fast_decode=False)
            if constrained:  # the grammar drafts the tokens it forces (float32)
                assert_same_answers(fast, slow, (task, constrained))
            else:  # one token a step: the same computation, bit for bit
                assert fast == slow, (task, constrained)
            regions += sum(len(answer[3]) for answer in fast)
    if task != "keypoint":  # every keypoint prompt is the same sentence; its JSON outruns the budget
        assert len({answer[1] for answer in fast}) > 1, "the batch should need left padding"
        assert regions, "some answer should hold regions (and scores) to compare"


@needs_shipped
def test_the_loop_returns_generates_ids_and_the_recorder_sees_the_same_probabilities(shipped):
    """Below `predict`: the ids tensor and every recorded probability, bit for bit, with the
    repetition penalty and coordinate-mass decoding, three prompts of different lengths."""
    batch = held_out_requests("detection", 3)
    prompts = [shipped.chat_text(f"Detect {', '.join(c)}.") for c in batch["categories"]]
    inputs = shipped.encode(batch["images"], prompts)
    padding = (inputs["attention_mask"] == 0).sum(dim=1)
    assert padding.max() > 0
    eos, pad = shipped.tokenizer.convert_tokens_to_ids(IM_END), shipped.tokenizer.pad_token_id
    outputs, records = [], []
    for fast in (True, False):
        recorder = TokenProbabilities(shipped.coordinate_ids)
        mass = CoordinateMassProcessor(shipped.coordinate_ids, *shipped.box_ids)
        settings = with_processors(generation_settings(BUDGET, {}), recorder, None, mass, prompt_padding=padding)
        with torch.inference_mode():
            if fast:
                assert not needs_generate(shipped.model, settings)
                output = greedy_decode(shipped.model, inputs, settings["logits_processor"], BUDGET, eos, pad)
            else:
                output = shipped.model.generate(**inputs, eos_token_id=eos, pad_token_id=pad, **settings)
        outputs.append(output)
        records.append(recorder.finish(output[:, -1]))
    assert torch.equal(*outputs)
    for fast, slow in zip(*records):
        for field in ("p", "mass", "window"):
            np.testing.assert_array_equal(getattr(fast, field), getattr(slow, field))


@needs_shipped
def test_predict_does_not_call_generate_unless_a_setting_needs_it(shipped, monkeypatch):
    calls = []
    real = shipped.model.generate
    monkeypatch.setattr(shipped.model, "generate", lambda *a, **k: calls.append(k) or real(*a, **k))
    image = Image.new("RGB", (112, 112), (200, 40, 40))
    shipped.predict(image, categories=["red circle"], max_new_tokens=12)
    assert calls == []
    torch.manual_seed(0)
    shipped.predict(image, categories=["red circle"], max_new_tokens=12, do_sample=True, top_k=5)
    assert len(calls) == 1 and calls[0]["do_sample"] is True
    shipped.predict(image, categories=["red circle"], max_new_tokens=12, fast_decode=False)
    assert len(calls) == 2


def test_sampling_and_other_settings_fall_back_and_the_released_greedy_setting_does_not(micro):
    model = micro.model
    recorder = TokenProbabilities(micro.coordinate_ids)
    greedy = with_processors(generation_settings(64, {}), recorder)
    assert needs_generate(model, greedy) == []
    assert needs_generate(model, with_processors(generation_settings(64, {"do_sample": True}), recorder)) == [
        "do_sample=True"]
    assert needs_generate(model, {**greedy, "num_beams": 3}) == ["num_beams=3"]
    assert needs_generate(model, {**greedy, "no_repeat_ngram_size": 2}) == ["no_repeat_ngram_size=2"]
    # Without the recorder the penalty stays with generate, which runs it before custom processors.
    assert needs_generate(model, generation_settings(64, {})) == ["repetition_penalty=1.05"]
    # A checkpoint configured to sample, as Qwen2.5-VL's generation_config.json is (the released
    # Rex-Omni's decoding): predict decodes it greedy, so the loop takes it.
    saved = copy.deepcopy(model.generation_config)
    try:
        model.generation_config.update(do_sample=True, temperature=0.1, top_k=1, top_p=0.001, repetition_penalty=1.05)
        assert needs_generate(model, greedy) == []
        assert needs_generate(model, {**greedy, "do_sample": True}) == ["do_sample=True"]
        model.train()
        assert needs_generate(model, greedy) == ["training mode (dropout)"]
    finally:
        model.eval()
        model.generation_config = saved


def test_a_model_without_grouped_heads_drafts_and_decodes_as_generate():
    """One key/value head per query head (no grouping): drafted chunks take SDPA's plain path."""
    model = build_nano(seed=2, text={**MICRO["text"], "num_key_value_heads": MICRO["text"]["num_attention_heads"]},
                       vision=MICRO["vision"])
    assert model.model.config.text_config.num_key_value_heads == model.model.config.text_config.num_attention_heads
    rng = np.random.default_rng(3)
    images = [Image.fromarray(rng.integers(0, 255, (100 + 12 * k, 112, 3), np.uint8)) for k in range(2)]
    requests = {"images": images, "task": "detection", "categories": [["red circle", "blue star"], ["green square"]]}
    assert_same_answers(answers(model, requests), answers(model, requests, fast_decode=False), "no grouping")


def test_a_prompt_first_model_decodes_as_generate(micro):
    """The prompt before the image moves the image's 3-D rope positions: the loop's must follow."""
    model = RexOmni(copy.deepcopy(micro.model), micro.processor)
    model.prompt_first = True
    rng = np.random.default_rng(4)
    images = [Image.fromarray(rng.integers(0, 255, (96 + 16 * k, 112, 3), np.uint8)) for k in range(2)]
    requests = {"images": images, "task": "detection", "categories": [["red circle", "blue star"], ["green square"]]}
    assert_same_answers(answers(model, requests), answers(model, requests, fast_decode=False), "prompt first")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_a_random_micro_model_with_grouped_heads_decodes_as_generate(micro, dtype):
    """Another size (2 heads sharing one key/value head, 2 layers), in float32 and in bfloat16
    (the released checkpoint's GPU dtype), both grammars."""
    model = micro if dtype == torch.float32 else RexOmni(copy.deepcopy(micro.model).to(dtype), micro.processor)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (90 + 20 * k, 112, 3), np.uint8)) for k in range(3)]
    for task, categories in [("detection", [["red circle"], ["red circle", "blue star"], ["green square"]]),
                             ("keypoint", [["person"]] * 3)]:
        requests = {"images": images, "task": task, "categories": categories,
                    "keypoint_type": "person" if task == "keypoint" else None}
        for constrained in (True, False):
            fast = answers(model, requests, constrained=constrained)
            slow = answers(model, requests, constrained=constrained, fast_decode=False)
            if constrained and dtype == torch.float32:  # drafted chunks
                assert_same_answers(fast, slow, (task, constrained))
            else:  # one token a step (bfloat16 does not draft): bit for bit
                assert fast == slow, (task, constrained)


def test_the_grammar_names_the_tokens_it_forces_without_moving(micro):
    """After a phrase's first word only its rest, `<|object_ref_end|>` and `<|box_start|>` can
    follow; after `<|box_start|>` a coordinate or `None` may: the run stops there."""
    vocab, encode = micro.answer_vocabulary, micro.answer_vocabulary.encode
    machine = answer_automaton(vocab, get_task("detection"), ["red circle", "blue star"], None, AnswerLimits())
    constraint = GrammarConstraint([machine], prompt_length=2, max_new_tokens=100)
    ids = [5, 6]
    for token in (vocab.ref_start,):
        constraint(torch.tensor([ids]), torch.zeros(1, len(micro.tokenizer)))
        ids.append(token)
    constraint(torch.tensor([ids]), torch.zeros(1, len(micro.tokenizer)))  # offers the phrases' first tokens
    red = encode("red circle")
    offered = [move.example for move in machine._offered]
    (run,) = constraint.forced_after([red[0]], generated=1)
    assert run == (*red[1:], vocab.ref_end, vocab.box_start)
    assert [move.example for move in machine._offered] == offered  # the live automaton did not move
    (short,) = GrammarConstraint([copy.copy(machine)], 2, max_new_tokens=4).forced_after([red[0]], generated=1)
    assert len(short) == 4 - 2  # within the budget: the answer's tokens 2 and 3


class BanToken:
    """A processor that masks one token at every step: where the grammar forces that token, the
    model's choice disagrees with the draft."""

    def __init__(self, token):
        self.token = token

    def __call__(self, input_ids, scores):
        scores = scores.clone()
        scores[:, self.token] = float("-inf")
        return scores


def test_a_drafted_chunk_is_cut_where_the_model_disagrees_and_answers_stay_generates(micro, monkeypatch):
    """Drafts happen (steps of several tokens), a disagreement rewinds the cache, and the ids are
    still `generate`'s with the same processors."""
    model, vocab = micro.model, micro.answer_vocabulary
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 255, (112, 112, 3), np.uint8)) for _ in range(2)]
    phrases = [["red circle", "blue star"], ["green square"]]
    inputs = micro.encode(images, [micro.chat_text(f"Detect {', '.join(p)}.") for p in phrases])
    eos, pad = micro.tokenizer.convert_tokens_to_ids(IM_END), micro.tokenizer.pad_token_id
    chunks, rewinds = [], []
    real_step, real_rewind = fast_decode._TextDecoder.step, fast_decode._TextDecoder.rewind
    monkeypatch.setattr(fast_decode._TextDecoder, "step", lambda self, t: chunks.append(t.shape[1]) or real_step(self, t))
    monkeypatch.setattr(fast_decode._TextDecoder, "rewind", lambda self, n: rewinds.append(n) or real_rewind(self, n))
    for banned in (None, vocab.box_start):
        outputs = []
        for fast in (True, False):
            automata = [answer_automaton(vocab, get_task("detection"), p, None, AnswerLimits()) for p in phrases]
            processors = [GrammarConstraint(automata, inputs["input_ids"].shape[1], BUDGET)]
            processors += [BanToken(banned)] if banned is not None else []
            with torch.inference_mode():
                if fast:
                    outputs.append(greedy_decode(model, inputs, processors, BUDGET, eos, pad))
                else:
                    outputs.append(model.generate(**inputs, eos_token_id=eos, pad_token_id=pad, max_new_tokens=BUDGET,
                                                  do_sample=False, repetition_penalty=1.0,
                                                  logits_processor=LogitsProcessorList(processors)))
        assert torch.equal(*outputs), banned
        if banned is None:
            assert max(chunks) > 1 and not rewinds
        else:
            assert rewinds, "banning the forced <|box_start|> should reject a draft"
