"""Full self-attention ("full"): every token attends to every valid token, through PyTorch SDPA.

    Q, K, V = x W_qkv (one fused GEMM),   A = softmax(Q K^T / sqrt(d_h) + mask) V,   out = A W_o

Cost per layer: 8 L H^2 FLOPs for the projections + 4 L^2 H for scores and context; memory
O(L^2) per head on the math path, O(L) with the fused SDPA kernels. Padded keys are excluded by a
boolean mask; a batch without padding takes SDPA's maskless fast path. In the unpadded layout the
projections run on the T real tokens only and just the scores use the (B, L) grid.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from leanbert.config import LeanBertConfig
from leanbert.modeling.packed_linear import PackedLinear
from leanbert.modeling.registry import ATTENTION
from leanbert.modeling.token_layout import TokenLayout


@ATTENTION.register("full")
class FullAttention(nn.Module):
    owns_residual = False

    def __init__(self, config: LeanBertConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.qkv = PackedLinear(config.hidden_size, 3 * config.hidden_size, bias=config.use_bias)
        self.output = PackedLinear(config.hidden_size, config.hidden_size, bias=config.use_bias)
        self.dropout_p = config.attention_probs_dropout_prob

    def forward(self, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        """x: (B, L, H), or (T, H) when `layout.unpadded`; returns the same layout."""
        qkv = layout.to_grid(self.qkv(x))  # (B, L, 3H)
        batch, length, _ = qkv.shape
        q, k, v = qkv.view(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        mask = None if layout.mask is None else layout.mask[:, None, None, :]  # (B, 1, 1, L) keys to keep
        context = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout_p if self.training else 0.0
        )  # (B, nh, L, hd)
        context = context.transpose(1, 2).reshape(batch, length, -1)  # (B, L, H)
        return self.output(layout.from_grid(context))
