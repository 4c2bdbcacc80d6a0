"""Fixtures of the fine-tuning tests: the shared GLUE files, a tiny MLM checkpoint, a no-training guard."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer, Trainer

from leanbert.modeling.model import LeanBertForMaskedLM
from leanbert.presets import preset_config

TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)


@pytest.fixture(scope="module")
def glue_dir(shared_dir: Path) -> Path:
    path = shared_dir / "data" / "glue"
    if not path.is_dir():
        pytest.skip(f"{path} not present (these tests fine-tune on the shared GLUE files)")
    return path.resolve()


@pytest.fixture(scope="session")
def save_tiny_model(tokenizer_dir):
    """save_tiny_model(folder, **config overrides): a random 1-layer leanbert MLM checkpoint + the uncased
    BERT tokenizer in `folder`, like a pretraining output folder."""
    def save(folder: Path, **overrides) -> Path:
        LeanBertForMaskedLM(preset_config("bert-tiny", **{**TINY, **overrides})).save_pretrained(folder)
        AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(folder)
        return folder

    return save


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, glue_dir, save_tiny_model) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if any Trainer starts training."""
    def refuse(*args, **kwargs):
        raise AssertionError("training started although the input was bad")

    monkeypatch.setattr(Trainer, "train", refuse)
