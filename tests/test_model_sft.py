import json
import shutil

import pytest

pytest.importorskip("transformers")
import torch
import torch.nn.functional as F

from rexomni_core.data.samplers import ConversationStream
from rexomni_core.errors import InputError
from rexomni_core.grammar import IM_END
from rexomni_core.model import RexOmni
from rexomni_core.nano.architecture import build_nano
from rexomni_core.tokenizer import coordinate_token_ids
from rexomni_core.train import sft
from rexomni_core.train.configs import DataConfig, SFTConfig
from rexomni_core.train.sft import (
    IGNORE_INDEX,
    ConversationDataset,
    SFTCollator,
    TaskGroupedSampler,
    coordinate_loss,
    train_sft,
)
from tests.tiny_shapes import TinyShapes

# A smaller nano for trainer tests: the code path is the same, the steps are ~10x cheaper.
MICRO = {
    "text": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
             "num_key_value_heads": 1,
             "rope_parameters": {"rope_type": "default", "rope_theta": 1000.0, "mrope_section": [2, 3, 3] * 2}},
    "vision": {"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "fullatt_block_indexes": [0]},
}
TINY_DATA = DataConfig(
    "tests.tiny_shapes:TinyShapes",
    {"seed": 0, "tasks": ["detection"], "max_objects": 1, "categories": ["red circle", "blue square"]},
)


@pytest.fixture(scope="module")
def nano():
    return build_nano(seed=0)


def test_collator_labels_only_the_answer(nano):
    world = TinyShapes(seed=2, tasks=("detection", "pointing"), max_objects=3, sizes=(112, 200))
    conversations = [world[i] for i in range(3)]
    batch = SFTCollator(nano)(conversations)
    for row, conversation in enumerate(conversations):
        labelled = batch["labels"][row][batch["labels"][row] != IGNORE_INDEX]
        assert nano.tokenizer.decode(labelled) == conversation.answer + IM_END
        # Left padding: the answer closes the row.
        assert batch["input_ids"][row, -len(labelled):].tolist() == labelled.tolist()
    assert batch["pixel_values"].shape[0] == int(batch["image_grid_thw"].prod(dim=1).sum())


def test_coordinate_loss_is_cross_entropy_without_sigma_and_softer_with_it(nano):
    ids = torch.tensor(coordinate_token_ids(nano.tokenizer))
    vocab = len(nano.tokenizer)
    logits = torch.randn(2, 6, vocab)
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, int(ids[500]), 7, int(ids[3]), 9]] * 2)
    plain = coordinate_loss(logits, labels, ids, sigma=0)
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, vocab), labels[:, 1:].reshape(-1))
    assert torch.allclose(plain, expected, atol=1e-5)
    # A confident guess one bin off costs less than one 50 bins off (one-hot: the same).
    near, far = torch.full((1, 2, vocab), -10.0), torch.full((1, 2, vocab), -10.0)
    near[0, 0, ids[501]] = 10.0
    far[0, 0, ids[550]] = 10.0
    target = torch.tensor([[IGNORE_INDEX, int(ids[500])]])
    assert coordinate_loss(near, target, ids, sigma=1.0) < 0.8 * coordinate_loss(far, target, ids, sigma=1.0)


def test_config_yaml_round_trip_overrides_and_typos(tmp_path):
    config = SFTConfig(output_dir=str(tmp_path / "run"), data=TINY_DATA, max_steps=7)
    config.nano_architecture = MICRO
    config.to_yaml(tmp_path / "c.yaml")
    again = SFTConfig.from_yaml(tmp_path / "c.yaml", ["max_steps=9", "data.kwargs.seed=4", "lora.r=8"])
    assert (again.max_steps, again.data.kwargs["seed"], again.lora.r) == (9, 4, 8)
    assert again.data.factory == TINY_DATA.factory and again.nano_architecture == MICRO
    (tmp_path / "bad.yaml").write_text("max_step: 3\n")
    with pytest.raises(ValueError, match="unknown SFTConfig keys"):
        SFTConfig.from_yaml(tmp_path / "bad.yaml")


def test_config_numbers_written_the_yaml_1_1_way_are_still_numbers(tmp_path):
    # PyYAML reads `3e-5` (no dot) as a string; it must still train with lr 3e-5.
    (tmp_path / "c.yaml").write_text("learning_rate: 3e-5\nmax_steps: '40'\nsquare_side: null\n")
    config = SFTConfig.from_yaml(tmp_path / "c.yaml")
    assert config.learning_rate == 3e-5 and isinstance(config.learning_rate, float)
    assert config.max_steps == 40 and isinstance(config.max_steps, int) and config.square_side is None
    (tmp_path / "bad.yaml").write_text("learning_rate: fast\nmax_steps: 2.5\n")
    with pytest.raises(ValueError, match=r"SFTConfig.learning_rate: expected a number, got 'fast'"):
        SFTConfig.from_yaml(tmp_path / "bad.yaml")
    with pytest.raises(ValueError, match=r"SFTConfig.max_steps: expected a whole number"):
        SFTConfig.from_yaml(tmp_path / "bad.yaml", ["learning_rate=1e-3"])


def test_short_sft_learns_resumes_and_round_trips(tmp_path):
    config = SFTConfig(
        output_dir=str(tmp_path / "run"), data=TINY_DATA, max_steps=24, batch_size=4,
        learning_rate=1e-2, warmup_steps=2, logging_steps=4, save_steps=12, coordinate_sigma=1.0,
        nano_architecture=MICRO,
    )
    final = train_sft(config)
    losses = [h["loss"] for h in json.loads((final / "log_history.json").read_text()) if "loss" in h]
    assert losses[-1] < 0.6 * losses[0], losses
    assert (tmp_path / "run" / "checkpoint-12" / "preprocessor_config.json").is_file()
    # The trained model loads through the public API; save → load gives identical outputs.
    model = RexOmni.from_pretrained(final)
    image = TinyShapes(seed=9, max_objects=1, categories=["red circle"])[0].image
    first = model.predict(image, categories=["red circle"], max_new_tokens=16)
    model.save_pretrained(tmp_path / "again")
    second = RexOmni.from_pretrained(tmp_path / "again").predict(image, categories=["red circle"], max_new_tokens=16)
    assert first.raw_text == second.raw_text
    # Rerunning with more steps resumes from the newest checkpoint instead of starting over.
    config.max_steps = 26
    train_sft(config)
    state = json.loads((tmp_path / "run" / "checkpoint-26" / "trainer_state.json").read_text())
    assert state["global_step"] == 26
    assert min(h["step"] for h in state["log_history"]) == 4  # history carried over from the first run


THREE_TASKS = [
    {"world": "shapes", "task": "pointing", "split": "single"},
    {"world": "shapes", "task": "detection", "split": "few"},
    {"world": "keypoints", "task": "keypoint"},
]


def test_task_grouped_sampler_batches_one_task_in_a_fixed_permutation():
    stream = ConversationStream(mixture=THREE_TASKS, seed=3)
    dataset = ConversationDataset(stream, length=200, start=17)
    order = list(TaskGroupedSampler(dataset, batch_size=8, seed=0, window_batches=8))
    assert sorted(order) == list(range(200))
    assert order == list(TaskGroupedSampler(dataset, batch_size=8, seed=0, window_batches=8))
    assert order != list(TaskGroupedSampler(dataset, batch_size=8, seed=1, window_batches=8))

    def single_task_share(indices):
        batches = [[stream.entry_index(17 + i) for i in indices[j:j + 8]] for j in range(0, len(indices), 8)]
        return sum(len(set(batch)) == 1 for batch in batches) / len(batches)

    assert single_task_share(order) >= 0.7
    assert single_task_share(list(range(200))) < 0.1
    # The entry named without drawing the scene is the one the conversation comes from.
    for i in range(0, 30, 7):
        assert stream[i].task == THREE_TASKS[stream.entry_index(i)]["task"]


def test_sft_batches_by_task_when_asked(tmp_path, monkeypatch):
    built = []

    class Recording(TaskGroupedSampler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(sft, "TaskGroupedSampler", Recording)
    config = SFTConfig(
        output_dir=str(tmp_path / "run"), max_steps=2, batch_size=2, save_steps=2, nano_architecture=MICRO,
        data=DataConfig(kwargs={"mixture": THREE_TASKS[:2], "seed": 1}), batch_by_task=True,
    )
    train_sft(config)
    assert len(built) == 1 and built[0].batch_size == 2
    built.clear()
    config.output_dir, config.batch_by_task = str(tmp_path / "plain"), False
    train_sft(config)
    assert not built


def assert_killed_run_resumes_to_the_same_weights(config: SFTConfig, final, newest_checkpoint) -> None:
    """Remove the newest checkpoint and the final model (a run killed after the one before), rerun
    the same config, and require bit-identical final weights."""
    from safetensors.torch import load_file

    weights = load_file(final / "model.safetensors")
    shutil.rmtree(newest_checkpoint)
    shutil.rmtree(final)
    again = load_file(train_sft(config) / "model.safetensors")
    assert all(torch.equal(weights[key], again[key]) for key in weights)


def test_sft_keeps_the_dense_loss_saves_its_heads_in_checkpoints_and_resumes_exactly(tmp_path):
    from safetensors.torch import load_file

    config = SFTConfig(
        output_dir=str(tmp_path / "run"), max_steps=4, batch_size=2, save_steps=2, save_total_limit=3,
        nano_architecture=MICRO, square_side=112, learning_rate=1e-3, warmup_steps=0,
        data=DataConfig(kwargs={"mixture": THREE_TASKS[:2], "seed": 1}),
        dense_weight=0.5, dense_batch_size=2,
        dense_data=DataConfig("rexomni_core.data.cell_targets:CellTargetStream",
                              {"mixture": [{"world": "shapes", "split": "few"}], "seed": 3}),
    )
    final = train_sft(config)
    history = json.loads((final / "log_history.json").read_text())
    assert any(entry.get("dense_loss", 0) > 0 for entry in history)
    run = tmp_path / "run"
    heads = [torch.load(run / f"checkpoint-{step}" / "dense_heads.pt") for step in (2, 4)]
    assert not torch.equal(heads[0]["heads.colour.weight"], heads[1]["heads.colour.weight"])
    assert not list(final.glob("dense_heads*"))  # the heads never reach the final model
    assert not [key for key in load_file(final / "model.safetensors") if "heads" in key]
    # Killed after step 2: the rerun resumes heads, optimizer and scene stream, to the same weights.
    assert_killed_run_resumes_to_the_same_weights(config, final, run / "checkpoint-4")
    with pytest.raises(InputError, match="dense_weight"):
        SFTConfig(dense_weight=1.0, freeze_vision=True).check()
    with pytest.raises(InputError, match="attention_grounding_queries"):
        SFTConfig(attention_grounding_queries="last").check()


def test_binding_readout_scores_the_regions_cells_at_its_opening_position_only():
    from rexomni_core.train.sft import BindingReadout

    readout = BindingReadout(hidden=8, cells=4, weight=2.0)
    hidden = torch.randn(2, 7, 8)
    image = torch.zeros(2, 7, dtype=torch.bool)
    image[:, 1:5] = True  # four image tokens at positions 1-4 of both rows
    targets = torch.zeros(2, 7, 7, dtype=torch.bool)
    targets[0, 5, [2, 3]] = True  # row 0's position 5 opens a region over cells 1 and 2
    log_p = readout.readout(hidden[0, 5]).log_softmax(-1)
    expected = -2.0 * torch.logaddexp(log_p[1], log_p[2])
    torch.testing.assert_close(readout.loss(hidden, targets, image), expected)
    assert float(readout.loss(hidden, torch.zeros_like(targets), image)) == 0.0
    image[0, 1] = False
    with pytest.raises(ValueError, match="reads 4 cells"):
        readout.loss(hidden, targets, image)


def test_sft_with_the_binding_readout_logs_it_keeps_it_out_of_final_and_resumes_exactly(tmp_path):
    from safetensors.torch import load_file

    config = SFTConfig(
        output_dir=str(tmp_path / "run"), max_steps=4, batch_size=2, save_steps=2, save_total_limit=3,
        nano_architecture=MICRO, square_side=112, learning_rate=1e-3, warmup_steps=0, logging_steps=1,
        data=DataConfig(kwargs={"mixture": THREE_TASKS[:1], "seed": 1}), binding_readout=1.0,
    )
    final = train_sft(config)
    history = json.loads((final / "log_history.json").read_text())
    assert all(entry["binding_loss"] > 0 for entry in history if "loss" in entry)
    run = tmp_path / "run"
    readouts = [torch.load(run / f"checkpoint-{step}" / "binding_readout.pt") for step in (2, 4)]
    assert readouts[0]["readout.weight"].shape == (16, 64)  # a 112² view: 4 x 4 cells
    assert not torch.equal(readouts[0]["readout.weight"], readouts[1]["readout.weight"])
    assert not list(final.glob("binding_readout*"))
    assert not [key for key in load_file(final / "model.safetensors") if "readout" in key]
    assert_killed_run_resumes_to_the_same_weights(config, final, run / "checkpoint-4")
    config.output_dir, config.square_side = str(tmp_path / "any view"), None
    with pytest.raises(InputError, match="square view"):
        train_sft(config)


def test_untied_sft_trains_its_own_output_rows_and_saves_them_apart(tmp_path):
    """`untie_embeddings`: the output projection starts as a copy of the input embeddings, trains
    apart from them, and the final checkpoint loads untied (tie_word_embeddings false)."""
    config = SFTConfig(
        output_dir=str(tmp_path / "untied"), data=TINY_DATA, max_steps=2, batch_size=2, save_steps=100,
        logging_steps=1, nano_architecture=MICRO, square_side=56, learning_rate=1e-3, warmup_steps=0,
        untie_embeddings=True,
    )
    start = sft.load_for_training(config).model
    assert start.lm_head.weight is not start.get_input_embeddings().weight
    torch.testing.assert_close(start.lm_head.weight, start.get_input_embeddings().weight)
    model = RexOmni.from_pretrained(train_sft(config)).model
    assert model.config.tie_word_embeddings is False
    output, embeddings = model.lm_head.weight, model.get_input_embeddings().weight
    assert output is not embeddings and not torch.equal(output, embeddings)
    sft.untie_output_embeddings(model)  # already apart: nothing changes
    assert model.lm_head.weight is output


def test_folding_the_readout_lifts_each_bin_by_its_columns_readout_direction():
    """Bin b's output row gains strength × (the readout rows of b's grid column averaged, less
    the mean over columns); input embeddings and other rows stay; a tied model is refused."""
    rexomni = build_nano(seed=0, text=MICRO.get("text"), vision=MICRO.get("vision"))
    model = rexomni.model
    with pytest.raises(ValueError, match="untied"):
        sft.fold_readout_into_coordinates(model, sft.BindingReadout(model.config.text_config.hidden_size, 4, 1.0),
                                          rexomni.coordinate_ids, 1.0)
    sft.untie_output_embeddings(model)
    hidden = model.config.text_config.hidden_size
    readout = sft.BindingReadout(hidden, 4, 1.0)  # a 2 x 2 grid: cells (row, column) = 0 (0,0), 1 (0,1), 2 (1,0), 3 (1,1)
    with torch.no_grad():
        readout.readout.weight.zero_()
        readout.readout.weight[1, 0] = readout.readout.weight[3, 0] = 2.0  # column 1 says "feature 0"
    before, embeddings = model.lm_head.weight.clone(), model.get_input_embeddings().weight.clone()
    sft.fold_readout_into_coordinates(model, readout, rexomni.coordinate_ids, 0.5)
    change = model.lm_head.weight - before
    ids = torch.tensor(rexomni.coordinate_ids)
    assert torch.equal(change[ids[:500], 0], torch.full((500,), -0.5))  # column 0: 0.5 × (0 − 1)
    assert torch.equal(change[ids[500:], 0], torch.full((500,), 0.5))  # column 1: 0.5 × (2 − 1)
    others = torch.ones(len(change), dtype=torch.bool)
    others[ids] = False
    assert not change[others].any() and not change[:, 1:].any()
    assert torch.equal(model.get_input_embeddings().weight, embeddings)


def test_lora_sft_saves_a_merged_model_with_its_square_view(tmp_path):
    config = SFTConfig(
        output_dir=str(tmp_path / "lora"), data=TINY_DATA, max_steps=2, batch_size=2,
        save_steps=100, logging_steps=1, nano_architecture=MICRO, square_side=56, prompt_first=True,
    )
    config.lora.r = 4
    final = train_sft(config)
    model = RexOmni.from_pretrained(final)
    assert not any("lora" in name for name in model.model.state_dict())
    assert model.square_side == 56 and model.prompt_first  # the training view and order are saved with the model


@pytest.mark.parametrize(
    "text, message",
    [
        ("bf16: maybe\n", "SFTConfig.bf16: expected true or false, got 'maybe'"),
        ("resume: 1\n", "SFTConfig.resume: expected true or false"),
        ("max_steps: -1\n", "SFTConfig.max_steps must be > 0, got -1"),
        ("batch_size: 0\n", "SFTConfig.batch_size must be > 0"),
        ("max_steps: true\n", "SFTConfig.max_steps: expected a number, got True"),
        ("data: 3\n", "SFTConfig.data is a section of fields"),
        ("max_steps: [1\n", "not valid YAML"),
        ("- 1\n- 2\n", "a config is a mapping"),
    ],
)
def test_bad_config_values_stop_before_any_folder_is_made(tmp_path, capsys, text, message):
    from rexomni_core.cli import main

    (tmp_path / "c.yaml").write_text(f"output_dir: {tmp_path / 'run'}\n{text}" if not text.startswith("-") else text)
    assert main(["train", "sft", "--config", str(tmp_path / "c.yaml")]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and str(tmp_path / "c.yaml") in error and len(error.splitlines()) == 1
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="max_steps must be > 0"):
        train_sft(SFTConfig(output_dir=str(tmp_path / "py"), max_steps=-1))
    assert not (tmp_path / "py").exists()
