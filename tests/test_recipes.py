"""The packaged training recipes: written as changes to a base (`base:`), they still resolve to
what each file held before (tests/fixtures/recipes_resolved.json); they are named from any
folder and ship in the wheel with the accelerate configs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("yaml")

from rexomni_core.cli import main
from rexomni_core.errors import InputError, MissingInputError
from rexomni_core.train.configs import (
    GRPOConfig,
    SFTConfig,
    VisionConfig,
    accelerate_config,
    read_recipe,
    recipe_names,
    recipe_path,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
BEFORE = json.loads((Path(__file__).parent / "fixtures" / "recipes_resolved.json").read_text())["recipes"]


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_every_recipe_resolves_to_what_its_file_held_before_it_had_a_base(name):
    assert read_recipe(name) == BEFORE[name]


def test_every_shipped_recipe_parses():
    recipes = recipe_names()
    assert len(recipes) >= 5 and set(BEFORE) <= set(recipes)
    for recipe in recipes:
        stage = GRPOConfig if "grpo" in recipe else VisionConfig if "vision" in recipe else SFTConfig
        config = stage.from_yaml(recipe)
        assert config.max_steps > 0, recipe


def test_a_base_merges_mappings_key_by_key_and_replaces_lists_whole(tmp_path):
    (tmp_path / "bases").mkdir()
    (tmp_path / "bases" / "root.yaml").write_text(
        "max_steps: 100\nlora: {r: 4}\n"
        "data:\n  kwargs:\n    seed: 1\n    mixture: [{world: shapes, task: detection}, {world: shapes, task: pointing}]\n"
    )
    (tmp_path / "bases" / "child.yaml").write_text(
        "base: root.yaml\ndata:\n  kwargs:\n    mixture: [{world: shapes, task: referring}]\n"
    )
    (tmp_path / "grandchild.yaml").write_text("base: bases/child.yaml\nlora: {alpha: 8}\nmax_steps: 7\n")
    assert read_recipe(tmp_path / "grandchild.yaml") == {
        "max_steps": 7,
        "lora": {"r": 4, "alpha": 8},
        "data": {"kwargs": {"seed": 1, "mixture": [{"world": "shapes", "task": "referring"}]}},
    }
    config = SFTConfig.from_yaml(tmp_path / "grandchild.yaml", ["data.kwargs.seed=5"])
    assert (config.max_steps, config.lora.r, config.lora.alpha, config.data.kwargs["seed"]) == (7, 4, 8, 5)


def test_a_local_file_may_start_from_a_packaged_recipe(tmp_path):
    (tmp_path / "short.yaml").write_text("base: nano_ladder6_shapes\nmax_steps: 10\noutput_dir: runs/short\n")
    config = SFTConfig.from_yaml(tmp_path / "short.yaml")
    expected = SFTConfig.from_yaml("nano_ladder6_shapes", ["max_steps=10", "output_dir=runs/short"])
    assert config == expected and config.data.kwargs["seed"] == 46


def test_bases_that_loop_and_names_that_match_nothing_are_input_errors(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(InputError, match="its bases come back to it"):
        read_recipe(tmp_path / "a.yaml")
    with pytest.raises(InputError, match=r"no packaged recipe named 'nano_ladder9'.*known: .*nano_ladder6_shapes"):
        SFTConfig.from_yaml("nano_ladder9")
    (tmp_path / "c.yaml").write_text("base: nano_ladder9\n")
    with pytest.raises(InputError, match="no packaged recipe named 'nano_ladder9'"):
        read_recipe(tmp_path / "c.yaml")
    with pytest.raises(MissingInputError, match="no config file at"):
        SFTConfig.from_yaml(str(tmp_path / "missing.yaml"))
    with pytest.raises(InputError, match="no packaged accelerate config named 'zero3'.*known: fsdp, zero2"):
        accelerate_config("zero3")


def test_train_list_and_accelerate_config_commands(capsys):
    assert main(["train", "list"]) == 0
    assert capsys.readouterr().out.split() == recipe_names()
    assert main(["train", "accelerate-config", "zero2"]) == 0
    printed = Path(capsys.readouterr().out.strip())
    assert printed.is_file() and printed == accelerate_config("zero2") and printed.name == "zero2.yaml"
    assert main(["train", "accelerate-config", "zero3"]) == 2
    assert "no packaged accelerate config named 'zero3'" in capsys.readouterr().err


def test_the_wheel_ships_recipes_and_accelerate_configs_that_resolve_outside_the_checkout(tmp_path):
    # Built from a copy, so the checkout gets no build/ folder; ~5 s.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    shutil.copytree(REPO_ROOT / "rexomni_core", source / "rexomni_core", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(tmp_path / "dist"), "."],
        cwd=source, check=True, capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("rexomni_core-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("recipes", "accelerate"):
        for path in (REPO_ROOT / "rexomni_core" / "train" / folder).glob("*.yaml"):
            assert f"rexomni_core/train/{folder}/{path.name}" in shipped

    installed, elsewhere = tmp_path / "installed", tmp_path / "elsewhere"
    zipfile.ZipFile(wheel).extractall(installed)
    elsewhere.mkdir()
    script = (
        "import json, rexomni_core; from rexomni_core.train.configs import accelerate_config, read_recipe; "
        "print(json.dumps([rexomni_core.__file__, read_recipe('nano_ladder7_square224'), "
        "str(accelerate_config('fsdp'))]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=elsewhere, env={"PYTHONPATH": str(installed)},
        check=True, capture_output=True, text=True,
    )
    package, recipe, fsdp = json.loads(result.stdout)
    assert Path(package).is_relative_to(installed) and Path(fsdp).is_relative_to(installed)
    assert recipe == BEFORE["nano_ladder7_square224"]  # its base chain, read from the wheel


def test_a_config_is_a_path_when_it_has_a_slash_or_a_yaml_ending():
    assert recipe_path("nano_ladder6_shapes").parent.name == "recipes"
    assert recipe_path("my.yaml") == Path("my.yaml") and recipe_path("configs/my") == Path("configs/my")


def test_bf16_falls_back_to_fp32_on_a_cpu_without_native_bf16(capsys, monkeypatch):
    from rexomni_core.train import common

    monkeypatch.setattr(common.torch.cuda, "is_available", lambda: False)
    assert common.bf16_is_native("flags : fpu avx2 avx512f avx512_bf16") is True
    assert common.bf16_is_native("flags : fpu avx2 amx_bf16 amx_tile") is True
    assert common.bf16_is_native("flags : fpu avx2 avx512f") is False
    assert "fp32 instead" in capsys.readouterr().out
