"""`rexomni train sft|grpo --config RECIPE [--set key=value ...]`, `rexomni train list` (the
packaged recipes) and `rexomni train accelerate-config NAME` (the path of a packaged accelerate
config, for `accelerate launch --config_file`)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train a model (sft, grpo); list the packaged recipes")
    stages = train.add_subparsers(dest="stage", metavar="STAGE")
    stages.required = True
    for name, help_text, handler in (
        ("sft", "supervised fine-tuning on conversations (an SFTConfig YAML)", run_sft),
        ("grpo", "GRPO with geometry-aware rewards after SFT (a GRPOConfig YAML)", run_grpo),
    ):
        stage = stages.add_parser(name, help=help_text)
        stage.add_argument(
            "--config", required=True,
            help=f"a {name.upper()}Config: a packaged recipe's name (rexomni train list) or a YAML file",
        )
        stage.add_argument(
            "--set", action="append", default=[], metavar="KEY=VALUE",
            help="override a config field, e.g. --set max_steps=200 --set data.kwargs.seed=1",
        )
        stage.set_defaults(func=handler)
    stages.add_parser("list", help="the packaged recipes, for --config NAME").set_defaults(func=list_recipes)
    accelerate = stages.add_parser(
        "accelerate-config", help="print the path of a packaged accelerate config (for --config_file)"
    )
    accelerate.add_argument("name", help="zero2 (DeepSpeed ZeRO-2) or fsdp")
    accelerate.set_defaults(func=print_accelerate_config)


def run_sft(args: argparse.Namespace) -> int:
    from .configs import SFTConfig
    from .sft import train_sft

    print(f"final model: {train_sft(SFTConfig.from_yaml(args.config, args.set))}")
    return 0


def run_grpo(args: argparse.Namespace) -> int:
    from .configs import GRPOConfig
    from .grpo import train_grpo

    print(f"final model: {train_grpo(GRPOConfig.from_yaml(args.config, args.set))}")
    return 0


def list_recipes(args: argparse.Namespace) -> int:
    from .configs import recipe_names

    print("\n".join(recipe_names()))
    return 0


def print_accelerate_config(args: argparse.Namespace) -> int:
    from .configs import accelerate_config

    print(accelerate_config(args.name))
    return 0
