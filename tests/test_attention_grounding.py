"""Attention grounding: the optional SFT loss that points coordinate-writing positions at their
region's image tokens (the aid that lets Rex-Omni-nano localise when trained from scratch)."""

import json
import math

import pytest

pytest.importorskip("transformers")
import torch

from rexomni_core.data.samplers import ConversationStream
from rexomni_core.nano.architecture import build_nano
from rexomni_core.tokenizer import coordinate_token_ids
from rexomni_core.train.configs import DataConfig, SFTConfig
from rexomni_core.train.sft import (
    IGNORE_INDEX,
    SFTCollator,
    attention_grounding_loss,
    coordinate_bin_table,
    grounding_targets,
    region_cells,
    spacer_token_ids,
    train_sft,
)
from tests.test_model_sft import MICRO


def test_region_cells_of_points_boxes_and_malformed_runs():
    # 4 x 5 grid (rows x cols): bin b falls in column b * 5 // 1000, row b * 4 // 1000.
    assert region_cells([0, 0], rows=4, cols=5) == [0]
    assert region_cells([999, 999], rows=4, cols=5) == [19]
    assert region_cells([450, 600], rows=4, cols=5) == [2 * 5 + 2]
    # Box from column 1 to 2 and row 0 to 1; corners given in either order.
    assert region_cells([200, 100, 599, 499], rows=4, cols=5) == [1, 2, 6, 7]
    assert region_cells([599, 499, 200, 100], rows=4, cols=5) == [1, 2, 6, 7]
    assert region_cells([10, 20, 30], rows=4, cols=5) is None
    assert region_cells([10], rows=4, cols=5) is None


@pytest.fixture(scope="module")
def nano():
    return build_nano(seed=0)


def _bin_of(nano):
    return coordinate_bin_table(torch.tensor(coordinate_token_ids(nano.tokenizer)), len(nano.tokenizer))


def _conversations():
    stream = ConversationStream(seed=3, mixture=[
        {"world": "shapes", "task": "detection", "split": "few"},
        {"world": "shapes", "task": "pointing", "split": "few"},
        {"world": "keypoints", "task": "keypoint"},
    ])
    picked = {}
    for i in range(200):
        conversation = stream[i]
        if conversation.task not in picked and "<" in conversation.answer:
            picked[conversation.task] = conversation
        if len(picked) == 3:
            return [picked["detection"], picked["pointing"], picked["keypoint"]]
    raise AssertionError(f"the stream gave only {sorted(picked)}")


def test_targets_mark_each_coordinate_writer_and_its_region(nano):
    conversations = _conversations()
    batch = SFTCollator(nano)(conversations)
    bin_of = _bin_of(nano)
    targets = grounding_targets(
        batch["input_ids"], batch["labels"], batch["image_grid_thw"], nano.model.config.image_token_id,
        bin_of, spacer_token_ids(nano.tokenizer), merge_size=2,
    )
    for row, conversation in enumerate(conversations):
        ids, labels = batch["input_ids"][row], batch["labels"][row]
        answer_coords = [p for p in range(len(ids)) if labels[p] != IGNORE_INDEX and bin_of[ids[p]] >= 0]
        queries = targets[row].any(dim=-1).nonzero()[:, 0].tolist()
        # Exactly the positions that predict a coordinate of the answer (never the prompt's).
        assert queries == [p - 1 for p in answer_coords], conversation.task
        image_positions = (ids == nano.model.config.image_token_id).nonzero()[:, 0]
        assert set(targets[row].any(dim=0).nonzero()[:, 0].tolist()) <= set(image_positions.tolist())
        _, grid_h, grid_w = (int(v) for v in batch["image_grid_thw"][row])
        rows, cols = grid_h // 2, grid_w // 2
        # The first region's writers all look at the cells of that region's first run.
        first_run = [int(bin_of[ids[p]]) for p in answer_coords[: 2 if conversation.task == "pointing" else 4]]
        expected = image_positions[region_cells(first_run, rows, cols)].tolist()
        for query in queries[: len(first_run)]:
            assert targets[row, query].nonzero()[:, 0].tolist() == expected, conversation.task


def test_first_only_keeps_each_regions_first_writer_with_the_same_cells(nano):
    conversations = _conversations()
    batch = SFTCollator(nano)(conversations)
    args = (batch["input_ids"], batch["labels"], batch["image_grid_thw"], nano.model.config.image_token_id,
            _bin_of(nano), spacer_token_ids(nano.tokenizer), 2)
    every, first = grounding_targets(*args), grounding_targets(*args, first_only=True)
    spacers = spacer_token_ids(nano.tokenizer)
    for row, conversation in enumerate(conversations):
        ids = batch["input_ids"][row].tolist()
        queries = every[row].any(dim=-1).nonzero()[:, 0].tolist()
        kept = first[row].any(dim=-1).nonzero()[:, 0].tolist()
        # A region's coordinates are consecutive tokens (keypoint JSON: but for its spacers); the
        # first writer of each follows a non-spacer token, and only those stay, with their cells.
        starts = [q for i, q in enumerate(queries)
                  if i == 0 or any(t not in spacers for t in ids[queries[i - 1] + 2:q + 1])]
        assert kept == starts and len(kept) < len(queries), conversation.task
        for query in kept:
            assert torch.equal(first[row, query], every[row, query])


def test_keypoint_json_whitespace_does_not_split_the_box(nano):
    conversation = _conversations()[2]
    assert '"bbox": " <' in conversation.answer
    batch = SFTCollator(nano)([conversation])
    targets = grounding_targets(
        batch["input_ids"], batch["labels"], batch["image_grid_thw"], nano.model.config.image_token_id,
        _bin_of(nano), spacer_token_ids(nano.tokenizer), merge_size=2,
    )
    writers = targets[0].any(dim=-1).nonzero()[:, 0]
    # The four writers of the first bbox share one multi-cell region; a split run would give
    # each pair of coordinates a single cell instead.
    box_rows = targets[0, writers[:4]]
    assert all(torch.equal(box_rows[0], other) for other in box_rows[1:])
    assert int(box_rows[0].sum()) > 1


def test_loss_is_minus_log_attention_mass_on_the_targets():
    targets = torch.zeros(1, 4, 4, dtype=torch.bool)
    targets[0, 3, :2] = True  # position 3 writes a coordinate; its region is tokens 0 and 1
    uniform = torch.full((1, 2, 4, 4), 0.25)
    focused = torch.zeros(1, 2, 4, 4)
    focused[0, 0, 3, 0] = 1.0
    assert float(attention_grounding_loss([uniform], targets, layers=[0])) == pytest.approx(math.log(2), abs=1e-4)
    assert float(attention_grounding_loss([focused], targets, layers=[0])) == pytest.approx(0.0, abs=1e-4)
    # Head 1 of the focused tensor looks nowhere near the targets: a large loss.
    assert float(attention_grounding_loss([focused], targets, layers=[0], head=1)) > 10
    empty = torch.zeros_like(targets)
    assert float(attention_grounding_loss([uniform], empty, layers=[0])) == 0.0


def test_sft_with_attention_grounding_pulls_attention_onto_regions(tmp_path):
    config = SFTConfig(
        output_dir=str(tmp_path / "run"), max_steps=30, batch_size=4, learning_rate=3e-3, warmup_steps=2,
        logging_steps=5, save_steps=100, nano_architecture=MICRO, attention_grounding=1.0,
        data=DataConfig(kwargs={"seed": 1, "mixture": [{"world": "shapes", "task": "pointing", "split": "few"}]}),
    )
    final = train_sft(config)
    grounding = [h["grounding_loss"] for h in json.loads((final / "log_history.json").read_text()) if "grounding_loss" in h]
    assert len(grounding) == 6
    assert grounding[-1] < 0.7 * grounding[0], grounding
