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
from typing import IO


class DataError(ValueError):
    """Input data that cannot be used; the message names the file and line, or the field."""


def utf8_lines(path: Path, binary: IO[bytes]) -> Iterator[str]:
    """The lines of an open binary file, decoded one at a time (line endings kept).

    A text-mode file decodes blocks of ~8 KB, so a bad byte would surface lines before its own; here
    it is a DataError naming ``path:line``. A byte-order mark on line 1 (editors on Windows, the
    MRPC files) is dropped.
    """
    for line_number, raw in enumerate(binary, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise DataError(f"{path}:{line_number}: not valid UTF-8 ({error.reason})") from None
        yield line.removeprefix("\ufeff") if line_number == 1 else line


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)`` for each JSON object in a JSON Lines file.

    Line numbers are 1-based. Blank lines are skipped (a trailing newline or a
    blank last line is common and harmless). Raises :class:`DataError` naming
    ``path:line`` for a line that is not UTF-8, not JSON, or not a JSON object.
    """
    path = Path(path)
    with path.open("rb") as binary:
        for line_number, line in enumerate(utf8_lines(path, binary), start=1):
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
