"""Resume-exact masking: each batch's MLM masks are a pure function of (seed, epoch, block indices).

An MLM collator that draws from torch's global RNG cannot be resumed exactly: accelerate's data loader
collates one batch ahead, so the global RNG state saved in a checkpoint already includes the masking
of a batch that the resumed run collates again (with different random numbers). Here the collator gets
a fresh `torch.Generator` per batch, seeded from a hash of

    (seed, epoch, the batch's block indices)

so a batch is masked the same way however it is reached: uninterrupted, after `--resume`, or with
data-loader workers (not persistent ones: they keep the collator, and so the epoch, they started
with; recipes may not set `dataloader_persistent_workers`). Masks still change from epoch to epoch
(dynamic masking, as in RoBERTa), and evaluation uses the fixed epoch key `EVAL_EPOCH`, so every
evaluation scores the same masked tokens.

Evaluation masks each block on its own, seeded from (seed, EVAL_EPOCH, its index), and pads the rows
into one batch: a held-out block is masked the same way whatever the evaluation batch size, and
however the held-out split is shared among processes (torchrun), so those settings cannot change
which tokens are scored. (`Trainer` still averages the loss per batch, weighted by batch size.)
Training keeps one generator per batch, which is cheaper, and its batches change with the batch size anyway.

Cost: one 8-byte BLAKE2 hash and one generator seed per training batch, or per evaluation block
(microseconds each).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

INDEX_COLUMN = "block_index"
EVAL_EPOCH = -1


def batch_seed(seed: int, epoch: int, indices: Sequence[int]) -> int:
    """A 63-bit generator seed from the run seed, the epoch and the batch's block indices."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(np.asarray([seed, epoch], dtype=np.int64).tobytes())
    digest.update(np.asarray(indices, dtype=np.int64).tobytes())
    return int.from_bytes(digest.digest(), "little") >> 1


class SeededMasking:
    """Wraps an MLM collator (anything with a `generator` attribute it draws from) to seed it per batch.

    Examples must carry `INDEX_COLUMN` (the block's row index in its split). MLMCollator passes only
    the model inputs on, so the column never reaches the model.
    """

    def __init__(self, collator, seed: int):
        self.collator = collator
        self.seed = int(seed)
        self.epoch = 0

    @property
    def tokenizer(self):
        return self.collator.tokenizer

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @contextlib.contextmanager
    def evaluation(self) -> Iterator[None]:
        """Mask with the fixed evaluation key inside the block (then restore the training epoch)."""
        epoch, self.epoch = self.epoch, EVAL_EPOCH
        try:
            yield
        finally:
            self.epoch = epoch

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        try:
            indices = [int(example[INDEX_COLUMN]) for example in examples]
        except KeyError:
            raise KeyError(
                f"SeededMasking needs a '{INDEX_COLUMN}' column in every example (add it with "
                f"dataset.map(lambda _, i: {{'{INDEX_COLUMN}': i}}, with_indices=True))"
            ) from None
        if self.epoch == EVAL_EPOCH and examples:
            rows = [self._collate([example], [index]) for example, index in zip(examples, indices)]
            return stack_rows(rows, self.tokenizer)
        return self._collate(examples, indices)

    def _collate(self, examples: Sequence[Mapping[str, Any]], indices: Sequence[int]) -> dict[str, torch.Tensor]:
        self.collator.generator = torch.Generator().manual_seed(batch_seed(self.seed, self.epoch, indices))
        return self.collator(examples)


def stack_rows(rows: Sequence[Mapping[str, torch.Tensor]], tokenizer) -> dict[str, torch.Tensor]:
    """Concatenate one-row batches (1, L_i) into one (B, max L_i), padded on the tokenizer's side.

    Padding fills input_ids with the pad id, labels with -100 (not scored), token_type_ids with the
    pad type id and every other field (attention_mask among them) with 0.
    """
    length = max(row["input_ids"].shape[1] for row in rows)
    fill = {"input_ids": tokenizer.pad_token_id, "labels": -100,
            "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0)}
    left = tokenizer.padding_side == "left"
    batch = {}
    for key in rows[0]:
        padded = []
        for row in rows:
            value = row[key]  # (1, L_i)
            missing = length - value.shape[1]
            if missing:
                pad = value.new_full((1, missing), fill.get(key, 0))
                value = torch.cat([pad, value] if left else [value, pad], dim=1)
            padded.append(value)
        batch[key] = torch.cat(padded)  # (B, length)
    return batch


class MaskingEpochCallback(TrainerCallback):
    """Tells SeededMasking which epoch is starting (also the resumed one: Trainer calls on_epoch_begin then)."""

    def __init__(self, masking: SeededMasking):
        self.masking = masking

    def on_epoch_begin(self, args, state, control, **kwargs):
        # state.epoch is e + k / steps_in_epoch; it reaches e + 1 exactly on the epoch's last step
        self.masking.set_epoch(math.floor((state.epoch or 0.0) + 1e-9))
