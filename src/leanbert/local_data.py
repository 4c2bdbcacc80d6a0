"""Where the local data lives: --data-dir, else $LEANBERT_DATA, else ../shared/data when present.

Returns None when there is none; callers then fall back to Hugging Face hub names. A folder the user
names (--data-dir or $LEANBERT_DATA) is meant to be used: callers pass `named=named_data_root(...)`,
and a missing part is an error rather than a silent fall back to the hub (a download, or an offline
failure far from the cause). Only ../shared/data, found rather than named, may lack parts.
"""

from __future__ import annotations

import os
from pathlib import Path


def find_data_root(explicit: str | os.PathLike | None = None) -> Path | None:
    if explicit:
        path = Path(explicit)
        if not path.is_dir():
            raise FileNotFoundError(f"--data-dir {path}: no such folder")
        return path
    if os.environ.get("LEANBERT_DATA"):
        path = Path(os.environ["LEANBERT_DATA"])
        if not path.is_dir():
            raise FileNotFoundError(f"$LEANBERT_DATA={path}: no such folder")
        return path
    checkout = Path(__file__).resolve().parents[2]  # src/leanbert/ -> the repository, in a source checkout
    for candidate in (Path.cwd() / ".." / "shared" / "data", checkout / ".." / "shared" / "data"):
        if candidate.is_dir():
            return candidate.resolve()
    return None


def named_data_root(explicit: str | os.PathLike | None = None) -> str | None:
    """How the user named the data root ("--data-dir D" or "$LEANBERT_DATA=D"), for error messages;
    None when it was found (../shared/data) or there is none."""
    if explicit:
        return f"--data-dir {explicit}"
    if os.environ.get("LEANBERT_DATA"):
        return f"$LEANBERT_DATA={os.environ['LEANBERT_DATA']}"
    return None


def local_part(data_root: Path | None, relative: str, named: str | None, what: str) -> Path | None:
    """data_root / relative when it exists, else None (the caller falls back to the hub or skips).

    named: how the user named data_root (`named_data_root`); then a missing part is a
    FileNotFoundError, "<named>: no <relative> <what>".
    """
    path = data_root / relative if data_root is not None else None
    if path is not None and path.exists():
        return path
    if named:
        raise FileNotFoundError(f"{named}: no {relative} {what}")
    return None


def default_tokenizer(data_root: Path | None, named: str | None = None) -> str:
    """The local uncased BERT WordPiece tokenizer when present, else its hub name (`local_part`'s `named`)."""
    local = local_part(data_root, "tokenizers/bert-base-uncased", named,
                       "folder (the default tokenizer); add it, or name a tokenizer (a recipe's data.tokenizer, "
                       "`leanbert bench model --tokenizer`)")
    return str(local) if local is not None else "google-bert/bert-base-uncased"
