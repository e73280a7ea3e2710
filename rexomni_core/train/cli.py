"""`rexomni train sft|grpo --config CONFIG.yaml [--set key=value ...]`."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train a model (sft, grpo)")
    stages = train.add_subparsers(dest="stage", metavar="STAGE")
    stages.required = True
    for name, help_text, handler in (
        ("sft", "supervised fine-tuning on conversations (an SFTConfig YAML)", run_sft),
        ("grpo", "GRPO with geometry-aware rewards after SFT (a GRPOConfig YAML)", run_grpo),
    ):
        stage = stages.add_parser(name, help=help_text)
        stage.add_argument("--config", required=True, help=f"YAML file of a {name.upper()}Config")
        stage.add_argument(
            "--set", action="append", default=[], metavar="KEY=VALUE",
            help="override a config field, e.g. --set max_steps=200 --set data.kwargs.seed=1",
        )
        stage.set_defaults(func=handler)


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
