"""Fixtures of the data tests: the uncased BERT tokenizer and paragraphs of the shared Gutenberg books."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from leanbert.tokenizer import load_tokenizer


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir: Path):
    if not tokenizer_dir.is_dir():
        pytest.skip(f"{tokenizer_dir} absent")
    return load_tokenizer(tokenizer_dir)


@pytest.fixture(scope="session")
def gutenberg_paragraphs(shared_dir: Path) -> Callable[[int, int], list[str]]:
    """gutenberg_paragraphs(count, min_words): the first `count` paragraphs with more than `min_words` words."""
    books = shared_dir / "data" / "corpus" / "gutenberg_nltk" / "gutenberg_books.txt"
    if not books.is_file():
        pytest.skip(f"{books} absent")

    def first(count: int, min_words: int = 0) -> list[str]:
        kept = []
        with books.open(encoding="utf-8") as source:
            for line in source:
                if line.strip() and len(line.split()) > min_words:
                    kept.append(line.strip())
                if len(kept) == count:
                    break
        return kept

    return first
