"""What every importer shares: renaming the source's keys by pattern, loading the renamed weights with
every key accounted for, and writing the converted model and the source's tokenizer as one folder."""

from __future__ import annotations

import os
import re
import warnings

from transformers import PreTrainedModel

from leanbert.atomic_io import atomic_directory
from leanbert.checkpoint import CheckpointError


def renamed_key(key: str, renames: list[tuple[str, str]], source: str, original: str | None = None) -> str:
    """`key` through every (pattern, replacement) in turn; a key no pattern matches is an unexpected weight,
    named as the checkpoint names it (`original`, when `key` had a prefix removed)."""
    renamed = key
    for pattern, replacement in renames:
        renamed = re.sub(pattern, replacement, renamed)
    if renamed == key:
        raise CheckpointError(f"unexpected {source} weight {(original or key)!r}")
    return renamed


def write_converted(model: PreTrainedModel, tokenizer_source: str | os.PathLike, out: str | os.PathLike) -> None:
    """`out` gets the model (safetensors) and, when the source has one, its tokenizer; all or nothing."""
    from transformers import AutoTokenizer

    with atomic_directory(out) as tmp:
        model.save_pretrained(tmp)
        try:
            AutoTokenizer.from_pretrained(tokenizer_source).save_pretrained(tmp)
        except (OSError, ValueError):
            pass  # a weights-only checkpoint: the user brings the tokenizer


def load_converted_state(model: PreTrainedModel, state: dict, folder: str | os.PathLike,
                         optional_prefix: str | None = None) -> PreTrainedModel:
    """Loads a renamed state dict, every key accounted for; keys under `optional_prefix` (an MLM head the
    checkpoint lacks) may be missing, with a warning. Returns the model in eval mode."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    optional = [key for key in missing if optional_prefix is not None and key.startswith(optional_prefix)]
    if unexpected or len(optional) < len(missing):
        raise CheckpointError(f"{folder}: weights do not map onto leanbert (missing {missing}, unexpected {unexpected})")
    if optional:
        warnings.warn(f"{folder}: the checkpoint has no {', '.join(optional)}; these start untrained", stacklevel=3)
    return model.eval()
