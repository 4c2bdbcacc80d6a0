"""Attention over only the key blocks a sparse pattern keeps: the fast path of the fixed patterns.

A pattern (L, L) is cut into b x b blocks; a query block attends to the key blocks that hold any
kept pair (the layout). Query blocks whose layout keeps more than half of the key blocks (global
rows) attend over all keys; every other query block gathers its K kept key blocks (K: the most any
such block keeps; fewer are padded with a masked block) and runs SDPA on b queries x K b keys, with
the pattern's token mask inside the blocks. So the result is exactly the pattern's attention:

    out_i = softmax_j(q_i . k_j / sqrt(d), over keys j with keep(i, j) and j real, or j = i) v_j

Cost per head: 4 d (n_sparse b K b + n_global b L) FLOPs against 4 d L^2 dense, O(n_sparse K b d)
memory for the gathered keys and values. The layout and the gathered masks depend only on the
pattern and the length, so they are computed once per length (`plan`), without the whole (L, L) mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch.nn import functional as F

from leanbert.modeling.attention.sparse_patterns import pattern_rows


@dataclass(frozen=True)
class BlockPlan:
    block: int
    blocks: int  # nb = ceil(L / b)
    sparse_rows: torch.Tensor  # (nr,) query blocks that gather
    gathered: torch.Tensor  # (nr, K) key blocks each gathers (padding: block 0, masked)
    inside: torch.Tensor  # (nr, b, K b) bool: the pattern inside the gathered blocks
    own: torch.Tensor  # (nr, b, K b) bool: the query's own position (kept even when it is padding)
    dense_rows: torch.Tensor  # (nd,) query blocks that attend over all keys
    dense_pattern: torch.Tensor  # (nd b, nb b) bool


# query rows of the pattern built at a time while planning: at most this many pattern bits (and as many int32
# distances) in memory, instead of the whole (L, L) mask (268 MB at L = 16,384)
PLAN_CHUNK_ELEMENTS = 1 << 24


def _padded_rows(pattern_arguments: tuple, start: int, stop: int, length: int, width: int) -> torch.Tensor:
    """(stop - start, width) bool: pattern rows start..stop-1 (`pattern_rows`) padded to width = nb b keys, where
    every query, padding rows included, keeps itself so that no row is empty."""
    name, block, *rest = pattern_arguments
    rows = torch.zeros(stop - start, width, dtype=torch.bool)
    real = min(stop, length)
    if real > start:
        rows[: real - start, :length] = pattern_rows(name, start, real, length, block, *rest)
    position = torch.arange(start, stop)
    rows[position - start, position] = True
    return rows


def _block_chunks(blocks: int, block: int):
    """(first, last) query blocks per chunk of rows, each within PLAN_CHUNK_ELEMENTS."""
    step = max(1, PLAN_CHUNK_ELEMENTS // (block * block * blocks))
    for first in range(0, blocks, step):
        yield first, min(blocks, first + step)


@lru_cache(maxsize=4)  # each holds its global rows' patterns: (L, L) bits when every row is global (strided)
def plan(name: str, length: int, block: int, global_tokens: int, random_blocks: int, summary_tokens: int,
         seed: int, max_positions: int) -> BlockPlan:
    """The blocks a fixed pattern (`sparse_patterns.pattern_rows`, same arguments) keeps at this length.

    Two passes over the pattern's rows, a few query blocks at a time: the layout first, then the kept tiles of
    the gathering rows and the whole rows of the global ones. Memory: O(nb^2 + nr K b^2 + nd b L) bits.
    """
    arguments = (name, block, global_tokens, random_blocks, summary_tokens, seed, max_positions)
    blocks = -(-length // block)
    width_all = blocks * block

    def tiles(first: int, last: int) -> torch.Tensor:  # (last - first, nb, b, b)
        rows = _padded_rows(arguments, first * block, last * block, length, width_all)
        return rows.view(last - first, block, blocks, block).permute(0, 2, 1, 3)

    layout = torch.zeros(blocks, blocks, dtype=torch.bool)  # (nb, nb): the key blocks each query block keeps
    for first, last in _block_chunks(blocks, block):
        layout[first:last] = tiles(first, last).any(dim=-1).any(dim=-1)
    counts = layout.sum(dim=1)
    dense = counts > blocks // 2
    sparse_rows, dense_rows = (~dense).nonzero().squeeze(1), dense.nonzero().squeeze(1)
    width = int(counts[sparse_rows].max()) if len(sparse_rows) else 1
    gathered = torch.zeros(len(sparse_rows), width, dtype=torch.long)
    valid = torch.zeros(len(sparse_rows), width, dtype=torch.bool)
    for n, row in enumerate(sparse_rows.tolist()):
        kept = layout[row].nonzero().squeeze(1)
        gathered[n, : len(kept)], valid[n, : len(kept)] = kept, True

    inside = torch.zeros(len(sparse_rows), width, block, block, dtype=torch.bool)  # (nr, K, b, b)
    dense_pattern = torch.zeros(len(dense_rows), block, width_all, dtype=torch.bool)  # (nd, b, nb b)
    sparse_index, dense_index = torch.full((blocks,), -1), torch.full((blocks,), -1)
    sparse_index[sparse_rows], dense_index[dense_rows] = torch.arange(len(sparse_rows)), torch.arange(len(dense_rows))
    for first, last in _block_chunks(blocks, block):
        chunk = tiles(first, last)
        for local, row in enumerate(range(first, last)):
            if sparse_index[row] >= 0:
                n = int(sparse_index[row])
                inside[n] = chunk[local, gathered[n]] & valid[n, :, None, None]
            else:
                dense_pattern[int(dense_index[row])] = chunk[local].permute(1, 0, 2).reshape(block, width_all)
    inside = inside.permute(0, 2, 1, 3).reshape(len(sparse_rows), block, width * block)
    key_position = (gathered.unsqueeze(-1) * block + torch.arange(block)).reshape(len(sparse_rows), 1, width * block)
    query_position = sparse_rows.view(-1, 1, 1) * block + torch.arange(block).view(1, -1, 1)
    own = (key_position == query_position) & valid.repeat_interleave(block, 1).unsqueeze(1)
    return BlockPlan(block, blocks, sparse_rows, gathered, inside, own, dense_rows,
                     dense_pattern.view(len(dense_rows) * block, width_all))


def block_sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: BlockPlan,
                           key_mask: torch.Tensor | None, dropout: float = 0.0) -> torch.Tensor:
    """q, k, v (B, h, L, d); key_mask (B, L) bool (True = real token) or None -> (B, h, L, d)."""
    batch, heads, length, dim = q.shape
    b, nb = plan.block, plan.blocks
    extra = nb * b - length
    if extra:
        q, k, v = (F.pad(t, (0, 0, 0, extra)) for t in (q, k, v))
    real = torch.ones(batch, length, dtype=torch.bool, device=q.device) if key_mask is None else key_mask
    real = F.pad(real, (0, extra), value=False)  # (B, nb b)
    # blocks as rows of b d floats, so that gathering a block copies one contiguous run
    q_blocks, k_blocks, v_blocks = (t.contiguous().view(batch, heads, nb, b * dim) for t in (q, k, v))
    out = q.new_empty(batch, heads, nb, b * dim)
    if len(plan.sparse_rows):
        rows, gathered = plan.sparse_rows.to(q.device), plan.gathered.to(q.device)
        n_rows, width = len(rows), gathered.shape[1] * b
        flat = gathered.reshape(-1)
        keys = k_blocks.index_select(2, flat).view(batch, heads * n_rows, width, dim)  # (B, h nr, K b, d)
        values = v_blocks.index_select(2, flat).view(batch, heads * n_rows, width, dim)
        queries = q_blocks.index_select(2, rows).view(batch, heads * n_rows, b, dim)
        real_keys = real.view(batch, nb, b).index_select(1, flat).view(batch, 1, n_rows, 1, width)
        mask = plan.inside.to(q.device) & (real_keys | plan.own.to(q.device))  # (B, 1, nr, b, K b)
        mask = mask.expand(batch, heads, n_rows, b, width).reshape(batch, heads * n_rows, b, width)
        context = F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask, dropout_p=dropout)
        out.index_copy_(2, rows, context.view(batch, heads, n_rows, b * dim))
    if len(plan.dense_rows):
        rows = plan.dense_rows.to(q.device)
        queries = q_blocks.index_select(2, rows).view(batch, heads, len(rows) * b, dim)
        positions = (rows.unsqueeze(1) * b + torch.arange(b, device=q.device)).reshape(-1)
        own = positions.unsqueeze(1) == torch.arange(nb * b, device=q.device)  # (nd b, nb b)
        mask = plan.dense_pattern.to(q.device) & (real.unsqueeze(1) | own)  # (B, nd b, nb b)
        keys, values = (t.view(batch, heads, nb * b, dim) for t in (k_blocks, v_blocks))
        dense = F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask.unsqueeze(1), dropout_p=dropout)
        out.index_copy_(2, rows, dense.reshape(batch, heads, len(rows), b * dim))
    return out.view(batch, heads, nb * b, dim)[:, :, :length]  # (B, h, L, d)


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: torch.Tensor,
                        key_mask: torch.Tensor | None, dropout: float = 0.0) -> torch.Tensor:
    """The plain path: SDPA over all keys with the pattern, real keys and each query's own position as the mask."""
    length = q.shape[2]
    own = torch.eye(length, dtype=torch.bool, device=q.device)
    allowed = pattern.to(q.device) | own  # (L, L)
    if key_mask is not None:
        allowed = allowed & (key_mask[:, None, :] | own)  # (B, L, L)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed.unsqueeze(-3), dropout_p=dropout)
