"""rexomni_core.nano.binding: where the query before a box's first coordinate looks, against the
cells of its own object and of the other phrases' objects."""

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from rexomni_core.nano import binding  # noqa: E402
from rexomni_core.nano.architecture import build_nano  # noqa: E402
from rexomni_core.train.sft import IGNORE_INDEX, coordinate_runs  # noqa: E402
from tests.test_model_sft import MICRO  # noqa: E402


def test_coordinate_runs_split_regions_and_skip_the_prompt():
    coordinate = {5, 6, 7}.__contains__
    ids = [5, 6, 1, 5, 6, 7, 7, 2, 6, 6]
    labels = [IGNORE_INDEX] * 3 + ids[3:]  # the prompt's coordinates are not the answer's
    assert coordinate_runs(ids, labels, coordinate) == [[3, 4, 5, 6], [8, 9]]
    assert coordinate_runs(ids, labels, coordinate, spacer_ids={2}) == [[3, 4, 5, 6, 8, 9]]  # spacers join


def test_box_attention_measures_shares_areas_and_which_is_denser():
    target = np.array([True, False, False, False])
    distractors = np.array([False, True, True, False])
    # Layer 0: all on the target. Layer 1: even (the target's one cell gets a quarter, the two
    # distractor cells half: per cell the same, so not denser). Weights need not sum to one.
    weights = torch.tensor([[[2.0, 0.0, 0.0, 0.0]], [[1.0, 1.0, 1.0, 1.0]]])
    measured = binding.box_attention(weights, target, distractors)
    assert measured.shape == (2, 1, len(binding.MEASURES))
    np.testing.assert_allclose(measured[0, 0], [1.0, 0.0, 0.25, 0.5, 1.0])
    np.testing.assert_allclose(measured[1, 0], [0.25, 0.5, 0.25, 0.5, 0.0])


def test_binding_attention_on_a_micro_model():
    model = build_nano(seed=0, **MICRO)
    pairs = binding.binding_conversations(6, side=112, seed=5)
    assert all(c.image.size == (112, 112) and "None" not in c.answer for c, _ in pairs)
    report = binding.binding_attention(model, pairs, batch_size=4)
    assert report["boxes"] > 0
    layers, heads = MICRO["text"]["num_hidden_layers"], MICRO["text"]["num_attention_heads"]
    for measure in binding.MEASURES:
        values = np.array(report[measure])
        assert values.shape == (layers, heads) and ((0 <= values) & (values <= 1)).all()
    assert np.all(np.array(report["target share"]) + np.array(report["distractor share"]) <= 1 + 1e-6)
    assert model.model.config._attn_implementation == "sdpa"  # restored
