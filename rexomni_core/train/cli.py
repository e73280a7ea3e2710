"""`rexomni train sft --config CONFIG.yaml [--set key=value ...]`."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train a model (sft)")
    stages = train.add_subparsers(dest="stage", metavar="STAGE")
    stages.required = True
    sft = stages.add_parser("sft", help="supervised fine-tuning on conversations")
    sft.add_argument("--config", required=True, help="YAML file of an SFTConfig")
    sft.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a config field, e.g. --set max_steps=200 --set data.kwargs.seed=1",
    )
    sft.set_defaults(func=run_sft)


def run_sft(args: argparse.Namespace) -> int:
    from .configs import SFTConfig
    from .sft import train_sft

    final = train_sft(SFTConfig.from_yaml(args.config, args.set))
    print(f"final model: {final}")
    return 0
