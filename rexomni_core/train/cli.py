"""`rexomni train vision|sft|grpo --config RECIPE [--set key=value ...]`, `rexomni train nano
--out DIR` (every nano stage in order), `rexomni train list` (the packaged recipes) and `rexomni
train accelerate-config NAME` (the path of a packaged accelerate config, for `accelerate launch
--config_file`)."""

from __future__ import annotations

import argparse

CONFIG_NAMES = {"sft": "SFTConfig", "grpo": "GRPOConfig", "vision": "VisionConfig"}


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train a model (vision, sft, grpo); list the packaged recipes")
    stages = train.add_subparsers(dest="stage", metavar="STAGE")
    stages.required = True
    for name, help_text in (
        ("sft", "supervised fine-tuning on conversations (an SFTConfig YAML)"),
        ("grpo", "GRPO with geometry-aware rewards after SFT (a GRPOConfig YAML)"),
        ("vision", "stage 0: vision pre-training on per-cell targets (a VisionConfig YAML)"),
    ):
        stage = stages.add_parser(name, help=help_text)
        stage.add_argument(
            "--config", required=True,
            help=f"a {CONFIG_NAMES[name]}: a packaged recipe's name (rexomni train list) or a YAML file",
        )
        stage.add_argument(
            "--set", action="append", default=[], metavar="KEY=VALUE",
            help="override a config field, e.g. --set max_steps=200 --set data.kwargs.seed=1",
        )
        stage.set_defaults(func=run_stage)
    nano = stages.add_parser("nano", help="train Rex-Omni-nano from scratch: every stage in order, resumable")
    nano.add_argument("--out", required=True, help="folder of the run: one subfolder per stage")
    nano.add_argument(
        "--set", action="append", default=[], metavar="[STAGE:]KEY=VALUE",
        help="override a field of every stage, or of one (vision, sft1, sft2, grpo): --set vision:max_steps=400",
    )
    nano.set_defaults(func=run_nano)
    stages.add_parser("list", help="the packaged recipes, for --config NAME").set_defaults(func=list_recipes)
    accelerate = stages.add_parser(
        "accelerate-config", help="print the path of a packaged accelerate config (for --config_file)"
    )
    accelerate.add_argument("name", help="zero2 (DeepSpeed ZeRO-2) or fsdp")
    accelerate.set_defaults(func=print_accelerate_config)


def run_stage(args: argparse.Namespace) -> int:
    from .configs import STAGES, run_stage

    config = STAGES[args.stage][0].from_yaml(args.config, args.set)
    print(f"final model: {run_stage(args.stage, config)}")
    return 0


def run_nano(args: argparse.Namespace) -> int:
    from .nano_pipeline import train_nano

    print(f"final model: {train_nano(args.out, args.set)}")
    return 0


def list_recipes(args: argparse.Namespace) -> int:
    from .configs import recipe_names

    print("\n".join(recipe_names()))
    return 0


def print_accelerate_config(args: argparse.Namespace) -> int:
    from .configs import accelerate_config

    print(accelerate_config(args.name))
    return 0
