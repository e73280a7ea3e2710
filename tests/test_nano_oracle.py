"""rexomni_core.nano.oracle: exact per-cell category codes in (or instead of) the visual tokens,
the conversations that carry them, and the held-out protocol that evaluates with them."""

import random

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("transformers")

from rexomni_core.annotations import Annotation, Scene  # noqa: E402
from rexomni_core.data.samplers import ConversationStream  # noqa: E402
from rexomni_core.errors import InputError  # noqa: E402
from rexomni_core.nano import oracle  # noqa: E402
from rexomni_core.nano.architecture import build_nano  # noqa: E402
from rexomni_core.nano.vocabulary import SHAPE_CATEGORIES  # noqa: E402
from tests.test_model_sft import MICRO  # noqa: E402


def _scene() -> Scene:
    # 224 x 112 seen at 112²: each cell of the 4 x 4 grid is 56 x 28 original pixels.
    red = Annotation("red circle", [0, 0, 56, 28])  # exactly cell (0, 0)
    blue = Annotation("blue square", [0, 0, 112, 28])  # cells (0, 0) and (0, 1)
    return Scene(Image.new("RGB", (224, 112)), "shapes", "normal", 0, [red, blue])


def test_category_coverage_weighs_every_category_of_a_cell():
    coverage = oracle.category_coverage(_scene(), 112)
    assert coverage.shape == (16, len(SHAPE_CATEGORIES))
    red, blue = SHAPE_CATEGORIES.index("red circle"), SHAPE_CATEGORIES.index("blue square")
    np.testing.assert_allclose(coverage[0, [red, blue]], [1.0, 1.0])  # both, though blue is on top
    np.testing.assert_allclose(coverage[1, [red, blue]], [0.0, 1.0])
    assert coverage[2:].sum() == 0 and coverage[:, [i for i in range(30) if i not in (red, blue)]].sum() == 0


def test_codes_are_pure_in_their_settings_and_saved_with_the_run(tmp_path):
    codes = oracle.OracleCodes("replace", scale=2.0, seed=3)
    table = codes.table(64)
    assert table.shape == (len(SHAPE_CATEGORIES), 64)
    torch.testing.assert_close(table.pow(2).mean(-1).sqrt(), torch.full((30,), 2.0))
    torch.testing.assert_close(table, oracle.OracleCodes("replace", 2.0, 3).table(64))
    assert not torch.allclose(table, oracle.OracleCodes("replace", 2.0, 4).table(64))
    codes.save(tmp_path)
    assert oracle.OracleCodes.load(tmp_path) == codes
    with pytest.raises(InputError, match="no oracle.json"):
        oracle.OracleCodes.load(tmp_path / "elsewhere")
    with pytest.raises(InputError, match="mode"):
        oracle.OracleCodes("multiply")


def test_oracle_tokens_add_to_or_replace_the_towers_output_only_inside():
    model = build_nano(seed=0, **MICRO)
    model.square_side = 112  # the probe's view: one 4 x 4 grid per image
    batch = oracle.OracleCollator(model)([oracle.OracleConversation(c, oracle.category_coverage(s, 112))
                                          for s, c in _two_conversations()])
    coverage = batch.pop("oracle_coverage")
    assert coverage.shape == (2 * 16, 30)
    visual = model.model.model.visual

    def tokens():
        with torch.no_grad():
            return visual(batch["pixel_values"], grid_thw=batch["image_grid_thw"]).pooler_output

    plain = tokens()
    for mode in oracle.MODES:
        codes = oracle.OracleCodes(mode, scale=1.0)
        expected = coverage @ codes.table(plain.shape[-1])
        with oracle.oracle_tokens(model.model, coverage, codes):
            seen = tokens()
        torch.testing.assert_close(seen, expected if mode == "replace" else plain + expected)
    torch.testing.assert_close(tokens(), plain)  # the hook is gone
    with oracle.oracle_tokens(model.model, coverage[:16], oracle.OracleCodes()), pytest.raises(ValueError, match="16 cells"):
        tokens()


def _two_conversations():
    stream = ConversationStream(seed=1)
    return [stream.scene_and_conversation(i) for i in range(2)]


def test_oracle_stream_is_the_conversation_stream_with_coverage():
    stream = oracle.OracleStream(seed=7, square_side=112)
    plain = ConversationStream(seed=7)
    for index in range(3):
        item = stream[index]
        assert item.conversation.answer == plain[index].answer and item.conversation.prompt == plain[index].prompt
        assert item.coverage.shape == (16, 30)
    assert stream.entry_index(5) == plain.entry_index(5)


def test_oracle_training_and_evaluation_end_to_end(tmp_path, monkeypatch):
    """A micro model trained two steps with replaced tokens, then evaluated with its codes."""
    monkeypatch.setattr(oracle, "PROBE_RECIPE", tuple(s for s in oracle.PROBE_RECIPE if not s.startswith("model=")))
    micro = [f"nano_architecture={MICRO}".replace("'", '"'), "model=nano-init", "max_steps=2", "batch_size=2",
             "save_steps=2", "square_side=112", "dataloader_num_workers=0", "attention_grounding=0", "logging_steps=1"]
    final = oracle.train_oracle(tmp_path / "run", oracle.OracleCodes("replace"), micro)
    assert (final / "config.json").is_file()
    assert oracle.OracleCodes.load(tmp_path / "run").mode == "replace"
    from rexomni_core.model import RexOmni

    model = RexOmni.from_pretrained(str(final), device="cpu")
    result = oracle.evaluate_oracle(model, oracle.OracleCodes("replace"), count=3, batch_size=2, binding_count=2)
    assert result["images"] == 3 and 0 <= result["f1@0.5"] <= 1
    assert result["boxes"] == sum(result["outcomes"].values()) and result["landed"] <= result["boxes"]
    assert "binding" in result


def test_retrieval_batches_place_the_cells_as_an_image_and_name_the_phrases_cells():
    model = build_nano(seed=0, **MICRO)
    language_model = model.model.model.language_model
    codes = oracle.OracleCodes("replace", scale=1.0).table(64)
    scenes = oracle.heldout_scenes(3)
    batch = oracle.retrieval_batch(language_model, model.tokenizer, codes, scenes, random.Random(0))
    phrase_length = batch.embeddings.shape[1] - 16
    assert batch.embeddings.shape == (3, 16 + phrase_length, 64) and batch.targets.shape == (3, 16)
    torch.testing.assert_close(batch.embeddings[0, :16], torch.from_numpy(oracle.category_coverage(scenes[0], 112)) @ codes)
    assert batch.positions[:, 0, 5].tolist() == [0, 1, 1] and batch.positions[:, 0, 16].tolist() == [4, 4, 4]
    assert bool((batch.targets <= batch.objects).all()) and bool(batch.targets.any(-1).all())
    where = torch.randn(16, 64)
    placed = oracle.retrieval_batch(language_model, model.tokenizer, codes, scenes, random.Random(0), cell_codes=where)
    torch.testing.assert_close(placed.embeddings[:, :16] - batch.embeddings[:, :16], where.expand(3, -1, -1))
    torch.testing.assert_close(placed.embeddings[:, 16:], batch.embeddings[:, 16:])
    tokens = [torch.full((16, 64), float(i)) for i in range(3)]
    towered = oracle.retrieval_batch(language_model, model.tokenizer, codes, scenes, random.Random(0), tower_tokens=tokens)
    torch.testing.assert_close(towered.embeddings[:, :16] - batch.embeddings[:, :16], torch.stack(tokens))


def test_the_prompt_frames_the_cells_where_the_model_places_an_image():
    """`context="image"` puts the model's own prompt text before the cells and `<|vision_end|>`
    after them, and `context="request"` continues with SFT's detection request and the assistant
    turn up to the first group: the tokens and M-RoPE positions of the model's real prompt."""
    model = build_nano(seed=0, **MICRO)
    model.square_side, model.max_pixels = 112, 112**2
    language_model = model.model.model.language_model
    codes = oracle.OracleCodes("replace", scale=1.0).table(64)
    scenes = oracle.heldout_scenes(2)
    bare = oracle.retrieval_batch(language_model, model.tokenizer, codes, scenes, random.Random(0))
    for context in ("image", "request"):
        framed = oracle.retrieval_batch(language_model, model.tokenizer, codes, scenes, random.Random(0), context=context)
        torch.testing.assert_close(framed.embeddings[:, framed.cell_slice], bare.embeddings[:, bare.cell_slice])
        assert torch.equal(framed.targets, bare.targets)
        # The real prompt the toy's first row stands for: its phrase, and for a request the same listed phrases.
        rng = random.Random(0)
        phrase = [rng.choice(sorted({a.category for a in scene.annotations})) for scene in scenes][0]
        text = model.chat_text("Detect red circle.")
        if context == "request":
            after = oracle._text_after_cells("request", phrase, rng)
            listed = after[after.index("Detect ") + 7:after.index(".<|im_end|>")]
            assert phrase in listed.split(", ") and len(listed.split(", ")) == oracle.REQUESTED_PHRASES
            text = model.chat_text(f"Detect {listed}.") + "<|object_ref_start|>" + phrase + oracle.RETRIEVAL_QUERY
        real = model.encode([Image.new("RGB", (112, 112))], [text])
        positions, _ = model.model.model.get_rope_index(real["input_ids"], real["mm_token_type_ids"],
                                                        real["image_grid_thw"], attention_mask=real["attention_mask"])
        assert model.tokenizer.decode(real["input_ids"][0, :framed.cells_from]) == oracle.PROMPT_BEFORE_IMAGE
        compared = framed.positions.shape[-1] if context == "request" else framed.cell_slice.stop + 1
        torch.testing.assert_close(framed.positions[:, 0, :compared], positions[:, 0, :compared])
        if context == "request":
            text_ids = real["input_ids"][0, framed.cell_slice.stop:]
            torch.testing.assert_close(framed.embeddings[0, framed.cell_slice.stop:],
                                       language_model.get_input_embeddings()(text_ids))
    with pytest.raises(InputError, match="context"):
        oracle.retrieval_batch(language_model, model.tokenizer, codes, scenes, random.Random(0), context="chat")


def test_the_tower_variant_adds_each_scenes_own_visual_tokens():
    """`tower=True` feeds the shipped tower's tokens of the very scene whose codes they join: a
    pool scene's tokens equal the tower's output for that scene's 112² view."""
    from PIL import Image

    from rexomni_core.model import RexOmni
    from rexomni_core.train.vision import visual_tokens

    shipped = RexOmni.from_pretrained(None, device="cpu", dtype=torch.float32)
    scenes = oracle.heldout_scenes(3)
    inputs = oracle._scene_inputs(scenes, shipped, batch_size=2)
    with torch.no_grad():
        alone = visual_tokens(shipped, [scenes[2].image.convert("RGB").resize((112, 112), Image.BICUBIC)])
    assert len(inputs.tower_tokens) == 3 and inputs.tower_tokens[2].shape == (16, 256)
    torch.testing.assert_close(inputs.tower_tokens[2], alone, atol=1e-4, rtol=1e-4)
    curve = oracle.retrieval_probe(oracle.RetrievalRecipe("shipped", steps=1, batch_size=2, test_scenes=3,
                                                          scene_pool=4, tower=True, evaluate_every=1))
    assert len(curve) == 2


def test_a_small_objects_most_covered_cell_is_its_target():
    coverage = torch.tensor([0.0, 0.05, 0.1, 0.0])  # covers no cell the 0.15 the rule asks
    assert oracle._shown(coverage).tolist() == [False, False, True, False]
    assert oracle._shown(torch.tensor([0.5, 0.2, 0.1, 0.0])).tolist() == [True, True, False, False]
    assert not oracle._shown(torch.zeros(4)).any()


def test_retrieval_probe_reports_a_held_out_curve_from_a_fresh_decoder(monkeypatch):
    monkeypatch.setattr("rexomni_core.nano.architecture.build_nano",
                        lambda seed=0, **kw: build_nano(seed=seed, **MICRO))
    for pool, rope, position_weight in ((0, "mrope", 0.0), (8, "none", 1.0)):
        recipe = oracle.RetrievalRecipe("fresh", steps=2, batch_size=4, test_scenes=6, evaluate_every=1,
                                        cell_positions=True, scene_pool=pool, rope=rope,
                                        position_weight=position_weight)
        curve = oracle.retrieval_probe(recipe)
        assert [point["step"] for point in curve] == [0, 1, 2]
        assert all(0 <= p["right"] <= p["landed"] <= 1 for p in curve)
        assert all(("position" in p) is bool(position_weight) for p in curve)
    with pytest.raises(InputError, match="position_weight"):
        oracle.RetrievalRecipe(pointer=True, position_weight=1.0)


def test_the_cell_position_head_reads_where_a_cell_is_only_from_content_that_says_it():
    """Trained alone, the head names every cell's row and column from hidden states that code
    them, and from identical hidden states at most one cell in 16 (its chance on a 4 x 4 grid)."""
    torch.manual_seed(0)
    rows, columns = torch.arange(16) // 4, torch.arange(16) % 4
    coded = torch.cat([torch.eye(4)[rows], torch.eye(4)[columns], torch.zeros(16, 8)], dim=1)[None].expand(3, -1, -1)
    for hidden, expected in ((coded, 1.0), (torch.ones(3, 16, 16), 1 / 16)):
        head = oracle.CellPositionHead(16, side=4)
        optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
        start = head.loss(hidden).item()
        for _ in range(200):
            optimizer.zero_grad()
            head.loss(hidden).backward()
            optimizer.step()
        if expected == 1.0:
            assert head.accuracy(hidden) == 1.0 and head.loss(hidden).item() < 0.1 * start
        else:
            assert head.accuracy(hidden) <= expected + 1e-6


def test_without_rope_one_layer_reads_the_cells_as_a_set_and_with_it_as_a_grid():
    """`rope="none"` must really remove rotary positions: a one-layer decoder's last position
    then gets the same state whatever order the cells come in (attention over a set), which
    M-RoPE's rotations break. (Deeper, the causal mask alone orders the cells.)"""
    one_layer = {**MICRO, "text": {**MICRO["text"], "num_hidden_layers": 1}}
    model = build_nano(seed=0, **one_layer)
    language_model = model.model.model.language_model.eval()
    codes = oracle.OracleCodes("replace", scale=1.0).table(64)
    batch = oracle.retrieval_batch(language_model, model.tokenizer, codes, oracle.heldout_scenes(1), random.Random(0))
    reordered = torch.cat([batch.embeddings[:, :16].flip(1), batch.embeddings[:, 16:]], dim=1)
    flipped = oracle.RetrievalBatch(reordered, batch.positions, batch.targets, batch.objects)
    with torch.no_grad():
        for rope, same in ((False, True), (True, False)):
            last = [oracle.retrieval_scores(language_model, torch.nn.Identity(), b, rope=rope) for b in (batch, flipped)]
            assert torch.allclose(last[0], last[1], atol=1e-5) is same


def test_the_pointer_control_learns_the_retrieval_its_decoder_is_compared_with():
    """The control must learn the toy (else a flat decoder curve would say nothing): a pointer
    head, 60 steps of 16 scenes, beats always answering the best cell (0.25 right) by far."""
    recipe = oracle.RetrievalRecipe("shipped", steps=60, batch_size=16, test_scenes=100, evaluate_every=60,
                                    learning_rate=2e-3, warmup_steps=0, max_grad_norm=0, pointer=True,
                                    scene_pool=0)
    curve = oracle.retrieval_probe(recipe)
    assert curve[0]["right"] < 0.35 and curve[-1]["right"] > 0.5


def test_the_readout_measure_reads_a_checkpoint_with_or_without_codes_and_readout(tmp_path):
    """`readout_retrieval` measures the model's own first x0 on held-out answers, and with a
    binding readout in the checkpoint the readout's pick too: a readout that always picks cell 0
    can be right only where the region covers cell 0's column, so right <= readout column."""
    from rexomni_core.train.sft import BindingReadout

    model = build_nano(seed=0, **MICRO)
    model.square_side, model.max_pixels = 112, 112**2
    checkpoint = tmp_path / "run" / "checkpoint-1"
    model.save_pretrained(checkpoint)
    plain = oracle.readout_retrieval(checkpoint, count=4, batch_size=2)
    assert set(plain) == {"checkpoint", "codes", "queries", "answer column"} and plain["codes"] is False
    assert plain["queries"] > 0 and 0 <= plain["answer column"] <= 1
    oracle.OracleCodes("add").save(checkpoint.parent)
    readout = BindingReadout(64, 16, 1.0)
    with torch.no_grad():
        readout.readout.weight.zero_()
        readout.readout.bias.copy_(torch.arange(16, 0, -1).float())  # cell 0 always
    readout.save(checkpoint)
    measured = oracle.readout_retrieval(checkpoint, count=4, batch_size=2)
    assert measured["codes"] is True and measured["queries"] == plain["queries"]
    assert 0 <= measured["right"] <= measured["readout column"] <= 1
    assert 0 <= measured["right of landed"] <= 1 and 0 <= measured["landed"] <= 1


def test_fold_writes_a_new_checkpoint_that_changes_only_the_coordinate_rows(tmp_path):
    """`fold` saves the checkpoint with its readout folded into the coordinate rows
    (`fold_readout_into_coordinates`) and the readout beside it: the hidden states, hence the
    readout's own picks, are the checkpoint's, only what the model writes moves. An existing
    folder and a tied checkpoint are refused."""
    from rexomni_core.model import RexOmni
    from rexomni_core.train.sft import BindingReadout, fold_readout_into_coordinates, untie_output_embeddings

    model = build_nano(seed=0, **MICRO)
    model.square_side, model.max_pixels = 112, 112**2
    checkpoint = tmp_path / "run" / "checkpoint-1"
    model.save_pretrained(checkpoint)
    readout = BindingReadout(64, 16, 1.0)
    torch.nn.init.normal_(readout.readout.weight, generator=torch.Generator().manual_seed(0))
    readout.save(checkpoint)
    with pytest.raises(ValueError, match="untied"):
        oracle.fold_checkpoint(checkpoint, 1.0, tmp_path / "run" / "tied")
    untie_output_embeddings(model.model)
    model.save_pretrained(checkpoint)
    folded = oracle.fold_checkpoint(checkpoint, 3.0, tmp_path / "run" / "folded")
    with pytest.raises(InputError, match="exists"):
        oracle.fold_checkpoint(checkpoint, 1.0, folded)
    fold_readout_into_coordinates(model.model, readout, model.coordinate_ids, 3.0)
    reloaded = RexOmni.from_pretrained(str(folded)).model
    assert reloaded.config.tie_word_embeddings is False
    torch.testing.assert_close(reloaded.lm_head.weight, model.model.lm_head.weight)
    before, after = (oracle.readout_retrieval(c, count=4, batch_size=2) for c in (checkpoint, folded))
    assert {k: before[k] for k in ("right", "landed", "readout column")} == {k: after[k] for k in ("right", "landed", "readout column")}
