"""The `rexomni` command: a thin dispatcher.

Each room of the package that offers commands has a `cli` module with a `register(subparsers)`
function that adds its subcommands; each subcommand stores its handler in `func`. Handlers import
heavy libraries (torch, transformers) themselves, so `rexomni --help`, `rexomni parse` and
`rexomni eval` start quickly.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from .errors import InputError, UntrainedTaskWarning

# Modules whose `register(subparsers)` adds commands, in the order they appear in `--help`.
COMMAND_MODULES = [
    "rexomni_core.grammar_cli",
    "rexomni_core.data.cli",
    "rexomni_core.model_cli",
    "rexomni_core.train.cli",
    "rexomni_core.finetune_cli",
    "rexomni_core.eval.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rexomni",
        description="Rex-Omni toolkit: parse answers, make data, train, evaluate, predict.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(args.func(args) or 0)
    except InputError as error:
        # Bad input is the user's to fix: a one-line message, not a traceback.
        message = " ".join(str(error).split())
        print(f"rexomni {args.command}: error: {message}", file=sys.stderr)
        return 2


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """The package's own warnings as one line for the user (others as Python shows them)."""
    if issubclass(category, UntrainedTaskWarning):
        print(f"warning: {message}", file=sys.stderr)
    else:
        _PYTHON_SHOW_WARNING(message, category, filename, lineno, file, line)


_PYTHON_SHOW_WARNING = warnings.showwarning

if __name__ == "__main__":
    sys.exit(main())
