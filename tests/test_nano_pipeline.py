"""`rexomni train nano`: every stage of Rex-Omni-nano from scratch, in order, at a tiny size."""

from __future__ import annotations

import json

import pytest

from rexomni_core.cli import main
from rexomni_core.errors import InputError
from rexomni_core.model import RexOmni
from rexomni_core.train.nano_pipeline import stage_overrides
from tests.test_model_sft import MICRO

TINY = [
    "max_steps=2", "logging_steps=1", "save_steps=1", "save_total_limit=1",
    "vision:square_side=112", "vision:batch_size=2", "vision:probe_train_images=4", "vision:probe_test_images=2",
    "vision:dataloader_num_workers=0", f"vision:nano_architecture={json.dumps(MICRO)}",
    "sft1:batch_size=2", "sft2:batch_size=2", "sft1:square_side=112", "sft2:square_side=112",
    "sft1:max_pixels=12544", "sft2:max_pixels=12544", "sft1:probe_test_images=2", "sft2:probe_test_images=0",
    "sft1:dataloader_num_workers=0", "sft2:dataloader_num_workers=0",
    "grpo:num_prompts=2", "grpo:prompts_per_step=1", "grpo:num_generations=2", "grpo:max_completion_length=8",
]


def test_overrides_go_to_every_stage_or_to_the_one_named():
    assert stage_overrides(["max_steps=3", "vision:batch_size=2", "sft1:seed=4"], "vision") == ["max_steps=3", "batch_size=2"]
    assert stage_overrides(["data.kwargs.mixture=[{world: ocr}]"], "sft2") == ["data.kwargs.mixture=[{world: ocr}]"]
    with pytest.raises(InputError, match="no stage 'visoin'"):
        stage_overrides(["visoin:max_steps=3"], "vision")


def test_one_command_trains_every_stage_and_a_rerun_skips_what_is_done(tmp_path, capsys):
    sets = [arg for item in TINY for arg in ("--set", item)]
    assert main(["train", "nano", "--out", str(tmp_path), *sets]) == 0
    out = capsys.readouterr().out
    for number, stage in enumerate(("vision", "sft1", "sft2", "grpo")):
        assert f"stage {number} ({stage}): training" in out
        assert (tmp_path / stage / "final" / "model.safetensors").is_file()
    # Each stage started from the one before: SFT's config names the vision stage's final.
    assert str(tmp_path / "vision" / "final") in (tmp_path / "sft1" / "sft_config.yaml").read_text()
    assert RexOmni.from_pretrained(tmp_path / "grpo" / "final").square_side == 112
    # Every stage's data posed its tasks, and the checkpoint says so (vision trains no task).
    assert RexOmni.from_pretrained(tmp_path / "vision" / "final").trained_tasks == ()
    assert set(RexOmni.from_pretrained(tmp_path / "grpo" / "final").trained_tasks) >= {"detection", "ocr_box", "keypoint"}

    assert main(["train", "nano", "--out", str(tmp_path), *sets]) == 0
    again = capsys.readouterr().out
    assert all(f"({stage}): done" in again for stage in ("vision", "sft1", "sft2", "grpo"))
    assert "training" not in again
