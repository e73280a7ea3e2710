"""The package's one error type for bad user input.

Everything a user hands the toolkit (files, records, fields, arguments, configs) is checked where
it is read; a problem raises `InputError` with a message that names the file, the record and the
field, and says what was expected. The `rexomni` command catches this type once (`cli.main`) and
prints it as one line; library callers catch it like any `ValueError`, which it extends so that
existing `except ValueError` code keeps working.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input; `str(error)` is the whole message a user needs."""


def where(file: object = None, record: object = None, field: str | None = None) -> str:
    """'FILE, record R, field 'F'' with the parts that are known, for the start of a message."""
    parts = []
    if file is not None:
        parts.append(str(file))
    if record is not None:
        parts.append(f"record {record}")
    if field is not None:
        parts.append(f"field {field!r}")
    return ", ".join(parts) or "input"


class MissingInputError(InputError, FileNotFoundError):
    """A file or folder the user named does not exist (also a `FileNotFoundError`)."""
