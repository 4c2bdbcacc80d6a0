"""Full self-attention ("full"): every token attends to every valid token.

    Q, K, V = x W_qkv (one fused GEMM),   A = softmax(Q K^T / sqrt(d_h) + mask) V,   out = A W_o

Cost per layer: 8 L H^2 FLOPs for the projections + 4 L^2 H for scores and context; memory
O(L^2) per head on the math path, O(L) with the fused kernels. Padded keys are excluded by a
boolean mask; a batch without padding takes SDPA's maskless fast path. In the unpadded layout the
projections run on the T real tokens only; the compiled kernel reads each sequence's rows where
they are, and SDPA gets them scattered into the (B, L) grid.

Two paths compute the scores and context: `reference_context`, PyTorch's SDPA (training, dropout,
any dtype or device), and for CPU float32 inference of sequences up to `native.MAX_LENGTH` the
compiled kernel in `native.py`, which reads straight from the fused QKV (1.2-1.4x faster than SDPA
on this project's machine). Tests compare the two; `use_native = False` forces the reference path.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from leanbert.config import LeanBertConfig
from leanbert.modeling.attention import native
from leanbert.modeling.fast_path import eager_float32_cpu_inference
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
        self.use_native = True  # set False to force the reference (SDPA) path

    def forward(self, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        """x: (B, L, H), or (T, H) when `layout.unpadded`; returns the same layout."""
        qkv = self.qkv(x)  # (B, L, 3H) or (T, 3H)
        if not self._native_applies(qkv, layout):
            context = layout.from_grid(self.reference_context(layout.to_grid(qkv), layout.mask))
        elif layout.unpadded:
            context = native.forward_unpadded(qkv, self.num_heads, layout.offsets)  # (T, H)
        else:
            context = native.forward(qkv, self.num_heads, layout.mask)  # (B, L, H)
        return self.output(context)

    def reference_context(self, qkv: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """qkv (B, L, 3H), key_mask (B, L) bool or None -> context (B, L, H), through SDPA."""
        batch, length, _ = qkv.shape
        q, k, v = qkv.view(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, L) keys to keep
        context = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout_p if self.training else 0.0
        )  # (B, nh, L, hd)
        return context.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim)

    def _native_applies(self, qkv: torch.Tensor, layout: TokenLayout) -> bool:
        length = layout.batch_shape[1] if layout.unpadded else qkv.shape[1]  # the longest sequence, at most
        return (self.use_native and eager_float32_cpu_inference(qkv) and (not self.training or self.dropout_p == 0)
                and self.head_dim % 32 == 0
                and length <= native.MAX_LENGTH
                and native.available())
