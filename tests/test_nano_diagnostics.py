"""rexomni_core.nano.diagnostics measures what the model card reports: run each measurement on
a micro nano and check the numbers are of the right kind and range."""

import pytest

pytest.importorskip("transformers")

from rexomni_core.nano import diagnostics  # noqa: E402
from rexomni_core.nano.architecture import build_nano  # noqa: E402
from tests.test_model_sft import MICRO  # noqa: E402


@pytest.fixture(scope="module")
def micro():
    return build_nano(seed=0, **MICRO)


def test_single_object_scenes_are_squashed_and_keep_normalised_answers():
    conversations = diagnostics.single_object_conversations(4, side=112, task="detection", seed=3)
    for conversation in conversations:
        assert conversation.image.size == (112, 112) and len(conversation.regions) == 1
        assert conversation.answer.count("<|box_start|>") == 1 and "None" not in conversation.answer
        cells = diagnostics.object_cells(conversation, 4, 4)
        assert 1 <= cells.sum() < 16


def test_probes_attention_and_contrast_on_a_micro_model(micro):
    conversations = diagnostics.single_object_conversations(8, side=112, task="pointing", seed=3)
    probes = diagnostics.image_token_probes(micro, conversations)
    assert [p["layer"] for p in probes] == [0, 1, 2]  # embeddings + two layers
    for probe in probes:
        assert probe["row_mae"] >= 0 and 0.5 <= probe["object_cell_majority"] <= 1
    attention = diagnostics.object_attention(micro, conversations[:4])
    shares = attention["attention_on_object"]
    assert len(shares) == 2 and all(0 <= s <= 1 for layer in shares for s in layer)
    assert micro.model.config._attn_implementation == "sdpa"  # restored
    contrast = diagnostics.vision_contrast(micro, 112)
    assert contrast["object_norm"] > 0 and -1 <= contrast["object_background_cosine"] <= 1
