"""Dense feed-forward ("dense"), as in BERT:  f(x) = act(x W_1 + b_1) W_2 + b_2.

Cost: 4 H I FLOPs per token (I = intermediate_size), all I neurons used by every token;
parameters 2 H I (+ I + H biases).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.activations import ACT2FN

from leanbert.config import LeanBertConfig
from leanbert.modeling.packed_linear import FUSED_ACTIVATIONS, PackedLinear
from leanbert.modeling.registry import FFN


@FFN.register("dense")
class DenseFeedForward(nn.Module):
    owns_residual = False
    own_fields = ("intermediate_size",)

    def __init__(self, config: LeanBertConfig):
        super().__init__()
        fused = config.hidden_act if config.hidden_act in FUSED_ACTIVATIONS else None  # run in the GEMM epilogue
        self.intermediate = PackedLinear(config.hidden_size, config.intermediate_size, bias=config.use_bias,
                                         activation=fused)
        self.act = nn.Identity() if fused else ACT2FN[config.hidden_act]
        self.output = PackedLinear(config.intermediate_size, config.hidden_size, bias=config.use_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.act(self.intermediate(x)))  # (..., H) -> (..., I) -> (..., H)
