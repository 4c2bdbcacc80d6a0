"""Masked-language-model batches: pick tokens to predict, corrupt them, label them.

Each non-special, non-padding position is chosen with probability ``mask_ratio``
(0.15 in BERT, 0.40 in "Should You Mask 15% in MLM?" / MEGA-style recipes).
A chosen position gets label = its original id (all others -100), and its input
becomes ``[MASK]`` with probability ``mask_replace_prob`` (0.8), a uniformly
random id with probability ``random_replace_prob`` (0.1), and stays unchanged
otherwise (BERT's 80/10/10 rule).

With ``whole_word_masking`` the choice is made per word: a word's first token
is drawn with probability ``mask_ratio`` and, if drawn, every token of the word
is chosen, so the expected fraction of chosen tokens is still ``mask_ratio``.
Words come from the ``word_start`` column written by
:func:`leanbert.data.corpus.pack_blocks`; the 80/10/10 rule is then applied per
token, as in Google's BERT ``create_pretraining_data.py``.

Token-level masking is ``transformers.DataCollatorForLanguageModeling``'s own.
Whole-word masking is done here because that class derives words from
``offset_mapping`` (absent from pre-packed blocks), forces
``mask_replace_prob=1`` (dropping the 80/10/10 rule) and compares every pair of
positions, O(L^2) memory per sequence. Here it is a cumulative sum and a gather.

Cost: O(B * L) time and memory per batch of B sequences of length L.
Determinism: the same ``seed`` (or the same ``torch.Generator`` state) gives
the same batches; in DataLoader workers transformers seeds worker ``i`` with
``seed + i``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerBase

# Keys copied from the examples into the padded batch; everything else (e.g.
# document_id) stays out so the model's forward never sees it.
_PASSED_THROUGH = ("input_ids", "attention_mask", "token_type_ids", "special_tokens_mask")


class MLMCollator(DataCollatorForLanguageModeling):
    """``DataCollatorForLanguageModeling`` for pre-packed blocks, with ``word_start``-based whole-word masking.

    Args:
        tokenizer: supplies ``[MASK]``/``[PAD]`` ids, padding and the vocabulary size for random replacement.
        mask_ratio: probability that a maskable token (or word) is chosen for prediction.
        mask_replace_prob: share of chosen tokens replaced by ``[MASK]``.
        random_replace_prob: share of chosen tokens replaced by a random id; the rest stay unchanged.
        whole_word_masking: choose whole words using the examples' ``word_start`` column.
        seed: seed of the masking generator (None: torch's global RNG, unless ``generator`` is given).
        generator: an explicit ``torch.Generator`` to draw from; takes precedence over ``seed``.
        pad_to_multiple_of: pad batch length up to a multiple of this (blocks of equal length need none).

    Note: ``transformers.Trainer`` drops dataset columns the model's ``forward``
    does not name unless ``TrainingArguments(remove_unused_columns=False)``;
    whole-word masking needs ``word_start`` to reach the collator.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        mask_ratio: float = 0.15,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
        whole_word_masking: bool = False,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        pad_to_multiple_of: int | None = None,
    ):
        super().__init__(
            tokenizer=tokenizer,
            mlm=True,
            whole_word_mask=False,  # ours, from word_start; see module docstring
            mlm_probability=mask_ratio,
            mask_replace_prob=mask_replace_prob,
            random_replace_prob=random_replace_prob,
            pad_to_multiple_of=pad_to_multiple_of,
            return_tensors="pt",
            seed=seed,
        )
        self.whole_word_masking = whole_word_masking
        if generator is not None:
            self.generator = generator

    @property
    def mask_ratio(self) -> float:
        return self.mlm_probability

    def torch_call(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not examples or not isinstance(examples[0], Mapping):
            raise TypeError("MLMCollator expects a list of dicts with at least 'input_ids'")
        if self.seed is not None and self.generator is None:
            self.create_rng()
        if self.whole_word_masking and "word_start" not in examples[0]:
            raise KeyError(
                "whole_word_masking needs a 'word_start' column (blocks from leanbert.data.corpus.pack_blocks; "
                "with transformers.Trainer also set remove_unused_columns=False)"
            )

        features = [{key: example[key] for key in _PASSED_THROUGH if key in example} for example in examples]
        batch = self.tokenizer.pad(features, return_tensors="pt", pad_to_multiple_of=self.pad_to_multiple_of)
        input_ids = batch["input_ids"]  # (B, L)

        special = batch.pop("special_tokens_mask", None)
        if special is None:
            special = torch.tensor(
                [self.tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True) for ids in input_ids.tolist()]
            )
        # Padding is excluded explicitly: a caller's special_tokens_mask may not mark it.
        not_maskable = special.bool()
        if "attention_mask" in batch:
            not_maskable |= batch["attention_mask"] == 0

        if self.whole_word_masking:
            word_start = _pad_rows(
                [example["word_start"] for example in examples],
                length=input_ids.shape[1],
                left=self.tokenizer.padding_side == "left",
            )
            chosen = self._choose_whole_words(word_start, not_maskable)
            batch["input_ids"], batch["labels"] = self._corrupt(input_ids, chosen)
        else:
            batch["input_ids"], batch["labels"] = self.torch_mask_tokens(input_ids, special_tokens_mask=not_maskable)
        return dict(batch)

    def _choose_whole_words(self, word_start: torch.Tensor, not_maskable: torch.Tensor) -> torch.Tensor:
        """Bool (B, L): every token of each word whose first token was drawn with p = mask_ratio."""
        maskable = ~not_maskable
        previous_maskable = torch.zeros_like(maskable)
        previous_maskable[:, 1:] = maskable[:, :-1]
        # A maskable token right after a non-maskable one starts a word even when
        # word_start says "continuation": the rest of its word is out of reach.
        is_start = maskable & (word_start.bool() | ~previous_maskable)  # (B, L)
        word_index = torch.cumsum(is_start, dim=1)  # (B, L); 1-based word number, 0 before the first word
        drawn = torch.bernoulli(torch.full(is_start.shape, self.mlm_probability), generator=self.generator).bool()
        drawn &= is_start
        word_drawn = torch.zeros(word_index.shape[0], word_index.shape[1] + 1, dtype=torch.long)
        word_drawn.scatter_add_(1, word_index, drawn.long())  # (B, L+1); > 0 where the word was drawn
        return word_drawn.gather(1, word_index).bool() & maskable

    def _corrupt(self, inputs: torch.Tensor, chosen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply the mask/random/keep rule to the chosen positions; labels are -100 elsewhere."""
        labels = inputs.clone()
        labels[~chosen] = -100
        inputs = inputs.clone()
        to_mask = torch.bernoulli(torch.full(inputs.shape, self.mask_replace_prob), generator=self.generator).bool()
        to_mask &= chosen
        inputs[to_mask] = self.tokenizer.mask_token_id
        remaining = 1.0 - self.mask_replace_prob
        if self.random_replace_prob > 0 and remaining > 0:
            # Conditional probability among the chosen tokens not already masked.
            random_share = min(1.0, self.random_replace_prob / remaining)
            to_random = torch.bernoulli(torch.full(inputs.shape, random_share), generator=self.generator).bool()
            to_random &= chosen & ~to_mask
            random_ids = torch.randint(len(self.tokenizer), inputs.shape, generator=self.generator)
            inputs[to_random] = random_ids[to_random]
        return inputs, labels


def _pad_rows(rows: Sequence[Sequence[int]], length: int, left: bool) -> torch.Tensor:
    """Pad integer rows with 0 to ``length`` on the tokenizer's padding side; (B, length) long tensor."""
    padded = torch.zeros(len(rows), length, dtype=torch.long)
    for i, row in enumerate(rows):
        row = torch.as_tensor(row, dtype=torch.long)
        if left:
            padded[i, length - len(row) :] = row
        else:
            padded[i, : len(row)] = row
    return padded
