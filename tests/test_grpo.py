"""GRPO: the reward adapter reads completions with their special tokens; a short real run on CPU
computes rewards, changes the parameters, writes a loadable model and resumes."""

import json
import random

import pytest
import torch

from rexomni_core import Box, serialize
from rexomni_core.data.samplers import sample_conversation
from rexomni_core.data.worlds import generate
from rexomni_core.grammar import IM_END
from rexomni_core.model import RexOmni
from rexomni_core.nano.architecture import build_nano
from rexomni_core.regions import region_to_dict
from rexomni_core.train.configs import DataConfig, GRPOConfig
from rexomni_core.train.grpo import AnswerRewards, prompt_rows, train_grpo
from tests.test_model_sft import MICRO


@pytest.fixture(scope="module")
def micro_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("micro")
    build_nano(seed=0, **MICRO).save_pretrained(directory)
    return directory


def _ids(tokenizer, text):
    return tokenizer(text + IM_END, add_special_tokens=False)["input_ids"]


def test_rewards_decode_completion_ids_with_special_tokens(micro_dir):
    tokenizer = RexOmni.from_pretrained(micro_dir, device="cpu").tokenizer
    rewards = AnswerRewards(tokenizer)
    truth = [Box("cat", [10, 10, 50, 50])]
    exact = serialize(truth, 100, 100)
    duplicated = serialize(truth + [Box("cat", [10, 10, 50, 51])], 100, 100)
    ids = [_ids(tokenizer, exact), _ids(tokenizer, duplicated), _ids(tokenizer, "<|box_start|><1><2>")]
    # TRL's own `completions` strip special tokens: the grammar would be gone from them.
    assert "<|box_start|>" not in tokenizer.decode(ids[0], skip_special_tokens=True)
    columns = dict(task=["detection"] * 3, width=[100] * 3, height=[100] * 3,
                   truth=[json.dumps([region_to_dict(r) for r in truth])] * 3)
    geometry = rewards.geometry(None, None, ids, **columns)
    assert geometry[0] > 0.95
    assert geometry[1] == pytest.approx(2 / 3 * geometry[0], abs=0.02)  # the duplicate costs precision
    assert geometry[2] == 0.0
    assert rewards.format(None, None, ids, **columns) == [1.0, 1.0, 0.0]


def test_prompt_rows_carry_what_the_rewards_need():
    config = GRPOConfig(num_prompts=3)
    rows = prompt_rows(config)
    assert len(rows) == 3 and {row["task"] for row in rows} == {"detection"}
    first = rows[0]
    assert first["prompt"][0]["content"][0]["text"] == "You are a helpful assistant"
    assert first["prompt"][1]["content"][0] == {"type": "image"}
    assert first["image"].size == (first["width"], first["height"])
    # With a model's square view the image is what the model reads; sizes stay the original's.
    squared = prompt_rows(config, view=lambda image: image.resize((112, 112)))
    assert squared[0]["image"].size == (112, 112) and squared[0]["width"] == first["width"]
    # A prompt-first model (RexOmni.prompt_first) is asked in the order it was trained on.
    swapped = prompt_rows(config, prompt_first=True)[0]["prompt"][1]["content"]
    assert swapped[0]["type"] == "text" and swapped[1] == {"type": "image"}
    for row in rows:  # the ground truth is that of the phrases the prompt asks for
        prompt = row["prompt"][1]["content"][1]["text"]
        assert all(region["phrase"] in prompt for region in json.loads(row["truth"]))


@pytest.mark.parametrize("world, task", [("shapes", "detection"), ("shapes", "pointing"),
                                         ("shapes", "visual_prompting"), ("gui", "gui_pointing")])
def test_the_target_answer_earns_the_full_reward(micro_dir, world, task):
    # Pointing answers are points but are judged against the objects' boxes: the rows must carry
    # those, or the reward could not read them (it once crashed GRPO on pointing prompts).
    tokenizer = RexOmni.from_pretrained(micro_dir, device="cpu").tokenizer
    config = GRPOConfig(num_prompts=4, data=DataConfig(kwargs={"mixture": [{"world": world, "task": task}], "seed": 2}))
    source = config.data.build()
    rows = prompt_rows(config)
    ids = [_ids(tokenizer, source[i].answer) for i in range(len(rows))]
    columns = {key: [row[key] for row in rows] for key in ("task", "width", "height", "truth")}
    assert AnswerRewards(tokenizer).geometry(None, None, ids, **columns) == pytest.approx([1.0] * len(rows), abs=0.02)
    if task.endswith("pointing"):
        assert {region["kind"] for row in rows for region in json.loads(row["truth"])} == {"box"}


def test_short_grpo_run_changes_parameters_and_resumes(micro_dir, tmp_path):
    scene = generate("shapes", 3)
    assert sample_conversation(scene, "detection", random.Random(0)) is not None
    config = GRPOConfig(
        output_dir=str(tmp_path / "grpo"),
        model=str(micro_dir),
        data=DataConfig(kwargs={"mixture": [{"world": "shapes", "task": "detection"}], "seed": 1}),
        num_prompts=4, max_steps=2, prompts_per_step=2, num_generations=2,
        max_completion_length=12, learning_rate=1e-2, logging_steps=1, save_steps=1,
    )
    before = {n: p.clone() for n, p in RexOmni.from_pretrained(micro_dir, device="cpu").model.named_parameters()}

    def varied(completion_ids, **_):
        # An untrained micro model earns no task reward, so every advantage would be 0 and GRPO
        # (rightly) would not move; this reward depends on the sampled tokens, so it varies.
        return [(sum(ids) % 5) / 5 for ids in completion_ids]

    final = train_grpo(config, extra_rewards=[varied])
    log = json.loads((final / "log_history.json").read_text())
    steps = [entry for entry in log if "rewards/geometry/mean" in entry]
    assert len(steps) == 2 and all("rewards/format/mean" in entry and "kl" in entry for entry in steps)
    after = RexOmni.from_pretrained(final, device="cpu").model
    changed = [n for n, p in after.named_parameters() if not torch.equal(p, before[n])]
    assert changed, "GRPO changed no parameter"
    # Every checkpoint is a complete Rex-Omni directory (it once held a processor_config.json
    # that made AutoProcessor return a bare tokenizer).
    assert RexOmni.from_pretrained(tmp_path / "grpo" / "checkpoint-1", device="cpu").processor.image_processor
    for directory in (tmp_path / "grpo" / "checkpoint-1", final):
        assert "ImageOnly" not in (directory / "tokenizer_config.json").read_text()
    assert json.loads((final / "config.json").read_text()).get("use_cache", True) is True
    # A rerun with more steps resumes from checkpoint-2 instead of starting over.
    config.max_steps = 3
    log = json.loads((train_grpo(config, extra_rewards=[varied]) / "log_history.json").read_text())
    assert [e["step"] for e in log if "rewards/geometry/mean" in e] == [1, 2, 3]
