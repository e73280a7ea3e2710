"""The package's one error type for bad user input, and its one way with bad records.

Everything a user hands the toolkit (files, records, fields, arguments, configs) is checked where
it is read; a problem raises `InputError` with a message that names the file, the record and the
field, and says what was expected. The `rexomni` command catches this type once (`cli.main`) and
prints it as one line; library callers catch it like any `ValueError`, which it extends so that
existing `except ValueError` code keeps working.

A bad record of a dataset or a predictions file is a `RecordProblem`, raised as a
`BadRecordError`. Every reader is strict by default (a user's data is never silently dropped);
asked to be lenient (`--lenient` in every command that reads records) it leaves bad records out
and counts them in a `SkipReport`, which the command prints.
"""

from __future__ import annotations

import argparse
import contextlib
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

# Problems named in one error message, and examples a SkipReport keeps.
MAX_LISTED = 10


class InputError(ValueError):
    """Bad user input; `str(error)` is the whole message a user needs."""


class MissingInputError(InputError, FileNotFoundError):
    """A file or folder the user named does not exist (also a `FileNotFoundError`)."""


class UntrainedTaskWarning(UserWarning):
    """A prediction asked of a task the checkpoint was never trained on (its config says so)."""


@contextlib.contextmanager
def untrained_task_warnings_said_elsewhere():
    """Silence `UntrainedTaskWarning` inside: for a surface that says it to the user once, in
    its own words, rather than once a prediction."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedTaskWarning)
        yield


@dataclass(frozen=True)
class RecordProblem:
    """What is wrong with one record of a user's file: the file, the record, the field, and what
    was expected.

    `record` is the record's index in the file's list (-1: the file's top level), or the reader's
    own words for where it is ("line 3", "image id 7, annotation id 2"); None when the file as a
    whole is at fault. `field` is None when no one field is.
    """

    file: str
    record: int | str | None
    field: str | None
    problem: str

    def __str__(self) -> str:
        if self.record is None:
            place = self.file
        elif isinstance(self.record, int):
            place = f"{self.file}: record {self.record}"
        else:
            place = f"{self.file}, {self.record}"
        named = "" if self.field is None else f": field '{self.field}'"
        return f"{place}{named}: {self.problem}"


class BadRecordError(InputError):
    """Records that break their file's format; the message names each problem (the first
    MAX_LISTED of them) on one line."""

    def __init__(self, problems: RecordProblem | Sequence[RecordProblem]):
        self.problems = [problems] if isinstance(problems, RecordProblem) else list(problems)
        listed = [str(problem) for problem in self.problems[:MAX_LISTED]]
        if len(self.problems) > MAX_LISTED:
            listed.append(f"... and {len(self.problems) - MAX_LISTED} more")
        count = "" if len(self.problems) == 1 else f"{len(self.problems)} problems in records: "
        super().__init__(count + "; ".join(listed))


@dataclass
class SkipReport:
    """What lenient reading left out: counts per reason and the first few messages."""

    counts: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def add(self, reason: str, message: str) -> None:
        self.counts[reason] += 1
        if len(self.examples) < MAX_LISTED:
            self.examples.append(message)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.total:
            return "nothing skipped"
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.counts.items()))
        return f"skipped {self.total}: {reasons}"


def skip_or_raise(error: BadRecordError, lenient: bool, report: SkipReport | None, reason: str) -> None:
    """Raise (strict, the default); in lenient mode count the record in `report` under `reason`."""
    if not lenient:
        raise error
    if report is None:
        raise ValueError("lenient reading needs a SkipReport to count what it skips")
    report.add(reason, str(error))


def add_lenient_option(parser: argparse.ArgumentParser) -> None:
    """`--lenient`, named and worded the same in every command that reads records."""
    parser.add_argument(
        "--lenient", action="store_true",
        help="skip bad records, count them and show the first ones (default: stop at a bad record, naming it)",
    )
