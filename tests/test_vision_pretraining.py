"""Stage 0 of nano training: per-cell targets of a scene, the vision pre-training loop (resume
exact, language model untouched, heads dropped) and the cell probe."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from rexomni_core.annotations import Annotation, Mask, Scene
from rexomni_core.data.cell_targets import (
    CELL_CATEGORIES,
    CELL_CHARACTERS,
    CELL_COLOURS,
    CELL_SHAPES,
    IGNORE,
    CellTargetStream,
    SceneEntry,
    cell_coverage,
    cell_targets,
)
from rexomni_core.data.synth import scene_seed
from rexomni_core.data.worlds import generate
from rexomni_core.errors import InputError
from rexomni_core.model import RexOmni
from rexomni_core.train.configs import DataConfig, VisionConfig
from rexomni_core.train.vision import HEAD_SIZES, stack_targets, train_vision, vision_losses
from tests.test_model_sft import MICRO


def _square(category: str, x0: int, y0: int, side: int) -> Annotation:
    bits = np.ones((side, side), dtype=bool)
    colour, shape = category.split(" ")
    return Annotation(category, [x0, y0, x0 + side, y0 + side], mask=Mask(x0, y0, bits),
                      attributes={"colour": colour, "shape": shape})


def test_cells_belong_to_the_object_covering_most_of_them_and_a_small_object_keeps_its_centre():
    # 112² view of a 224 x 112 image: 4 x 4 cells of 56 x 28 original pixels.
    big = _square("red square", 0, 0, 84)  # covers cell (0,0) fully, (0,1) half
    small = _square("blue circle", 180, 90, 6)  # 6 x 6 px: under 15 % of any cell
    small.attributes["shape"] = "circle"
    scene = Scene(Image.new("RGB", (224, 112)), "shapes", "normal", 0, [big, small])
    targets = cell_targets(scene, 112)
    category = targets.category.reshape(4, 4)
    red, blue = CELL_CATEGORIES.index("red square"), CELL_CATEGORIES.index("blue circle")
    assert category[0, 0] == red and category[0, 1] == red and category[2, 0] == red  # 84 px: 3 rows of 28
    assert category[3, 0] == 0 and category[0, 2] == 0
    assert category[3, 3] == blue  # the small object's centre cell
    assert targets.colour[0] == CELL_COLOURS.index("red") and targets.shape[0] == CELL_SHAPES.index("square")
    np.testing.assert_allclose(targets.box[0], [0, 0, 84 / 224, 84 / 112], atol=1e-6)
    assert np.isnan(targets.box[2]).all()
    assert targets.centre.argmax() in (0, 4)  # the big square's centre (42, 42) lies in cell (1, 0)
    assert targets.keypoints.max() == 0
    # Each object's centre cell, and no other: (1, 0) for the big square, (3, 3) for the small circle.
    assert np.flatnonzero(targets.centre_cell).tolist() == [4, 15]


def test_centre_shape_cells_ask_the_shape_of_centre_cells_only():
    scene = Scene(Image.new("RGB", (224, 112)), "shapes", "normal", 0, [_square("red square", 0, 0, 84)])
    targets = stack_targets([cell_targets(scene, 112)])
    logits = {name: torch.zeros(16, size, requires_grad=True) for name, size in HEAD_SIZES.items()}
    edge_cells = targets["centre_cell"].logical_not() & (targets["category"] > 0)
    for cells, expected in (("owned", True), ("centre", False)):
        loss = vision_losses(logits, targets, {}, 0.3, shape_cells=cells)["shape"]
        (gradient,) = torch.autograd.grad(loss, logits["shape"])
        assert bool(gradient[edge_cells].abs().sum() > 0) is expected
        assert gradient[targets["centre_cell"]].abs().sum() > 0
    with pytest.raises(InputError, match="shape_cells"):
        VisionConfig(shape_cells="middle").check()


def test_coverage_is_the_share_of_each_cells_pixels():
    pixels = np.zeros((4, 4), dtype=bool)
    pixels[:2, :1] = True
    np.testing.assert_allclose(cell_coverage(pixels, 2), [[0.5, 0], [0, 0]])


def test_an_ocr_cell_names_the_character_under_its_centre_and_gui_cells_have_no_character_target():
    word = Annotation("word", [0, 0, 112, 28], polygon=[0, 0, 112, 0, 112, 28, 0, 28], text="AB")
    targets = cell_targets(Scene(Image.new("RGB", (112, 112)), "ocr", "normal", 0, [word]), 112)
    assert targets.char[:4].tolist() == [CELL_CHARACTERS.index(c) for c in "AABB"]
    assert targets.char[4] == 0 and targets.colour[0] == IGNORE and targets.shape[0] == IGNORE
    gui = cell_targets(generate("gui", 3), 112)
    assert (gui.char == IGNORE).all()


def test_every_world_gives_targets_and_the_stream_draws_synths_scenes():
    stream = CellTargetStream((SceneEntry("shapes"), SceneEntry("ocr"), SceneEntry("gui"), SceneEntry("keypoints")),
                              seed=5, square_side=56)
    worlds = set()
    for index in range(12):
        image, targets = stream[index]
        scene = stream.scene(index)
        worlds.add(scene.world)
        assert image.size == (56, 56) and targets.category.shape == (4,)
        assert scene.annotations[0].box == generate(scene.world, scene_seed(5, index)).annotations[0].box
    assert worlds == {"shapes", "ocr", "gui", "keypoints"}
    assert any(stream[i][1].keypoints.max() > 0.5 for i in range(12) if stream.scene(i).world == "keypoints")


def _config(tmp_path, **changes) -> VisionConfig:
    fields = dict(
        output_dir=str(tmp_path / "vision"), model="nano-init", nano_architecture=MICRO, square_side=112,
        data=DataConfig("rexomni_core.data.cell_targets:CellTargetStream",
                        {"seed": 1, "mixture": [{"world": "shapes", "split": "few"}, {"world": "ocr"}]}),
        max_steps=6, batch_size=4, learning_rate=3e-3, warmup_steps=1, logging_steps=2, save_steps=3,
        save_total_limit=5, probe_train_images=8, probe_test_images=4,
    )
    return VisionConfig(**(fields | changes))


def _weights(path) -> dict[str, torch.Tensor]:
    return RexOmni.from_pretrained(path, device="cpu", dtype=torch.float32).model.state_dict()


def test_vision_pretraining_trains_only_the_tower_logs_the_probe_and_resumes_exactly(tmp_path):
    config = _config(tmp_path)
    final = train_vision(config)
    trained = _weights(final)
    log = json.loads((final / "vision_log.json").read_text())
    assert [e["step"] for e in log if "probe" in e] == [0, 3, 6]
    assert {"colour", "shape", "category"} <= set(log[0]["probe"])
    losses = [e["loss"] for e in log if "loss" in e]
    assert losses[-1] < losses[0]

    fresh = _weights(tmp_path / "vision" / "checkpoint-3")  # any checkpoint: the LM is as initialised
    language = [k for k in trained if not k.startswith("model.visual")]
    vision = [k for k in trained if k.startswith("model.visual")]
    assert all(torch.equal(trained[k], fresh[k]) for k in language)
    assert any(not torch.equal(trained[k], fresh[k]) for k in vision)

    # Interrupted after checkpoint 3: the rerun resumes there and ends with the same weights.
    shutil.rmtree(tmp_path / "vision" / "checkpoint-6")
    shutil.rmtree(final)
    again = _weights(train_vision(config))
    for key in trained:
        torch.testing.assert_close(again[key], trained[key], rtol=1e-5, atol=1e-6)


def test_a_vision_config_refuses_a_side_that_is_not_whole_cells(tmp_path):
    with pytest.raises(InputError, match="multiple of 28"):
        train_vision(_config(tmp_path, square_side=50))
    assert not (tmp_path / "vision").exists()


def test_the_cell_probe_reads_a_cells_row_and_column_only_from_tokens_that_carry_them(monkeypatch):
    """Its row and column targets follow the tokens' raster order: tokens that are a code of
    their own cell give every row and column, identical tokens only the most frequent (1 in 4)."""
    from types import SimpleNamespace

    from rexomni_core.nano import cell_probe

    probe = cell_probe.CellProbe(112, train_images=6, test_images=3)
    coded = lambda rexomni, images: torch.eye(16).repeat(len(images), 1)  # noqa: E731
    same = torch.linspace(-1, 1, 16)
    constant = lambda rexomni, images: same.repeat(16 * len(images), 1)  # noqa: E731
    model = SimpleNamespace(square_side=112)
    for tokens, expected in ((coded, 1.0), (constant, 0.25)):
        monkeypatch.setattr(cell_probe, "visual_tokens", tokens)
        measured = probe.measure(model)
        assert measured["row"] == expected and measured["column"] == expected
