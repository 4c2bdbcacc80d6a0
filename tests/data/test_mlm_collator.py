"""Tests for leanbert.data.mlm_collator: mask ratio, 80/10/10, special tokens, whole words, determinism."""

from __future__ import annotations


import pytest
import torch
from datasets import Dataset

from leanbert.data.corpus import pack_blocks, tokenize_documents
from leanbert.data.mlm_collator import MLMCollator


BLOCK_SIZE = 128


@pytest.fixture(scope="module")
def blocks(tokenizer, gutenberg_paragraphs) -> list[dict]:
    """About 300 real 128-token blocks; one document per paragraph, so many end in padding."""
    paragraphs = gutenberg_paragraphs(250, 20)
    tokenized = tokenize_documents(Dataset.from_dict({"text": paragraphs}), tokenizer)
    packed = pack_blocks(tokenized, tokenizer, block_size=BLOCK_SIZE, min_tail_tokens=16)
    rows = packed.to_list()
    assert any(0 in row["attention_mask"] for row in rows), "fixture should contain padded blocks"
    return rows


def collate(collator: MLMCollator, rows: list[dict], batch_size: int = 32) -> tuple[torch.Tensor, ...]:
    """Run the collator over all rows; returns (original ids, corrupted ids, labels, maskable) stacked."""
    originals, inputs, labels = [], [], []
    for start in range(0, len(rows), batch_size):
        batch_rows = rows[start : start + batch_size]
        batch = collator(batch_rows)
        originals.append(torch.tensor([row["input_ids"] for row in batch_rows]))
        inputs.append(batch["input_ids"])
        labels.append(batch["labels"])
    maskable = torch.tensor([row["special_tokens_mask"] for row in rows]) == 0
    return torch.cat(originals), torch.cat(inputs), torch.cat(labels), maskable


@pytest.mark.parametrize("whole_word_masking", [False, True])
@pytest.mark.parametrize("mask_ratio", [0.15, 0.40])
def test_measured_mask_ratio_matches_setting(tokenizer, blocks, mask_ratio, whole_word_masking):
    collator = MLMCollator(tokenizer, mask_ratio=mask_ratio, whole_word_masking=whole_word_masking, seed=0)
    _, _, labels, maskable = collate(collator, blocks)
    chosen = labels != -100
    measured = chosen.sum().item() / maskable.sum().item()
    # ~30k maskable tokens: binomial std is <= 0.003; words group ~1.3 tokens, so allow 0.015.
    assert abs(measured - mask_ratio) < 0.015, measured


@pytest.mark.parametrize("whole_word_masking", [False, True])
@pytest.mark.parametrize("replace_probs", [(0.8, 0.1), (0.5, 0.3)])
def test_mask_random_keep_split(tokenizer, blocks, whole_word_masking, replace_probs):
    mask_replace_prob, random_replace_prob = replace_probs
    collator = MLMCollator(
        tokenizer,
        mask_ratio=0.4,
        mask_replace_prob=mask_replace_prob,
        random_replace_prob=random_replace_prob,
        whole_word_masking=whole_word_masking,
        seed=1,
    )
    originals, inputs, labels, _ = collate(collator, blocks)
    chosen = labels != -100
    assert torch.equal(labels[chosen], originals[chosen])
    n = chosen.sum().item()
    as_mask = ((inputs == tokenizer.mask_token_id) & chosen).sum().item() / n
    kept = ((inputs == originals) & chosen).sum().item() / n
    replaced = ((inputs != originals) & (inputs != tokenizer.mask_token_id) & chosen).sum().item() / n
    keep_prob = 1 - mask_replace_prob - random_replace_prob
    # n is about 12k: std of each share is < 0.005.
    assert abs(as_mask - mask_replace_prob) < 0.02
    assert abs(replaced - random_replace_prob) < 0.02
    assert abs(kept - keep_prob) < 0.02
    # Positions not chosen are untouched.
    assert torch.equal(inputs[~chosen], originals[~chosen])


@pytest.mark.parametrize("whole_word_masking", [False, True])
def test_special_tokens_and_padding_never_masked(tokenizer, blocks, whole_word_masking):
    for seed in range(3):
        collator = MLMCollator(tokenizer, mask_ratio=0.9, whole_word_masking=whole_word_masking, seed=seed)
        originals, inputs, labels, maskable = collate(collator, blocks)
        assert (labels[~maskable] == -100).all()
        assert torch.equal(inputs[~maskable], originals[~maskable])
        assert (labels[maskable] != -100).float().mean() > 0.85


def test_whole_word_masking_masks_all_pieces_together(tokenizer, blocks):
    collator = MLMCollator(tokenizer, mask_ratio=0.3, whole_word_masking=True, seed=2)
    _, _, labels, maskable = collate(collator, blocks)
    chosen = labels != -100
    multi_piece_words = partly_chosen = 0
    for row, row_chosen, row_maskable in zip(blocks, chosen.tolist(), maskable.tolist()):
        word: list[int] = []
        for position, (start, can_mask) in enumerate(zip(row["word_start"], row_maskable)):
            if word and (start or not can_mask):
                pieces = {row_chosen[p] for p in word}
                multi_piece_words += len(word) > 1
                partly_chosen += len(pieces) > 1
                word = []
            if can_mask:
                word.append(position)
    assert multi_piece_words > 100
    assert partly_chosen == 0
    # And token-level masking does split words, so the check above can fail.
    token_level = MLMCollator(tokenizer, mask_ratio=0.3, whole_word_masking=False, seed=2)
    _, _, token_labels, _ = collate(token_level, blocks)
    split_words = 0
    for row, row_chosen in zip(blocks, (token_labels != -100).tolist()):
        starts = row["word_start"]
        for position in range(1, len(starts)):
            if starts[position] == 0 and row["special_tokens_mask"][position] == 0:
                split_words += row_chosen[position] != row_chosen[position - 1]
    assert split_words > 0


def test_same_seed_same_batches_different_seed_different(tokenizer, blocks):
    rows = blocks[:16]
    first = MLMCollator(tokenizer, mask_ratio=0.15, whole_word_masking=True, seed=5)
    second = MLMCollator(tokenizer, mask_ratio=0.15, whole_word_masking=True, seed=5)
    other = MLMCollator(tokenizer, mask_ratio=0.15, whole_word_masking=True, seed=6)
    a, b, c = first(rows), second(rows), other(rows)
    assert torch.equal(a["labels"], b["labels"]) and torch.equal(a["input_ids"], b["input_ids"])
    assert not torch.equal(a["labels"], c["labels"])
    # The generator advances: the next batch differs from the first.
    assert not torch.equal(first(rows)["labels"], a["labels"])


def test_explicit_generator_is_used(tokenizer, blocks):
    rows = blocks[:16]
    one = MLMCollator(tokenizer, generator=torch.Generator().manual_seed(11))
    two = MLMCollator(tokenizer, generator=torch.Generator().manual_seed(11))
    torch.manual_seed(0)
    a = one(rows)
    torch.manual_seed(1)  # the global RNG must not matter
    b = two(rows)
    assert torch.equal(a["labels"], b["labels"])


def test_output_has_only_model_inputs_and_labels(tokenizer, blocks):
    batch = MLMCollator(tokenizer, whole_word_masking=True, seed=0)(blocks[:4])
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].shape == (4, BLOCK_SIZE) and batch["input_ids"].dtype == torch.long


def test_variable_length_rows_are_padded_and_padding_is_not_masked(tokenizer):
    texts = ["a short one", "a considerably longer sentence with unbelievable words in it"]
    rows = []
    for text in texts:
        encoded = tokenizer(text, return_special_tokens_mask=True)
        word_ids = encoded.word_ids()
        rows.append(
            {
                "input_ids": encoded["input_ids"],
                "attention_mask": encoded["attention_mask"],
                "word_start": [int(w is not None and (i == 0 or word_ids[i - 1] != w)) for i, w in enumerate(word_ids)],
            }
        )
    short = len(rows[0]["input_ids"])
    for seed in range(20):
        batch = MLMCollator(tokenizer, mask_ratio=0.95, whole_word_masking=True, seed=seed)(rows)
        assert batch["input_ids"].shape[1] == len(rows[1]["input_ids"])
        assert (batch["labels"][0, short:] == -100).all()
        assert (batch["input_ids"][0, short:] == tokenizer.pad_token_id).all()
        assert (batch["labels"][:, 0] == -100).all()  # [CLS], found without a special_tokens_mask column


def test_whole_word_masking_needs_word_start(tokenizer):
    with pytest.raises(KeyError, match="word_start"):
        MLMCollator(tokenizer, whole_word_masking=True)([{"input_ids": [101, 2023, 102]}])
