"""Sparse attention ("sparse"; SparseBERT, seed 004): full attention restricted by a pattern of kept
(query, key) pairs. Patterns (`config.sparse_pattern`):

    "dam"   SparseBERT's structured Differentiable Attention Mask: each head learns which distances
            |i - j| to keep (`dam.py`); scores += (1 - M) * -10000.

The projections and the output are full attention's (`full.py`); the scores and context run through
SDPA with the pattern and the padding as one additive mask. Cost: as full attention, 8 L H^2 + 4 L^2 H
FLOPs per layer, plus O(heads L^2) to build the mask: a learnt, unstructured-by-block mask saves no
arithmetic, it only changes what each query sees.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from leanbert.config import LeanBertConfig
from leanbert.modeling.attention.dam import DifferentiableAttentionMask
from leanbert.modeling.attention.full import FullAttention
from leanbert.modeling.registry import ATTENTION
from leanbert.modeling.token_layout import TokenLayout

SPARSE_PATTERNS = ("dam",)


@ATTENTION.register("sparse")
class SparseAttention(FullAttention):
    def __init__(self, config: LeanBertConfig):
        super().__init__(config)
        self.dam = DifferentiableAttentionMask(config.num_attention_heads, config.max_position_embeddings)
        self.exponential_sample: torch.Tensor | None = None  # a fixed Exp(1) draw for the DAM (parity tests)

    @classmethod
    def validate_config(cls, config: LeanBertConfig) -> None:
        if config.sparse_pattern not in SPARSE_PATTERNS:
            raise ValueError(f"LeanBertConfig.sparse_pattern={config.sparse_pattern!r}; allowed: {list(SPARSE_PATTERNS)}")
        weight = config.sparse_penalty
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
            raise ValueError(f"LeanBertConfig.sparse_penalty={weight!r}; allowed: a number >= 0")

    def forward(self, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        """x: (B, L, H), or (T, H) when `layout.unpadded`; returns the same layout."""
        qkv = layout.to_grid(self.qkv(x))  # (B, L, 3H)
        batch, length, _ = qkv.shape
        additive = self.dam(length, self.exponential_sample).to(qkv.dtype).unsqueeze(0)  # (1, nh, L, L)
        if layout.mask is not None:
            additive = additive.masked_fill(~layout.mask[:, None, None, :], float("-inf"))  # (B, nh, L, L)
        q, k, v = qkv.view(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=additive,
                                                 dropout_p=self.dropout_p if self.training else 0.0)  # (B, nh, L, hd)
        context = context.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim)
        return self.output(layout.from_grid(context))

    def auxiliary_loss(self, config: LeanBertConfig) -> torch.Tensor:
        """lambda * sum(M): the sparsity penalty SparseBERT adds to the training loss."""
        return config.sparse_penalty * self.dam.penalty()
