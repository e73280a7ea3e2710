"""`rexomni parse`: read a model answer from the command line or stdin."""

from __future__ import annotations

import argparse
import json
import sys

from .coords import DECODERS
from .tasks import TASKS


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "parse",
        help="parse a model answer into regions (JSON)",
        description="Parse a Rex-Omni answer into regions in original-image pixels.",
    )
    parser.add_argument("text", nargs="?", help="the answer text; read from stdin when omitted")
    parser.add_argument("--width", type=float, required=True, help="original image width (px)")
    parser.add_argument("--height", type=float, required=True, help="original image height (px)")
    parser.add_argument("--task", default="detection", choices=list(TASKS))
    parser.add_argument(
        "--decode", choices=DECODERS, help="coordinate decoder (default: center; official with --official)"
    )
    parser.add_argument(
        "--official",
        action="store_true",
        help="print what the released wrapper prints (its extracted_predictions, decoded bin/999)",
    )
    parser.set_defaults(func=run_parse)


def run_parse(args: argparse.Namespace) -> int:
    from .grammar import parse

    text = sys.stdin.read() if args.text is None else args.text
    decode = args.decode or ("official" if args.official else "center")
    prediction = parse(text, args.width, args.height, task=args.task, decode=decode)
    if args.official:
        print(json.dumps(prediction.to_official(), indent=1))
        return 0
    print(json.dumps(prediction.parsed_dict(), indent=1))
    return 0
