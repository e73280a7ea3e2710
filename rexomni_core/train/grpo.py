"""GRPO post-training (the paper's second stage) on TRL's `GRPOTrainer`.

Prompts come from the data engines with their ground truth; for each prompt a group of
completions is sampled, each scored by the task's geometry-aware reward (`train/rewards.py`) plus
a weighted format reward, and the policy moves toward the better completions of its group, held
near the starting model by a KL term (β).

TRL decodes completions with special tokens stripped, which erases the answer grammar
(`<|box_start|>` …), so the reward functions here decode `completion_ids` themselves with the
special tokens kept and parse them with `grammar.parse`.

Multi-GPU: `accelerate launch --config_file "$(rexomni train accelerate-config zero2)" -m
rexomni_core.cli train grpo --config ...` (`fsdp` for FSDP), the same command as on one device.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from ..chat import chat_messages
from ..grammar import parse
from ..images import load_image
from ..regions import Prediction, Region, region_from_dict, region_to_dict
from .configs import GRPOConfig
from .rewards import format_reward, task_reward


def prompt_rows(
    config: GRPOConfig, view: Callable[[Image.Image], Image.Image] = lambda image: image, prompt_first: bool = False
) -> list[dict[str, Any]]:
    """`config.num_prompts` prompts from the data engines, in TRL's conversational form, each
    with what the rewards need: task, image size and the ground-truth regions (as JSON).
    `view` gives the image as the model reads it (`RexOmni.view`: nano's square view); TRL's
    processor sees that, while width and height stay the original's (answers are normalised);
    `prompt_first` orders the user turn as the model was trained (`RexOmni.prompt_first`)."""
    source = config.data.build()
    rows = []
    for index in range(config.num_prompts):
        conversation = source[index]
        rows.append(
            {
                "prompt": chat_messages(conversation.prompt, prompt_first=prompt_first),
                "image": view(load_image(conversation.image)),
                "task": conversation.task,
                "width": conversation.width,
                "height": conversation.height,
                "truth": json.dumps([region_to_dict(r) for r in conversation.judged_against]),
            }
        )
    return rows


class AnswerRewards:
    """The reward functions TRL calls: each parses the completions (special tokens kept)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def _parsed(self, completion_ids, task, width, height) -> list[Prediction]:
        texts = self.tokenizer.batch_decode(completion_ids, skip_special_tokens=False)
        return [parse(text, w, h, task=t) for text, t, w, h in zip(texts, task, width, height)]

    def geometry(self, prompts, completions, completion_ids, task, width, height, truth, **_) -> list[float]:
        predictions = self._parsed(completion_ids, task, width, height)
        return [
            task_reward(t, prediction, _regions(regions_json))
            for t, prediction, regions_json in zip(task, predictions, truth)
        ]

    def format(self, prompts, completions, completion_ids, task, width, height, **_) -> list[float]:
        return [format_reward(p) for p in self._parsed(completion_ids, task, width, height)]


def _regions(regions_json: str) -> list[Region]:
    return [region_from_dict(record) for record in json.loads(regions_json)]


def train_grpo(config: GRPOConfig, callbacks: Sequence = (), extra_rewards: Sequence[Callable] = ()) -> Path:
    """Run (or resume) GRPO; returns the directory of the final model (`output_dir/final`).

    `extra_rewards` are more TRL reward functions (weight 1 each) beside the task and format
    rewards, e.g. a length penalty.
    """
    import torch
    from datasets import Dataset
    from trl import GRPOConfig as TRLGRPOConfig
    from trl import GRPOTrainer

    from ..model import RexOmni
    from .common import ResumeWithWeights, apply_lora, latest_checkpoint, save_final, training_arguments

    config.check()  # before anything is written
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    config.to_yaml(output_dir / "grpo_config.yaml")
    # The policy is loaded from a directory: TRL builds the KL reference model from that path.
    rexomni = RexOmni.from_pretrained(config.model, device="cpu", dtype=torch.float32)
    rewards = AnswerRewards(rexomni.tokenizer)
    args = TRLGRPOConfig(
        **training_arguments(config),
        per_device_train_batch_size=config.prompts_per_step * config.num_generations,
        num_generations=config.num_generations,
        beta=config.beta,
        temperature=config.temperature,
        max_completion_length=config.max_completion_length,
        reward_weights=[1.0, config.format_weight] + [1.0] * len(extra_rewards),
    )
    class RexOmniGRPOTrainer(ResumeWithWeights, GRPOTrainer):
        pass

    trainer = RexOmniGRPOTrainer(
        model=apply_lora(rexomni.model.train(), config.lora),
        reward_funcs=[rewards.geometry, rewards.format, *extra_rewards],
        args=args,
        train_dataset=Dataset.from_list(prompt_rows(config, rexomni.view, rexomni.prompt_first)),
        processing_class=rexomni.processor,  # saved into every checkpoint (train/common.py)
        callbacks=list(callbacks),
    )
    resume = latest_checkpoint(output_dir) if config.resume else None
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    return save_final(trainer.model, rexomni.processor, output_dir, trainer.state.log_history, config.lora)
