"""Full self-attention's inference forward as a PyTorch C++ extension (`csrc/attention_forward.cpp`).

    context_h = softmax(Q_h K_h^T / sqrt(d_h) + mask) V_h,   read from the fused QKV (B, L, 3H)

The same numbers as `F.scaled_dot_product_attention` (to float32 rounding; tests compare the two),
1.2-1.3x faster on this project's 2-core AVX-512 CPU at B = 8, L = 128, 12 heads of 64, because it
reads Q, K and V straight from the projection's output and keeps each head's working set in L1/L2.
Inference only (no autograd, no dropout), float32 on CPU, head size a multiple of 32, AVX-512
hosts; everywhere else `FullAttention` takes SDPA. Built on first use (`native_build.NativeOps`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from leanbert.modeling.native_build import NativeOps

LIBRARY = NativeOps("attention", Path(__file__).with_name("csrc") / "attention_forward.cpp", "PyTorch SDPA")


def available() -> bool:
    """Whether the compiled attention can run here (built, and this CPU has AVX-512)."""
    return LIBRARY.available() and torch.ops.leanbert_attention.supported()


def backend() -> str:
    """Which attention forward serves inference here, for benchmark records."""
    return "compiled (attention native)" if available() else "sdpa"


def forward(qkv: torch.Tensor, heads: int, key_mask: torch.Tensor | None) -> torch.Tensor:
    """qkv (B, L, 3H) float32 contiguous; key_mask (B, L) bool, True = attend, or None -> (B, L, H).

    A query with no key to attend to gets a zero context.
    """
    return torch.ops.leanbert_attention.forward(qkv, heads, None if key_mask is None else key_mask.contiguous())
