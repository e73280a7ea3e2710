"""The whole Rex-Omni-nano from scratch in one command: `rexomni train nano --out DIR`.

The stages run in order, each a packaged recipe whose `model:` is the previous stage's `final/`
and whose output is `DIR/<stage>`: vision pre-training (stage 0), SFT in two steps of the
curriculum (1a: one or two shapes, asked for what is there; 1b: every world and task), then
GRPO (stage 2). A stage whose `final/` exists is done and skipped; an interrupted one resumes
from its newest checkpoint, so the same command, rerun, continues wherever it stopped.

`--set key=value` changes a field of every stage; `--set STAGE:key=value` one stage's only
(`--set vision:max_steps=400`); the tests train the pipeline at a tiny size this way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError
from .configs import STAGES, run_stage

# (name in DIR and in --set, training stage, packaged recipe), in training order.
NANO_V3_STAGES = (
    ("vision", "vision", "nano_v3_vision"),
    ("sft1", "sft", "nano_v3_sft1"),
    ("sft2", "sft", "nano_v3_sft2"),
    ("grpo", "grpo", "nano_v3_grpo"),
)


def stage_overrides(overrides: Sequence[str], stage: str) -> list[str]:
    """The `--set` items that apply to `stage`: unprefixed ones and `stage:`-prefixed ones."""
    names = {name for name, _, _ in NANO_V3_STAGES}
    chosen = []
    for item in overrides:
        prefix, colon, rest = item.partition(":")
        if colon and "=" not in prefix:
            if prefix not in names:
                raise InputError(f"--set {item!r}: no stage {prefix!r}; stages: {', '.join(sorted(names))}")
            if prefix == stage:
                chosen.append(rest)
        else:
            chosen.append(item)
    return chosen


def train_nano(out: str | Path, overrides: Sequence[str] = ()) -> Path:
    """Train (or resume) every stage into `out`; returns the last stage's `final/`."""
    out = Path(out)
    configs = []
    previous = None
    for name, stage, recipe in NANO_V3_STAGES:  # every config read before any training
        chain = [f"output_dir={out / name}"] + ([f"model={previous}"] if previous else [])
        configs.append((name, stage, STAGES[stage][0].from_yaml(recipe, chain + stage_overrides(overrides, name))))
        previous = out / name / "final"
    final = None
    for number, (name, stage, config) in enumerate(configs):
        final = Path(config.output_dir) / "final"
        if (final / "model.safetensors").is_file():
            print(f"stage {number} ({name}): done, {final}", flush=True)
            continue
        print(f"stage {number} ({name}): training into {config.output_dir}", flush=True)
        final = run_stage(stage, config)
    return final
