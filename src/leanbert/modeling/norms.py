"""The encoder's normalisation, chosen by `config.norm_type`: "layernorm" (BERT) or "scalenorm" (MEGA).

    layernorm:  LN(x) = (x - mean(x)) / sqrt(var(x) + eps) * w + b        2H parameters
    scalenorm:  SN(x) = g * x / sqrt(mean(x^2) + eps)                       1 parameter (the scalar g)

ScaleNorm (Nguyen & Salazar, 2019) rescales each token's vector to a learned length without
centring it; MEGA (seed 003) uses it before its gated attention and its feed-forward, with eps 1e-5.
Both cost O(H) per token.
"""

from __future__ import annotations

import torch
from torch import nn

from leanbert.config import LeanBertConfig

NORM_TYPES = ("layernorm", "scalenorm")


class ScaleNorm(nn.Module):
    """g * x * rsqrt(mean(x^2) + eps) over the last dimension; g is one learned scalar (initially 1)."""

    def __init__(self, eps: float):
        super().__init__()
        self.eps = eps
        self.scalar = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean_square = x.pow(2).mean(dim=-1, keepdim=True)  # (..., 1)
        return self.scalar * x * torch.rsqrt(mean_square + self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"


def make_norm(config: LeanBertConfig) -> nn.Module:
    """The norm of one residual sub-layer (or the final norm), of width hidden_size."""
    if config.norm_type == "scalenorm":
        return ScaleNorm(config.layer_norm_eps)
    return nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
