"""Training survives a real SIGKILL: `rexomni train sft|grpo` is killed after a checkpoint, the
same command is run again, and the resumed run starts from the checkpoint's weights (not from its
starting weights, as it once silently did) with its loss where it was."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("transformers")
import torch
from transformers import TrainerCallback

from rexomni_core.model import RexOmni
from rexomni_core.nano.architecture import build_nano
from rexomni_core.train.common import latest_checkpoint
from rexomni_core.train.configs import DataConfig, GRPOConfig, SFTConfig
from rexomni_core.train.grpo import train_grpo
from rexomni_core.train.sft import train_sft
from tests.test_model_sft import MICRO, TINY_DATA

REPO_ROOT = Path(__file__).resolve().parents[1]


class WeightsAtStart(TrainerCallback):
    """What the model holds when the (resumed) training loop begins."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.step = state.global_step
        self.weights = {name: value.detach().clone() for name, value in model.state_dict().items()}


def _train_and_kill(command: list[str], output_dir: Path, after_step: int) -> Path:
    """Run a training command in a process of its own and SIGKILL it once a checkpoint at or past
    `after_step` is complete; the newest complete checkpoint."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    try:
        while True:
            checkpoint = latest_checkpoint(output_dir)
            if checkpoint is not None and int(checkpoint.name.split("-")[1]) >= after_step:
                break
            if process.poll() is not None:
                pytest.fail(f"the run ended before it could be killed: {process.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint within 300 s")
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the run had already finished: nothing was interrupted"
    return latest_checkpoint(output_dir)


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return RexOmni.from_pretrained(checkpoint, device="cpu", dtype=torch.float32).model.state_dict()


def _assert_starts_from(probe: WeightsAtStart, checkpoint: Path, saved: dict[str, torch.Tensor]) -> None:
    """`saved`: the checkpoint's weights, read before the resumed run could rotate it away."""
    assert probe.step == int(checkpoint.name.split("-")[1])
    assert set(probe.weights) == set(saved)
    different = [name for name in saved if not torch.equal(probe.weights[name], saved[name])]
    assert not different, f"resumed with other weights than the checkpoint's: {different[:5]}"


def _losses(log_history: list[dict]) -> dict[int, float]:
    return {entry["step"]: entry["loss"] for entry in log_history if "loss" in entry}


def test_sft_killed_after_a_checkpoint_resumes_with_its_weights_and_loss(tmp_path):
    data = DataConfig(TINY_DATA.factory, {**TINY_DATA.kwargs, "delay": 0.03})
    config = SFTConfig(
        output_dir=str(tmp_path / "run"), data=data, max_steps=40, batch_size=4, learning_rate=1e-2,
        warmup_steps=2, logging_steps=2, save_steps=6, nano_architecture=MICRO,
    )
    config_path = tmp_path / "sft.yaml"
    config.to_yaml(config_path)
    command = [sys.executable, "-m", "rexomni_core.cli", "train", "sft", "--config", str(config_path)]
    checkpoint = _train_and_kill(command, tmp_path / "run", after_step=12)
    before = _losses(json.loads((checkpoint / "trainer_state.json").read_text())["log_history"])
    saved = _weights(checkpoint)

    probe = WeightsAtStart()
    final = train_sft(SFTConfig.from_yaml(config_path), callbacks=[probe])  # = the same command again
    _assert_starts_from(probe, checkpoint, saved)
    after = _losses(json.loads((final / "log_history.json").read_text()))
    resumed_at = probe.step
    first_resumed = after[min(step for step in after if step > resumed_at)]
    start, last = before[min(before)], before[max(before)]
    # The loss goes on from where it was: nearer the checkpoint's than the untrained start's.
    assert last < 0.8 * start, before
    assert abs(first_resumed - last) < abs(first_resumed - start), (before, after)
    assert max(after) == 40


def test_lora_sft_resumes_with_its_adapter_weights(tmp_path):
    config = SFTConfig(
        output_dir=str(tmp_path / "lora"), data=TINY_DATA, max_steps=4, batch_size=2, learning_rate=1e-2,
        warmup_steps=0, logging_steps=1, save_steps=2, nano_architecture=MICRO,
    )
    config.lora.r = 4
    train_sft(config)
    checkpoint = tmp_path / "lora" / "checkpoint-4"
    config.max_steps = 6
    probe = WeightsAtStart()
    train_sft(config, callbacks=[probe])
    assert probe.step == 4
    from safetensors.torch import load_file

    adapter = load_file(checkpoint / "adapter_model.safetensors")
    live = {name: value for name, value in probe.weights.items() if "lora_" in name}
    assert adapter and len(live) == len(adapter)
    for name, value in adapter.items():
        # peft saves `…lora_A.weight` for the live `…lora_A.default.weight`.
        match = [v for n, v in live.items() if n.replace(".default", "").endswith(name.split("base_model.model.", 1)[-1])]
        assert len(match) == 1 and torch.equal(match[0], value), name


def varied_reward(completion_ids, **_):
    """An untrained model earns no task reward, so every advantage would be 0 and GRPO would not
    move; this reward depends on the sampled tokens, so it varies."""
    return [(sum(ids) % 5) / 5 for ids in completion_ids]


# `train_grpo` with the reward above, as a command of its own.
GRPO_SCRIPT = (
    "import sys; from rexomni_core.train.configs import GRPOConfig; from rexomni_core.train.grpo import train_grpo; "
    "from tests.test_training_resume import varied_reward; "
    "train_grpo(GRPOConfig.from_yaml(sys.argv[1]), extra_rewards=[varied_reward])"
)


def test_grpo_killed_after_a_checkpoint_resumes_with_its_weights(tmp_path):
    start = tmp_path / "start"
    build_nano(seed=0, **MICRO).save_pretrained(start)
    config = GRPOConfig(
        output_dir=str(tmp_path / "grpo"), model=str(start),
        data=DataConfig(kwargs={"mixture": [{"world": "shapes", "task": "detection"}], "seed": 1}),
        num_prompts=8, max_steps=40, prompts_per_step=2, num_generations=2, temperature=1.0,
        max_completion_length=12, learning_rate=1e-2, logging_steps=1, save_steps=2, format_weight=0.0,
    )
    config_path = tmp_path / "grpo.yaml"
    config.to_yaml(config_path)
    command = [sys.executable, "-c", GRPO_SCRIPT, str(config_path)]
    checkpoint = _train_and_kill(command, tmp_path / "grpo", after_step=2)
    initial, saved = _weights(start), _weights(checkpoint)
    assert not all(torch.equal(initial[name], saved[name]) for name in saved), "GRPO moved no weight"

    probe = WeightsAtStart()
    resumed = GRPOConfig.from_yaml(config_path, [f"max_steps={int(checkpoint.name.split('-')[1]) + 1}"])
    train_grpo(resumed, callbacks=[probe], extra_rewards=[varied_reward])
    _assert_starts_from(probe, checkpoint, saved)
