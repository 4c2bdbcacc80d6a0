"""A tiny pretraining setup shared by the pretrain/resume/DDP/distill tests.

A few hundred lines of real English (the first documents of the local Gutenberg corpus when present,
else generated sentences), the real uncased BERT tokenizer, and a recipe for a hidden-32, one-layer
model on 32-token blocks, so a run of a few dozen steps takes about a second.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest
import yaml

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
TOKENIZER_DIR = SHARED / "data" / "tokenizers" / "bert-base-uncased"
REPO = Path(__file__).resolve().parents[2]

WORDS = ("the river runs past an old mill where children play and a dog sleeps near the warm stones while "
         "farmers carry bread to the market in town under a grey sky before the rain comes over hills").split()


def require_tokenizer() -> Path:
    if not TOKENIZER_DIR.is_dir():
        pytest.skip(f"{TOKENIZER_DIR} not present (the tokenizer comes from ../shared/data)")
    return TOKENIZER_DIR.resolve()


def write_corpus(path: Path, documents: int = 60, seed: int = 0) -> Path:
    """Blank-line-separated documents of 2-5 paragraphs (the shared corpus layout)."""
    rng = random.Random(seed)
    lines = []
    for _ in range(documents):
        for _ in range(rng.randint(2, 5)):
            lines.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30))) + ".")
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tiny_recipe(tmp_path: Path, **sections) -> dict:
    """A recipe tree for a hidden-32, 1-layer model; `sections` update the defaults section by section."""
    corpus = tmp_path / "corpus.txt"
    if not corpus.exists():
        write_corpus(corpus)
    tree = {
        "source": "test recipe: tiny numbers chosen for speed",
        "output_dir": str(tmp_path / "run"),
        "model": {"preset": "bert-tiny",
                  "overrides": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                                "intermediate_size": 64}},
        "data": {"corpus": str(corpus), "tokenizer": str(require_tokenizer()), "block_size": 32,
                 "validation_fraction": 0.1, "cache_dir": str(tmp_path / "cache")},
        "training": {"max_steps": 20, "per_device_train_batch_size": 8, "learning_rate": 1e-3,
                     "warmup_steps": 2, "save_steps": 10, "logging_steps": 5, "seed": 7, "disable_tqdm": True},
    }
    for name, values in sections.items():
        if isinstance(values, dict) and isinstance(tree.get(name), dict):
            tree[name] = {**tree[name], **values}
        else:
            tree[name] = values
    return tree


def write_recipe(tmp_path: Path, name: str = "tiny.yaml", **sections) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(tiny_recipe(tmp_path, **sections), sort_keys=False), encoding="utf-8")
    return path


def save_tiny_teacher(folder: Path, with_mlm_head: bool, vocab_size: int = 30522, save_tokenizer: bool = True) -> Path:
    """A random 2-layer, hidden-48 transformers BERT (with or without its MLM head) saved as a teacher folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=vocab_size, hidden_size=48, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=96)
    (BertForMaskedLM if with_mlm_head else BertModel)(config).save_pretrained(folder)
    if save_tokenizer:
        AutoTokenizer.from_pretrained(require_tokenizer()).save_pretrained(folder)
    return folder


def subprocess_env() -> dict:
    """Environment for CLI subprocesses: the source tree importable, one thread, no network."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return env


PYTHON = sys.executable
