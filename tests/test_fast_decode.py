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

from rexomni_core import RexOmni
from rexomni_core.data.samplers import sample_conversation
from rexomni_core.data.worlds import generate as generate_scene
from rexomni_core.grammar import IM_END
from rexomni_core.model import NANO_DIR, CoordinateMassProcessor, generation_settings, with_processors
from rexomni_core.model.confidence import TokenProbabilities
from rexomni_core.model.fast_decode import greedy_decode, needs_generate
from rexomni_core.nano.architecture import build_nano
from rexomni_core.nano.heldout import HELDOUT_SEED
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
            assert fast == answers(shipped, requests, constrained=constrained, fast_decode=False), (task, constrained)
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
            assert answers(model, requests, constrained=constrained) == answers(
                model, requests, constrained=constrained, fast_decode=False), (task, constrained)
