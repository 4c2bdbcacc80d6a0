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

Every pattern keeps the diagonal. A mask costs O(L^2) bits to build, and is built once per length.
BigBird's random blocks come from `sparse_seed`, the same for every layer and head, so that a model
computes the same function at every call.
"""

from __future__ import annotations

from functools import lru_cache

import torch

FIXED_PATTERNS = ("window", "longformer", "bigbird", "strided", "fixed", "logsparse", "star")


def _distance(length: int) -> torch.Tensor:
    position = torch.arange(length)
    return position.unsqueeze(0) - position.unsqueeze(1)  # (L, L): j - i


def _bigbird(length: int, block: int, global_tokens: int, random_blocks: int, seed: int) -> torch.Tensor:
    blocks = -(-length // block)
    kept = (_distance(blocks).abs() <= 1)  # (nb, nb): the block and its neighbours
    global_blocks = -(-global_tokens // block) if global_tokens > 0 else 0
    kept[:global_blocks, :] = True
    kept[:, :global_blocks] = True
    generator = torch.Generator().manual_seed(seed)
    for row in range(global_blocks, blocks):
        free = (~kept[row]).nonzero().squeeze(1)
        chosen = free[torch.randperm(len(free), generator=generator)[:random_blocks]]
        kept[row, chosen] = True
    return kept.repeat_interleave(block, 0).repeat_interleave(block, 1)[:length, :length]


@lru_cache(maxsize=4)  # an (L, L) mask is 16 MB at L = 4,096; the block plans keep what they need
def pattern_mask(name: str, length: int, block: int, global_tokens: int, random_blocks: int, summary_tokens: int,
                 seed: int) -> torch.Tensor:
    """(L, L) bool, True = the query (row) may attend to the key (column)."""
    d = _distance(length)
    i, j = torch.meshgrid(torch.arange(length), torch.arange(length), indexing="ij")
    if name == "window":
        return d.abs() <= block
    if name == "longformer":
        return (d.abs() <= block) | (i < global_tokens) | (j < global_tokens)
    if name == "bigbird":
        return _bigbird(length, block, global_tokens, random_blocks, seed)
    if name == "strided":
        return (d.abs() < block) | (d % block == 0)
    if name == "fixed":
        return (i // block == j // block) | (j % block >= block - summary_tokens)
    if name == "logsparse":
        distance = d.abs()
        return (distance == 0) | ((distance & (distance - 1)) == 0)  # a power of two
    if name == "star":
        return (d.abs() <= 1) | (i == 0) | (j == 0)
    raise ValueError(f"unknown sparse pattern {name!r}; allowed: {list(FIXED_PATTERNS)}")
