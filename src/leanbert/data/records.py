"""Line-numbered reading of user data files, and the error bad input raises.

Every loader in ``leanbert.data`` checks its whole input before any training
starts and reports a problem as :class:`DataError` with a location a person can
open in an editor: ``path:line: what is wrong`` (or ``path: what is wrong`` when
the problem belongs to the whole file).

Cost: one streaming pass over the file; memory is one line at a time plus
whatever the caller keeps.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path


class DataError(ValueError):
    """Input data that cannot be used; the message names the file and line, or the field."""


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)`` for each JSON object in a JSON Lines file.

    Line numbers are 1-based. Blank lines are skipped (a trailing newline or a
    blank last line is common and harmless). Raises :class:`DataError` naming
    ``path:line`` for a line that is not UTF-8, not JSON, or not a JSON object.
    """
    path = Path(path)
    # Binary read with a per-line decode, so a bad byte is reported with its line
    # number instead of surfacing from the text layer with none.
    with path.open("rb") as lines:
        for line_number, raw in enumerate(lines, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DataError(f"{path}:{line_number}: not valid UTF-8 ({error.reason})") from None
            if line_number == 1:
                line = line.removeprefix("\ufeff")  # editors on Windows write a byte-order mark
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(
                    f"{path}:{line_number}: not valid JSON: {error.msg} (column {error.colno})"
                ) from None
            if not isinstance(record, dict):
                raise DataError(
                    f"{path}:{line_number}: expected a JSON object, got {type(record).__name__}"
                )
            yield line_number, record


def require_text(record: dict, field_name: str, where: str, missing_suffix: str = "") -> str:
    """record[field_name] as a non-empty string, else a DataError naming `where` (file:line) and the field."""
    if field_name not in record or record[field_name] is None:
        raise DataError(f"{where}: missing field '{field_name}'{missing_suffix}")
    text = record[field_name]
    if not isinstance(text, str):
        raise DataError(f"{where}: '{field_name}' must be a string, got {type(text).__name__}")
    if not text.strip():
        raise DataError(f"{where}: empty '{field_name}'")
    return text
