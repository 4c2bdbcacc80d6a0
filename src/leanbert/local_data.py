"""Where the local data lives: --data-dir, else $LEANBERT_DATA, else ../shared/data when present.

Returns None when there is none; callers then fall back to Hugging Face hub names.
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


def default_tokenizer(data_root: Path | None) -> str:
    """The local uncased BERT WordPiece tokenizer when present, else its hub name."""
    if data_root is not None and (data_root / "tokenizers" / "bert-base-uncased").is_dir():
        return str(data_root / "tokenizers" / "bert-base-uncased")
    return "google-bert/bert-base-uncased"
