"""Shared test fixtures: the local data folder beside the repository, and tiny configs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# PackedLinear's prepacked path runs in every test, whichever path this machine measures faster or
# the shell asks for, and nothing is written to the user's cache folder
# (tests/modeling/test_linear_backend.py covers the measured choice itself).
os.environ["LEANBERT_PACKED_LINEAR"] = "1"
os.environ["LEANBERT_CACHE_DIR"] = tempfile.mkdtemp(prefix="leanbert-test-cache-")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not present (tests that read ../shared need it)")
    return SHARED


@pytest.fixture(scope="session")
def tokenizer_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "tokenizers" / "bert-base-uncased"
