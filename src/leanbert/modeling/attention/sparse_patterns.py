"""The fixed attention patterns of SparseBERT's comparison (seed 004), built from the papers they come from
(the reference code has none). Each is a rule keep(i, j) over the queries i and keys j of one sequence,
bidirectional (an encoder sees both sides), with s = `sparse_block_size`:

    window      |i - j| <= s                                    a local band
    longformer  window, and g global tokens: i < g or j < g      Beltagy et al. 2020 (g = sparse_global_tokens)
    bigbird     in blocks of s: the block and its neighbours,    Zaheer et al. 2020 (ITC: the first g tokens'
                g global tokens, r random blocks per row          blocks global; r = sparse_random_blocks)
    strided     |i - j| < s or (i - j) mod s == 0               Child et al. 2019, "strided"
    fixed       i // s == j // s or j mod s >= s - c            Child et al. 2019, "fixed" (c = sparse_summary_tokens)
    logsparse   i == j or |i - j| is a power of 2               Li et al. 2019
    star        |i - j| <= 1 or i == 0 or j == 0                Guo et al. 2019: a ring and one relay token

Every pattern keeps the diagonal. The whole mask costs O(L^2) bits; the block-sparse path asks for
rows a few query blocks at a time and keeps only what they keep (`block_sparse.plan`).
BigBird's random blocks come from `sparse_seed` and the query block alone (the same for every layer,
head and batch length), so that a model computes the same function at every call.
"""

from __future__ import annotations

from functools import lru_cache

import torch

FIXED_PATTERNS = ("window", "longformer", "bigbird", "strided", "fixed", "logsparse", "star")


@lru_cache(maxsize=4)
def _bigbird_blocks(length: int, block: int, global_tokens: int, random_blocks: int, seed: int,
                    max_positions: int) -> torch.Tensor:
    """(nb, nb) bool: the key blocks each query block keeps."""
    blocks = -(-length // block)
    position = torch.arange(blocks, dtype=torch.int32)
    kept = (position.unsqueeze(0) - position.unsqueeze(1)).abs() <= 1  # (nb, nb): the block and its neighbours
    global_blocks = -(-global_tokens // block) if global_tokens > 0 else 0
    kept[:global_blocks, :] = True
    kept[:, :global_blocks] = True
    for row in range(global_blocks, blocks):
        kept[row, _random_blocks(row, global_blocks, random_blocks, seed, -(-max_positions // block), blocks)] = True
    return kept


def _random_blocks(row: int, global_blocks: int, count: int, seed: int, candidates: int, blocks: int) -> torch.Tensor:
    """The random key blocks of query block `row`: drawn from (seed, row) alone, uniformly among the blocks of
    the longest sequence (`candidates`) that are neither global nor in its window, so that a sequence sees
    the same blocks whatever the length of its batch. Blocks past this length are dropped here (a longer,
    padded batch masks them), so a sequence shorter than the model's longest keeps fewer random blocks;
    rows past max_position_embeddings draw among their own first blocks (a range set by the row alone)."""
    if count == 0:
        return torch.zeros(0, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + row)
    chosen = []
    for candidate in torch.randperm(max(candidates, row + 1), generator=generator).tolist():
        if candidate >= global_blocks and abs(candidate - row) > 1:
            chosen.append(candidate)
            if len(chosen) == count:
                break
    return torch.tensor([block for block in chosen if block < blocks], dtype=torch.long)


def pattern_rows(name: str, start: int, stop: int, length: int, block: int, global_tokens: int, random_blocks: int,
                 summary_tokens: int, seed: int, max_positions: int) -> torch.Tensor:
    """(stop - start, L) bool: the pattern's rows for queries start..stop-1, True = the query may attend to the
    key (column). Built from int32 positions that broadcast: the largest temporary is one (stop - start, L)
    int32 tensor of distances, so a caller bounds the memory by the rows it asks for at a time."""
    if name == "bigbird":
        kept = _bigbird_blocks(length, block, global_tokens, random_blocks, seed, max_positions)  # (nb, nb)
        return kept[torch.arange(start, stop) // block].repeat_interleave(block, 1)[:, :length]
    if name not in FIXED_PATTERNS:
        raise ValueError(f"unknown sparse pattern {name!r}; allowed: {list(FIXED_PATTERNS)}")
    i = torch.arange(start, stop, dtype=torch.int32).unsqueeze(1)  # (R, 1)
    j = torch.arange(length, dtype=torch.int32).unsqueeze(0)  # (1, L)
    if name == "fixed":
        return (i // block == j // block) | (j % block >= block - summary_tokens)
    distance = (j - i).abs_()  # (R, L) int32
    if name == "window":
        return distance <= block
    if name == "longformer":
        return (distance <= block) | (i < global_tokens) | (j < global_tokens)
    if name == "strided":
        return (distance < block) | (distance % block == 0)
    if name == "logsparse":
        return (distance & (distance - 1)) == 0  # 0 or a power of two
    return (distance <= 1) | (i == 0) | (j == 0)  # star


@lru_cache(maxsize=2)  # an (L, L) mask is 16 MB at L = 4,096; only the plain path and the tests use the whole mask
def pattern_mask(name: str, length: int, block: int, global_tokens: int, random_blocks: int, summary_tokens: int,
                 seed: int, max_positions: int) -> torch.Tensor:
    """(L, L) bool: every row of the pattern (`pattern_rows`)."""
    return pattern_rows(name, 0, length, length, block, global_tokens, random_blocks, summary_tokens, seed,
                        max_positions)
