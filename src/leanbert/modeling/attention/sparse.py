"""Sparse attention ("sparse"; SparseBERT, seed 004): full attention restricted by a pattern of kept
(query, key) pairs. Patterns (`config.sparse_pattern`):

    "dam"   SparseBERT's structured Differentiable Attention Mask: each head learns which distances
            |i - j| to keep (`dam.py`); scores += (1 - M) * -10000, through SDPA over all keys.
    fixed   "window", "longformer", "bigbird", "strided", "fixed", "logsparse", "star"
            (`sparse_patterns.py`): a boolean pattern; a query never sees padding, but always itself.
            Patterns count positions from a sequence's first real token (left-padded rows are rotated).

The projections and the output are full attention's (`full.py`). Cost: 8 L H^2 FLOPs for the
projections, plus for the scores and context 4 L^2 H with the DAM (a mask learnt per distance has no
blocks to skip) and 4 L K b H for a fixed pattern whose query blocks keep K key blocks of b tokens
(`block_sparse.py`, the fast path; SDPA with the whole mask, `reference_attention`, is the plain path
the tests compare it with, and serves sequences of at most two blocks).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from leanbert.config import LeanBertConfig
from leanbert.modeling.attention import block_sparse
from leanbert.modeling.attention.dam import DifferentiableAttentionMask
from leanbert.modeling.attention.full import FullAttention
from leanbert.modeling.attention.sparse_patterns import FIXED_PATTERNS, pattern_mask
from leanbert.modeling.fast_path import tracing
from leanbert.modeling.registry import ATTENTION
from leanbert.modeling.token_layout import TokenLayout

SPARSE_PATTERNS = ("dam", *FIXED_PATTERNS)


@ATTENTION.register("sparse")
class SparseAttention(FullAttention):
    own_fields = ("sparse_pattern", "sparse_penalty", "sparse_block_size", "sparse_global_tokens",
                  "sparse_random_blocks", "sparse_summary_tokens", "sparse_seed")
    def __init__(self, config: LeanBertConfig):
        super().__init__(config)
        self.pattern = config.sparse_pattern
        self.pattern_arguments = (config.sparse_block_size, config.sparse_global_tokens, config.sparse_random_blocks,
                                  config.sparse_summary_tokens, config.sparse_seed, config.max_position_embeddings)
        if self.pattern == "dam":
            self.dam = DifferentiableAttentionMask(config.num_attention_heads, config.max_position_embeddings)
        self.exponential_sample: torch.Tensor | None = None  # a fixed Exp(1) draw for the DAM (parity tests)
        self.use_block_sparse = True  # set False to force the plain path for the fixed patterns

    @classmethod
    def validate_config(cls, config: LeanBertConfig) -> None:
        if config.sparse_pattern not in SPARSE_PATTERNS:
            raise ValueError(f"LeanBertConfig.sparse_pattern={config.sparse_pattern!r}; allowed: {list(SPARSE_PATTERNS)}")
        weight = config.sparse_penalty
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not (0 <= weight < math.inf):
            raise ValueError(f"LeanBertConfig.sparse_penalty={weight!r}; allowed: a finite number >= 0")
        for field, least in (("sparse_block_size", 1), ("sparse_global_tokens", 0), ("sparse_random_blocks", 0),
                             ("sparse_summary_tokens", 1), ("sparse_seed", 0)):
            value = getattr(config, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"LeanBertConfig.{field}={value!r}; allowed: an int >= {least}")
        if config.sparse_seed >= 2**32:  # seeds a generator per query block: seed * 1,000,003 + block must fit
            raise ValueError(f"LeanBertConfig.sparse_seed={config.sparse_seed!r}; allowed: an int in [0, 2**32)")
        if config.sparse_pattern == "fixed" and config.sparse_summary_tokens > config.sparse_block_size:
            raise ValueError(f"LeanBertConfig.sparse_summary_tokens={config.sparse_summary_tokens!r}; allowed: at most "
                             f"sparse_block_size={config.sparse_block_size}")

    def forward(self, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        """x: (B, L, H), or (T, H) when `layout.unpadded`; returns the same layout."""
        qkv = layout.to_grid(self.qkv(x))  # (B, L, 3H)
        batch, length, _ = qkv.shape
        key_mask, order = layout.mask, None
        if self.pattern != "dam" and key_mask is not None and not tracing():
            qkv, key_mask, order = _real_tokens_first(qkv, key_mask)
        q, k, v = qkv.view(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        dropout = self.dropout_p if self.training else 0.0
        if self.pattern == "dam":
            context = self._dam_context(q, k, v, key_mask, dropout)
        elif self.use_block_sparse and length > 2 * self.pattern_arguments[0]:
            plan = block_sparse.plan(self.pattern, length, *self.pattern_arguments)
            context = block_sparse.block_sparse_attention(q, k, v, plan, key_mask, dropout)
        else:
            pattern = pattern_mask(self.pattern, length, *self.pattern_arguments)
            context = block_sparse.reference_attention(q, k, v, pattern, key_mask, dropout)  # (B, nh, L, hd)
        context = context.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim)
        if order is not None:  # back to the caller's positions
            context = torch.empty_like(context).scatter_(1, order.unsqueeze(-1).expand_as(context), context)
        return self.output(layout.from_grid(context))

    def _dam_context(self, q, k, v, key_mask, dropout: float) -> torch.Tensor:
        additive = self.dam(q.shape[2], self.exponential_sample).to(q.dtype).unsqueeze(0)  # (1, nh, L, L)
        if key_mask is not None:
            additive = additive.masked_fill(~key_mask[:, None, None, :], float("-inf"))  # (B, nh, L, L)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=additive, dropout_p=dropout)  # (B, nh, L, hd)

    def loss_term(self, config: LeanBertConfig) -> torch.Tensor | float:
        """lambda * sum(M): the sparsity penalty SparseBERT adds to the training loss (the DAM only)."""
        return config.sparse_penalty * self.dam.penalty() if self.pattern == "dam" else 0.0


def _real_tokens_first(qkv: torch.Tensor, key_mask: torch.Tensor):
    """Left-padded rows rotated so that their tokens start at position 0, where a fixed pattern places its
    global tokens and its blocks: (qkv, key_mask, order), order (B, L) with new position p = old order[p],
    or None when no row is left-padded (nothing is copied then)."""
    first = key_mask.to(torch.int8).argmax(dim=1)  # (B,): each row's first real token
    if not bool(first.any()):
        return qkv, key_mask, None
    length = qkv.shape[1]
    order = (torch.arange(length, device=qkv.device).unsqueeze(0) + first.unsqueeze(1)) % length  # (B, L)
    return qkv.gather(1, order.unsqueeze(-1).expand_as(qkv)), key_mask.gather(1, order), order
