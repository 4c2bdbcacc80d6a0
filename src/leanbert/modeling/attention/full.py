"""Full self-attention ("full"): every token attends to every valid token, through PyTorch SDPA.

    Q, K, V = x W_qkv (one fused GEMM),   A = softmax(Q K^T / sqrt(d_h) + mask) V,   out = A W_o

Cost per layer: 8 L H^2 FLOPs for the projections + 4 L^2 H for scores and context; memory
O(L^2) per head on the math path, O(L) with the fused SDPA kernels. Padded keys are excluded by a
boolean mask; a batch without padding takes SDPA's maskless fast path.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from leanbert.config import LeanBertConfig
from leanbert.modeling.registry import ATTENTION


@ATTENTION.register("full")
class FullAttention(nn.Module):
    owns_residual = False

    def __init__(self, config: LeanBertConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.use_bias)
        self.output = nn.Linear(config.hidden_size, config.hidden_size, bias=config.use_bias)
        self.dropout_p = config.attention_probs_dropout_prob

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, L, H); padding_mask: (B, L) bool, True = real token, or None for no padding."""
        batch, length, hidden = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, nh, L, hd)
        mask = None if padding_mask is None else padding_mask[:, None, None, :]  # (B, 1, 1, L)
        context = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout_p if self.training else 0.0
        )  # (B, nh, L, hd)
        return self.output(context.transpose(1, 2).reshape(batch, length, hidden))
